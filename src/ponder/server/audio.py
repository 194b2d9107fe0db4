"""POST /v1/audio/transcriptions, /v1/audio/translations and /v1/audio/speech."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field
from starlette.datastructures import UploadFile

from ponder.errors import InvalidRequest, TooLarge, Unsupported, invalid_value
from ponder.media import audio, speech
from ponder.media.perceive import Perception
from ponder.server.admission import Limits
from ponder.server.protocol import WireRequest

router = APIRouter()
T = TypeVar("T")
MAX_SPEECH_CHARS = 4096  # OpenAI's limit on `input`


def _form(*fields: str) -> dict[str, Any]:
    """The multipart form an endpoint reads by hand, for its OpenAPI schema."""
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string", "minLength": 1},
        "prompt": {"type": "string"},
        "response_format": {"enum": list(audio.TRANSCRIPT_FORMATS)},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "language": {"type": "string", "description": "ISO-639-1, such as 'en'"},
        "timestamp_granularities[]": {"type": "array", "items": {"enum": ["word", "segment"]}},
    }
    schema = {"type": "object", "required": ["file", "model"], "properties": {f: properties[f] for f in fields}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_COMMON = ("file", "model", "prompt", "response_format", "temperature")


@router.post("/v1/audio/transcriptions", openapi_extra=_form(*_COMMON, "language", "timestamp_granularities[]"))
async def transcriptions(request: Request) -> Response:
    return await _transcribe(request, "transcribe")


@router.post("/v1/audio/translations", openapi_extra=_form(*_COMMON))
async def translations(request: Request) -> Response:
    """Speech in any language Whisper knows, as English text."""
    return await _transcribe(request, "translate")


async def _transcribe(request: Request, task: str) -> Response:
    perception: Perception = request.app.state.perception
    limits = perception.limits
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("Send the audio as multipart/form-data, with the file in the 'file' field.",
                             param="file", code="invalid_value")  # fmt: skip
    declared = int(request.headers.get("content-length") or 0)
    if declared > limits.max_audio_bytes + (1 << 20):  # the file, and room for the form's other fields
        raise TooLarge(f"The request is {declared:,} bytes; audio files may be {limits.max_audio_bytes:,}.",
                       param="file")  # fmt: skip
    form = await request.form(max_files=1, max_fields=32)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Missing required parameter: 'file'.", param="file",
                                 code="missing_required_parameter")  # fmt: skip
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        if not fields.get("model"):
            raise InvalidRequest("Missing required parameter: 'model'.", param="model",
                                 code="missing_required_parameter")  # fmt: skip
        fmt = fields.get("response_format") or "json"
        if fmt not in audio.TRANSCRIPT_FORMATS:
            raise invalid_value("response_format", f"use one of {', '.join(audio.TRANSCRIPT_FORMATS)}")
        granularities = tuple(str(v) for k, v in form.multi_items() if k.startswith("timestamp_granularities"))
        if set(granularities) - {"word", "segment"}:
            raise invalid_value("timestamp_granularities", "use word and/or segment")
        if granularities and fmt != "verbose_json":
            raise invalid_value("timestamp_granularities", "timestamps come with response_format verbose_json")
        temperature = _number(fields.get("temperature"), "temperature", 0.0, 1.0)
        language = fields.get("language") or None
        if task == "translate":
            language = None  # Whisper finds the source language; the output is English
        elif language is not None and language not in _languages():
            raise invalid_value("language", "give an ISO-639-1 code Whisper knows, such as 'en' or 'de'")
        if upload.size is not None and upload.size > limits.max_audio_bytes:
            raise TooLarge(f"The file is {upload.size:,} bytes; the limit is {limits.max_audio_bytes:,}.", param="file")
        data = await upload.read()
    finally:
        await form.close()
    stt = perception.stt

    async def work() -> audio.Transcript:
        samples = await perception.run(audio.decode, data, "file", limits.max_audio_seconds)
        return await perception.run(
            stt.transcribe, samples, language=language, task=task, prompt=fields.get("prompt"),
            temperature=temperature, timestamps=audio.needs_timestamps(fmt, granularities),
            words="word" in granularities,
        )  # fmt: skip

    transcript = await _admitted(request, work)
    body, media_type = audio.render(transcript, fmt, granularities)
    return Response(body, media_type=media_type)


async def _admitted(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """`work` as an engine's request runs: a place at the media threads' gate (429 and
    Retry-After when its queue is full) and the server's deadline (408)."""
    limits: Limits = request.app.state.limits
    return await limits.within(request.app.state.perception, work)


