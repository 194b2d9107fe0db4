"""Text to speech with Piper, and the audio encodings OpenAI's clients ask for."""

from __future__ import annotations

import io
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np

# response_format -> (media type, container, codec, sample rate or 0 for the voice's own)
SPEECH_FORMATS: dict[str, tuple[str, str, str, int]] = {
    "mp3": ("audio/mpeg", "mp3", "libmp3lame", 0),
    "wav": ("audio/wav", "wav", "pcm_s16le", 0),
    "flac": ("audio/flac", "flac", "flac", 0),
    "opus": ("audio/ogg", "ogg", "libopus", 48_000),
    "aac": ("audio/aac", "adts", "aac", 0),
    "pcm": ("audio/pcm", "s16le", "pcm_s16le", 24_000),  # raw 24 kHz 16-bit mono, as OpenAI sends it
}

# OpenAI's voice names: clients send them, and each gets the default voice here.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")  # fmt: skip


class TextToSpeech:
    """One Piper voice, loaded on first use."""

    def __init__(self, voice_path: Path, name: str):
        self.voice_path = voice_path
        self.name = name
        self._voice: Any = None
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        return int(self._load().config.sample_rate)

    def _load(self) -> Any:
        if self._voice is None:
            from piper import PiperVoice

            self._voice = PiperVoice.load(str(self.voice_path))
        return self._voice

    def synthesize(self, text: str, speed: float = 1.0, steady: bool = False) -> np.ndarray:
        """Mono int16 samples at `sample_rate`; `speed` 2.0 talks twice as fast. Piper
        varies its voice a little at random; `steady` turns that off, so the same text
        always sounds the same."""
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / speed)
        if steady:
            config = SynthesisConfig(length_scale=1.0 / speed, noise_scale=0.0, noise_w_scale=0.0)
        text = text.replace("\0", " ")  # the phonemizer takes a C string, which a NUL would end
        with self._lock:
            voice = self._load()
            chunks = [c.audio_int16_array for c in voice.synthesize(text, config)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def encode(samples: np.ndarray, rate: int, response_format: str) -> bytes:
    """Mono int16 `samples` at `rate` in one of SPEECH_FORMATS."""
    _, container, codec, out_rate = SPEECH_FORMATS[response_format]
    if response_format == "wav":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(samples.astype("<i2").tobytes())
        return buf.getvalue()
    out_rate = out_rate or rate
    if response_format == "pcm":
        return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in _resampled(samples, rate, "s16", out_rate))
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream: Any = out.add_stream(codec, rate=out_rate, layout="mono")
        fmt = stream.codec_context.codec.audio_formats[0].name
        for frame in _resampled(samples, rate, fmt, out_rate):
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def _resampled(samples: np.ndarray, rate: int, fmt: str, out_rate: int) -> list[Any]:
    import av

    frame = av.AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format=fmt, layout="mono", rate=out_rate, frame_size=1024)
    return [*resampler.resample(frame), *resampler.resample(None)]
