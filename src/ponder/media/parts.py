"""Media content parts off the wire, in both APIs' shapes, as `Media` values.

Chat Completions:  {"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}
                   {"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}
                   {"type": "file", "file": {"file_data": "data:application/pdf;base64,…", "filename": "a.pdf"}}
Responses:         {"type": "input_image", "image_url": "data:…"}
                   {"type": "input_audio", "input_audio": {"data": "<base64>", "format": "mp3"}}
                   {"type": "input_file", "file_data": "data:…", "filename": "a.pdf"}

Here parts are only parsed (base64 checked, formats named); `perceive` checks
sizes, decodes the media and fetches image URLs, where config allows them.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import PurePath
from typing import Any

from ponder.errors import InvalidRequest, Unsupported, invalid_value
from ponder.media.audio import AUDIO_FORMATS
from ponder.media.documents import FILE_MIMES
from ponder.types import Media

RESPONSES_KINDS = ("input_image", "input_audio", "input_file")
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)  # fmt: skip


def chat_part(part: dict[str, Any], param: str) -> Media:
    kind = part.get("type")
    if kind == "image_url":
        value = part.get("image_url")
        url = value.get("url") if isinstance(value, dict) else value  # some clients send the bare string
        return image(url, f"{param}.image_url.url")
    if kind == "input_audio":
        return audio(part.get("input_audio"), f"{param}.input_audio")
    value = part.get("file")
    if not isinstance(value, dict):
        raise invalid_value(f"{param}.file", 'a file part carries {"file_data": …, "filename": …}')
    return file(value.get("file_data"), value.get("filename"), value.get("file_id"), f"{param}.file")


def responses_part(part: dict[str, Any], param: str) -> Media:
    kind = part.get("type")
    if kind == "input_image":
        if part.get("file_id") and not part.get("image_url"):
            raise _no_files_api(f"{param}.file_id")
        return image(part.get("image_url"), f"{param}.image_url")
    if kind == "input_audio":
        return audio(part.get("input_audio"), f"{param}.input_audio")
    if part.get("file_url"):
        raise Unsupported("file_url is not supported: send the file's content as file_data", param=f"{param}.file_url")
    return file(part.get("file_data"), part.get("filename"), part.get("file_id"), param)


def image(url: Any, param: str) -> Media:
    if not isinstance(url, str) or not url:
        raise invalid_value(param, "an image part needs its URL: a data URL, or http(s) where allowed")
    if url.startswith(("http://", "https://")):
        return Media("image", b"", "", url=url, param=param)  # fetched by `perceive`, if config allows it
    mime, data = data_url(url, param)
    if not mime.startswith("image/"):
        raise InvalidRequest(f"The data URL holds {mime!r}, not an image.", param=param, code="invalid_image")
    return Media("image", data, mime, param=param)


def audio(value: Any, param: str) -> Media:
    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise invalid_value(param, 'an audio part carries {"data": "<base64>", "format": "wav"}')
    fmt = value.get("format")
    if not isinstance(fmt, str) or fmt not in AUDIO_FORMATS:
        raise InvalidRequest(f"Unsupported audio format {fmt!r}; use one of {', '.join(AUDIO_FORMATS)}.",
                             param=f"{param}.format", code="invalid_value")  # fmt: skip
    return Media("audio", b64(value["data"], f"{param}.data"), AUDIO_FORMATS[fmt], name=f"audio.{fmt}", param=param)


def file(file_data: Any, filename: Any, file_id: Any, param: str) -> Media:
    if file_id and not file_data:
        raise _no_files_api(f"{param}.file_id")
    if not isinstance(file_data, str) or not file_data:
        raise invalid_value(f"{param}.file_data", "a file part carries its content as file_data (a data URL)")
    name = filename if isinstance(filename, str) else ""
    if file_data.startswith("data:"):
        mime, data = data_url(file_data, f"{param}.file_data")
    else:  # bare base64: the file name says what it is
        data, mime = b64(file_data, f"{param}.file_data"), FILE_MIMES.get(PurePath(name).suffix.lower(), "")
    if mime in ("application/octet-stream", "") and name:
        mime = FILE_MIMES.get(PurePath(name).suffix.lower(), mime)
    return Media("file", data, mime, name=name, param=param)


def data_url(url: str, param: str) -> tuple[str, bytes]:
    """(mime type, bytes) of a `data:` URL."""
    m = _DATA_URL.match(url)
    if not m:
        raise InvalidRequest("Expected a base64 data URL (data:<type>;base64,<data>)"
                             + (" or an http(s) URL" if param.endswith("url") else "") + ".",
                             param=param, code="invalid_value")  # fmt: skip
    mime = (m.group("mime") or "text/plain").lower()
    rest = url[m.end() :]
    if m.group("b64"):
        return mime, b64(rest, param)
    from urllib.parse import unquote_to_bytes

    return mime, unquote_to_bytes(rest)


def b64(text: str, param: str) -> bytes:
    try:
        return base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidRequest(f"The data is not valid base64 ({e}).", param=param, code="invalid_base64") from None


def _no_files_api(param: str) -> Unsupported:
    return Unsupported("file_id is not supported (Ponder has no Files API): send the content inline", param=param)