def _number(value: str | None, param: str, low: float, high: float) -> float:
    if value is None or value == "":
        return 0.0
    try:
        x = float(value)
    except ValueError:
        raise invalid_value(param, "a number") from None
    if not low <= x <= high:
        raise invalid_value(param, f"between {low} and {high}")
    return x


def _languages() -> set[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return set(_LANGUAGE_CODES)


class SpeechRequest(WireRequest):
    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=MAX_SPEECH_CHARS)
    voice: str | dict[str, Any] | None = None
    response_format: str = Field("mp3", json_schema_extra={"enum": list(speech.SPEECH_FORMATS)})  # checked below
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None
    stream_format: str | None = None


@router.post("/v1/audio/speech")
async def create_speech(body: SpeechRequest, request: Request) -> Response:
    perception: Perception = request.app.state.perception
    if body.response_format not in speech.SPEECH_FORMATS:
        raise invalid_value("response_format", f"use one of {', '.join(speech.SPEECH_FORMATS)}")
    if body.instructions:
        raise Unsupported("instructions are not supported: a Piper voice speaks one way", param="instructions")
    if body.stream_format not in (None, "audio"):
        raise Unsupported("stream_format 'sse' is not supported; the audio comes as one file", param="stream_format")
    tts = perception.tts
    check_voice(body.voice, tts.name)

    async def work() -> bytes:
        samples = await perception.run(tts.synthesize, body.input, body.speed)
        if samples.size == 0:
            raise invalid_value("input", "it holds nothing the voice can say (no words)")
        return await perception.run(speech.encode, samples, tts.sample_rate, body.response_format)

    data = await _admitted(request, work)
    return Response(data, media_type=speech.SPEECH_FORMATS[body.response_format][0])


def check_voice(voice: Any, configured: str, param: str = "voice") -> None:
    """The voice a request names must be this server's, or one of OpenAI's names (which
    clients send by habit and which all get this server's voice)."""
    name = voice.get("id") if isinstance(voice, dict) else voice
    if name is None or name in (configured, *speech.OPENAI_VOICES):
        return
    raise invalid_value(param, f"this server speaks with the voice {configured!r} (OpenAI's voice names map to it)")


async def spoken(perception: Perception, text: str, response_format: str, owner: str = "") -> dict[str, Any] | None:
    """An answer's `message.audio` (Chat Completions): its text spoken, base64-encoded,
    with the text as its transcript; None when the text holds nothing to say. The
    id stays valid for an hour: a follow-up may send `{"audio": {"id"}}` for the turn."""
    if not speakable(text):
        return None
    fmt = "pcm" if response_format == "pcm16" else response_format
    tts = perception.tts
    samples = await perception.run(tts.synthesize, speakable(text))
    if samples.size == 0:
        return None
    data = await perception.run(speech.encode, samples, tts.sample_rate, fmt)
    audio_id = f"audio_{uuid.uuid4().hex}"
    expires = await perception.remember(audio_id, owner, text)  # only the key that made it may name it
    return {"id": audio_id, "data": base64.b64encode(data).decode(), "expires_at": expires, "transcript": text}


def speakable(text: str) -> str:
    """Markdown read aloud: code fences, emphasis and heading marks are not words."""
    text = re.sub(r"```[\w-]*\n?", "", text)
    text = re.sub(r"(\*\*|__|`|^#+\s*|^\s*[-*]\s+)", "", text, flags=re.MULTILINE)
    return text.strip()
