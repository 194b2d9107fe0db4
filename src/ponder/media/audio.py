"""Speech to text: decoding what clients send (wav, mp3, flac, ogg, webm, m4a),
Whisper through faster-whisper, and the transcript in each of OpenAI's formats."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ponder.errors import InvalidRequest

SAMPLE_RATE = 16_000  # what Whisper listens at

# input_audio.format -> mime type (what clients name the format they send)
AUDIO_FORMATS = {
    "wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg",
    "webm": "audio/webm", "m4a": "audio/mp4", "mp4": "audio/mp4", "opus": "audio/ogg",
}  # fmt: skip

# Whisper's language codes as OpenAI's verbose_json names them (the common ones).
LANGUAGE_NAMES = {
    "en": "english", "de": "german", "es": "spanish", "fr": "french", "it": "italian", "pt": "portuguese",
    "nl": "dutch", "ru": "russian", "zh": "chinese", "ja": "japanese", "ko": "korean", "ar": "arabic",
    "hi": "hindi", "pl": "polish", "tr": "turkish", "uk": "ukrainian", "sv": "swedish", "cs": "czech",
}  # fmt: skip


MIN_RATE, MAX_RATE = 4_000, 384_000  # sample rates real recordings use


def decode(data: bytes, param: str, max_seconds: float) -> np.ndarray:
    """The sound in `data` as 16 kHz mono float32, or a 400 naming `param`.

    Decoding stops as soon as the sound runs past `max_seconds`, so a small file
    that claims a tiny sample rate, or hours of compressed silence, costs no more
    memory than the limit allows."""
    import av

    if not data:
        raise InvalidRequest("The audio is empty.", param=param, code="invalid_audio")
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise InvalidRequest("The file holds no audio stream.", param=param, code="invalid_audio")
            rate = getattr(stream.codec_context, "sample_rate", 0) or 0
            if not MIN_RATE <= rate <= MAX_RATE:
                raise InvalidRequest(f"The audio's sample rate is {rate} Hz; use {MIN_RATE:,} to {MAX_RATE:,} Hz.",
                                     param=param, code="invalid_audio")  # fmt: skip
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in itertools.chain(container.decode(stream), [None]):  # None flushes the resampler
                if frame is not None:
                    frame.pts = None  # resample by sample count; broken timestamps do not matter
                for out in resampler.resample(frame):  # type: ignore[arg-type]
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
                    if total > limit:
                        raise InvalidRequest(f"The audio is longer than the limit of {max_seconds:.1f} s.",
                                             param=param, code="audio_too_long")  # fmt: skip
    except InvalidRequest:
        raise
    except (av.error.FFmpegError, ValueError, IndexError, StopIteration, MemoryError) as e:
        raise InvalidRequest(f"The audio could not be decoded ({type(e).__name__}: {e}); send wav, mp3, flac, "
                             "ogg or webm.", param=param, code="invalid_audio") from e  # fmt: skip
    if total == 0:
        raise InvalidRequest("The audio holds no sound that could be decoded.", param=param, code="invalid_audio")
    return np.concatenate(chunks).astype(np.float32) / 32768.0


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    tokens: tuple[int, ...] = ()
    words: tuple[tuple[float, float, str], ...] = ()


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float
    task: str = "transcribe"
    segments: tuple[Segment, ...] = field(default_factory=tuple)


class SpeechToText:
    """One Whisper model, loaded on first use. Calls run one at a time: CTranslate2
    already spreads one call over the cores it is given.

    `fit` encodes a clip's last (or only) window at its own length, with room to
    spare, instead of padded out to Whisper's 30 s: the encoder's cost follows the
    window, so a 5 s question costs a fraction of the work (whisper.cpp's audio_ctx
    does the same). The bench shows its speed and word error rate beside full windows."""

    def __init__(self, model_path: Path, threads: int = 0, fit: bool = True):
        self.model_path = model_path
        self.threads = threads
        self.fit = fit
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            self._model = _whisper_class()(str(self.model_path), device="cpu", compute_type="int8",
                                           cpu_threads=self.threads)  # fmt: skip
            self._model.fit = self.fit
        return self._model

    def transcribe(
        self,
        samples: np.ndarray,
        *,
        language: str | None = None,
        task: str = "transcribe",
        prompt: str | None = None,
        temperature: float = 0.0,
        timestamps: bool = False,
        words: bool = False,
    ) -> Transcript:
        """`timestamps` asks for segment times (srt, vtt, verbose_json); without them
        Whisper decodes a little faster."""
        with self._lock:
            model = self._load()
            if language is None and model.model.is_multilingual:
                language = model.detect(samples)
            pieces, info = model.transcribe(
                samples, language=language, task=task, initial_prompt=prompt or None, beam_size=1,
                temperature=temperature or [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], without_timestamps=not timestamps,
                word_timestamps=words, condition_on_previous_text=False,
            )  # fmt: skip
            segments = tuple(
                Segment(i, round(s.start, 3), round(s.end, 3), s.text, s.avg_logprob, s.no_speech_prob,
                        s.compression_ratio, tuple(s.tokens),
                        tuple((w.start, w.end, w.word) for w in s.words or ()))
                for i, s in enumerate(pieces)
            )  # fmt: skip
        text = "".join(s.text for s in segments).strip()
        return Transcript(text, info.language, round(info.duration, 3), task, segments)


def _whisper_class() -> type:
    from faster_whisper import WhisperModel

    class Whisper(WhisperModel):  # type: ignore[misc]
        """faster-whisper, encoding the first 30 s window once. Left to find the
        language itself, faster-whisper encodes that window (one frame longer) to
        detect it and then again to transcribe it; on a short clip that doubles the
        work. `detect` encodes exactly the window transcription will, and `encode`
        keeps the last encoding, keyed by a digest of its input."""

        _last: tuple[bytes, Any] | None = None
        fit = True

        def detect(self, samples: np.ndarray) -> str:
            from faster_whisper.audio import pad_or_trim

            features = self.feature_extractor(samples)
            window = features[:, : min(self.feature_extractor.nb_max_frames, features.shape[-1] - 1)]
            found = self.model.detect_language(self.encode(pad_or_trim(window)))[0]
            return str(found[0][0][2:-2])  # "<|en|>" -> "en"

        def encode(self, features: np.ndarray) -> Any:
            if self.fit:
                features = fitted(features)
            key = hashlib.blake2b(np.ascontiguousarray(features).tobytes(), digest_size=16).digest()
            if self._last is not None and self._last[0] == key:
                return self._last[1]
            out = super().encode(features)
            self._last = (key, out)
            return out

    return Whisper


MIN_WINDOW = 1000  # frames (10 ms each): a fitted window is never shorter than 10 s


def fitted(features: np.ndarray) -> np.ndarray:
    """A window's features without most of its padding: the content, half as long
    again, and at least MIN_WINDOW frames. Padding is the all-zero columns that
    faster-whisper's pad_or_trim appends; real sound never makes one."""
    used = np.flatnonzero(np.any(features.reshape(-1, features.shape[-1]) != 0, axis=0))
    content = int(used[-1]) + 1 if used.size else 0
    keep = max(MIN_WINDOW, -(-content * 3 // 2 // 100) * 100)
    return features if keep >= features.shape[-1] else np.ascontiguousarray(features[..., :keep])


# --- response formats ---------------------------------------------------------

TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


def needs_timestamps(response_format: str, granularities: tuple[str, ...]) -> bool:
    return response_format in ("srt", "vtt", "verbose_json") or bool(granularities)


def render(t: Transcript, response_format: str, granularities: tuple[str, ...] = ()) -> tuple[str, str]:
    """The body and its media type, as OpenAI's audio endpoints answer."""
    if response_format == "text":
        return t.text + "\n", "text/plain; charset=utf-8"
    if response_format in ("srt", "vtt"):
        return _subtitles(t.segments, response_format), ("application/x-subrip" if response_format == "srt"
                                                          else "text/vtt") + "; charset=utf-8"  # fmt: skip
    body: dict[str, Any] = {"text": t.text}
    if response_format == "verbose_json":
        body = {"task": t.task, "language": LANGUAGE_NAMES.get(t.language, t.language), "duration": t.duration,
                "text": t.text}  # fmt: skip
        if not granularities or "segment" in granularities:
            body["segments"] = [
                {"id": s.id, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": list(s.tokens),
                 "temperature": 0.0, "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                 "no_speech_prob": s.no_speech_prob}
                for s in t.segments
            ]  # fmt: skip
        if "word" in granularities:
            body["words"] = [{"word": w.strip(), "start": round(a, 3), "end": round(b, 3)}
                             for s in t.segments for a, b, w in s.words]  # fmt: skip
    body["usage"] = {"type": "duration", "seconds": int(np.ceil(t.duration))}
    return json.dumps(body, ensure_ascii=False), "application/json"


def _subtitles(segments: tuple[Segment, ...], kind: str) -> str:
    sep = "," if kind == "srt" else "."

    def stamp(seconds: float) -> str:
        ms = round(seconds * 1000)
        h, ms = divmod(ms, 3_600_000)
        m, ms = divmod(ms, 60_000)
        s, ms = divmod(ms, 1000)
        return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"

    cues = [f"{stamp(s.start)} --> {stamp(s.end)}\n{s.text.strip()}\n" for s in segments]
    if kind == "srt":
        return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(cues, 1))
    return "WEBVTT\n\n" + "\n".join(cues)
