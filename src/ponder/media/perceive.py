"""Getting a request's images, audio and files to a model in the form it can take.

The backend's declared capabilities pick the path, part by part:
  - a backend that sees (`vision`) gets images as they are; one that hears
    (`audio`) gets audio as it is;
  - otherwise a perception pre-pass stands in: an image becomes its measured
    properties and the text OCR reads in it, audio becomes its Whisper transcript,
    each labelled as what it is, so the model never claims to have seen or heard
    more than it did;
  - files (PDF, text, Markdown, CSV) always become their extracted text.

Every part is decoded and checked against the `[media]` limits first, so a corrupt
or oversized one is a 400 (or 413) that names it, whichever path it takes.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ponder.backends.base import Capabilities
from ponder.config import MediaSettings, Settings
from ponder.errors import InvalidRequest, TooLarge, Unsupported
from ponder.media import audio, documents, models, vision
from ponder.media.speech import TextToSpeech
from ponder.store import Store
from ponder.types import Media, Message

T = TypeVar("T")
MEDIA_THREADS = 2
_LIMITS = {"image": "max_image_bytes", "audio": "max_audio_bytes", "file": "max_file_bytes"}


class Perception:
    """The models that hear, speak and read images, each loaded on first use."""

    def __init__(self, settings: Settings, store: Store | None = None):
        self.settings = settings
        self.store = store  # where spoken answers' texts are kept (any server on it may be asked for one)
        self.limits: MediaSettings = settings.media
        self._stt: audio.SpeechToText | None = None
        self._tts: TextToSpeech | None = None
        self.ocr = vision.Ocr()
        # Media work runs on threads of its own, so a queue of long transcriptions
        # never holds up the store, tokenizing or tools on asyncio's shared pool.
        self._pool = ThreadPoolExecutor(max_workers=MEDIA_THREADS, thread_name_prefix="ponder-media")

    @property
    def capacity(self) -> int:
        """Media jobs that run at once (the audio endpoints' gate lets this many in)."""
        return MEDIA_THREADS

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on the media threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def remember(self, audio_id: str, owner: str, transcript: str, ttl_s: int = 3600) -> int:
        """Keep a spoken answer's text in the store for `ttl_s`, so a follow-up can name
        the turn by its audio id, through any server on the store; returns the expiry
        (Unix seconds)."""
        now = time.time()
        if self.store is None:
            raise RuntimeError("spoken answers need a store to be kept in")
        await asyncio.to_thread(self.store.remember_spoken, audio_id, owner, transcript, now + ttl_s, now)
        return int(now + ttl_s)

    async def recall(self, audio_id: str, owner: str) -> str | None:
        """The text of `owner`'s spoken answer `audio_id`, unless unknown or expired."""
        if self.store is None:
            return None
        return await asyncio.to_thread(self.store.spoken, audio_id, owner, time.time())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _path(self, source: str, what: str, setting: str) -> Path:
        if not source:
            raise Unsupported(f'{what} is turned off on this server ([media] {setting} = "")')
        return models.resolve(source, self.settings.models_dir, self.settings.cache_dir, fetch=False)

    @property
    def stt(self) -> audio.SpeechToText:
        if self._stt is None:
            path = self._path(self.limits.speech_to_text, "speech to text", "speech_to_text")
            self._stt = audio.SpeechToText(path, self.settings.engine.n_threads, self.limits.whisper_fit)
        return self._stt

    @property
    def tts(self) -> TextToSpeech:
        if self._tts is None:
            path = self._path(self.limits.text_to_speech, "text to speech", "text_to_speech")
            self._tts = TextToSpeech(path, self.limits.text_to_speech)
        return self._tts

    # --- a request's media ---------------------------------------------------

    async def prepare(self, messages: Sequence[Message], caps: Capabilities) -> tuple[Message, ...]:
        """`messages` with every media part checked, and turned into text where the
        backend cannot take it natively."""
        everything = [m for msg in messages for m in msg.media]
        if not everything:
            return tuple(messages)
        self._check_sizes(everything)
        counts = {"image": 0, "audio": 0, "file": 0}
        heard = [0.0]  # seconds of audio in the request so far
        out = []
        for msg in messages:
            if not msg.media:
                out.append(msg)
                continue
            kept: list[Media] = []
            texts: list[str] = []
            for media in msg.media:
                counts[media.kind] += 1
                native, text = await self._perceive(media, counts[media.kind], caps, heard)
                if native is not None:
                    kept.append(native)
                if text:
                    texts.append(text)
            content = "\n\n".join([*texts, msg.content] if msg.content else texts)
            out.append(replace(msg, content=content, media=tuple(kept)))
        return tuple(out)

    def _check_sizes(self, media: list[Media]) -> None:
        lim = self.limits
        if len(media) > lim.max_parts:
            raise TooLarge(f"The request carries {len(media)} images, audio clips and files; the limit is "
                           f"{lim.max_parts}.", param=media[lim.max_parts].param)  # fmt: skip
        total = 0
        for m in media:
            limit = getattr(lim, _LIMITS[m.kind])
            if len(m.data) > limit:
                raise TooLarge(f"This {m.kind} is {len(m.data):,} bytes; the limit is {limit:,}.", param=m.param)
            total += len(m.data)
            if total > lim.max_request_bytes:
                raise TooLarge(f"The request's media add up to more than {lim.max_request_bytes:,} bytes.",
                               param=m.param)  # fmt: skip

    async def _perceive(self, media: Media, n: int, caps: Capabilities, heard: list[float]) -> tuple[Media | None, str]:
        """(the part, if passed on natively; the text standing in for it, if any).
        `heard` counts the request's audio seconds: the duration limit holds for
        the request as a whole."""
        lim = self.limits
        if media.kind == "image":
            media = await self._fetched(media)
            picture = await self.run(vision.load, media.data, media.param, lim.max_image_pixels)
            if caps.vision:  # named by what it is, not by what the client called it
                return replace(media, mime=vision.FORMATS[picture.format]), ""
            words = await self.run(self.ocr.read, picture)
            return None, vision.describe(picture, words, f"Image {n}" + (f" ({media.name})" if media.name else ""))
        if media.kind == "audio":
            samples = await self.run(audio.decode, media.data, media.param, lim.max_audio_seconds)
            heard[0] += samples.size / audio.SAMPLE_RATE
            if heard[0] > lim.max_audio_seconds:
                why = f"The request's audio adds up to {heard[0]:.1f} s; the limit is {lim.max_audio_seconds:.1f} s."
                raise InvalidRequest(why, param=media.param, code="audio_too_long")
            if caps.audio:
                return media, ""
            stt = self.stt
            t = await self.run(stt.transcribe, samples)
            return None, (f"[Audio {n}, {t.duration:.1f} s, {t.language}; you cannot hear it, this is its "
                          f"transcript by speech recognition:]\n{t.text}")  # fmt: skip
        label = f"File {n}" + (f" ({media.name})" if media.name else "")
        text = await self.run(documents.extract, media.data, media.mime, label, media.param,
                                       lim.max_file_pages, lim.max_file_chars)  # fmt: skip
        return None, text

    async def _fetched(self, media: Media) -> Media:
        if not media.url:
            return media
        lim = self.limits
        if not lim.image_urls:
            raise Unsupported("Image URLs are turned off on this server ([media] image_urls = false): send the "
                              "image as a base64 data URL.", param=media.param)  # fmt: skip
        data = bytearray()
        try:
            async with (
                asyncio.timeout(lim.image_url_timeout_s),  # the whole fetch, not each read
                httpx.AsyncClient(timeout=lim.image_url_timeout_s, follow_redirects=True) as client,
                client.stream("GET", media.url) as resp,
            ):
                if resp.status_code >= 400:
                    raise InvalidRequest(f"Fetching the image gave HTTP {resp.status_code}.", param=media.param,
                                         code="invalid_image_url")  # fmt: skip
                async for chunk in resp.aiter_bytes():
                    data += chunk
                    if len(data) > lim.max_image_bytes:
                        raise TooLarge(f"The image at this URL is over {lim.max_image_bytes:,} bytes.",
                                       param=media.param)  # fmt: skip
        except TimeoutError:
            raise InvalidRequest(f"Fetching the image took over {lim.image_url_timeout_s:g} s.", param=media.param,
                                 code="invalid_image_url") from None  # fmt: skip
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise InvalidRequest(f"The image could not be fetched ({type(e).__name__}: {e}).", param=media.param,
                                 code="invalid_image_url") from e  # fmt: skip
        return replace(media, data=bytes(data), url="")  # its type is read from the bytes (vision.load)
