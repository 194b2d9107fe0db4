"""Real media for the voice and vision tests, made here: text rendered into an
image, a labelled bar chart drawn with matplotlib, PDFs, and speech by Piper."""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path

import numpy as np

from ponder.media import speech


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def text_png(lines: list[str], size: int = 30) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    img = Image.new("RGB", (40 + 20 * size, 40 + int(1.6 * size) * len(lines)), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((20, 20 + int(1.6 * size) * i), line, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def bar_chart_png(title: str, labels: list[str], values: list[int]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    bars = ax.bar(labels, values, color="#4a7ab5")
    ax.bar_label(bars, labels=[str(v) for v in values], fontsize=14)
    ax.set_title(title, fontsize=16)
    ax.set_ylabel("units sold", fontsize=12)
    ax.tick_params(labelsize=13)
    ax.set_ylim(0, max(values) * 1.2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def pdf(pages: list[str]) -> bytes:
    """A PDF with a real text layer, one page per string."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with PdfPages(buf) as out:
        for text in pages:
            fig = plt.figure(figsize=(8.5, 11))
            fig.text(0.1, 0.9, text, fontsize=14, va="top", wrap=True)
            out.savefig(fig)
            plt.close(fig)
    return buf.getvalue()


def spoken(voice: Path, text: str, fmt: str = "wav") -> bytes:
    """`text` spoken by the Piper voice at `voice`, encoded as `fmt`, the same every time."""
    tts = speech.TextToSpeech(voice, "joe")
    return speech.encode(tts.synthesize(text, steady=True), tts.sample_rate, fmt)


def tone(seconds: float, rate: int = 16_000) -> np.ndarray:
    return (0.2 * np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 440 / rate) * 32767).astype(np.int16)


def tone_wav(seconds: float, rate: int = 16_000) -> bytes:
    """`tone(seconds)` as a mono 16-bit WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(tone(seconds, rate).tobytes())
    return out.getvalue()
