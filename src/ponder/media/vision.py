"""Images for models that cannot see: checked, measured, and read with OCR
(rapidocr, PP-OCR models in ONNX), laid out in rows the way a reader takes them."""

from __future__ import annotations

import io
import itertools
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from ponder.errors import InvalidRequest

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp",
           "TIFF": "image/tiff"}  # fmt: skip


@dataclass(frozen=True)
class Picture:
    """An image, decoded and checked: what a description of it may honestly say."""

    format: str  # PNG, JPEG, ... (one of FORMATS)
    width: int
    height: int
    mode: str  # RGB, RGBA, L, ...
    brightness: float  # mean luminance, 0 (black) .. 1 (white)
    image: Any  # the PIL image, RGB


def load(data: bytes, param: str, max_pixels: int) -> Picture:
    """Decode `data`, refusing what is not an image or is too large, with a 400 naming `param`."""
    from PIL import Image, ImageOps, ImageStat, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(FORMATS))
            width, height = img.size
            if width * height > max_pixels:
                raise InvalidRequest(f"The image is {width}×{height} pixels; the limit is {max_pixels:,} pixels.",
                                     param=param, code="image_too_large")  # fmt: skip
            fmt = img.format or "image"
            img.load()
    except InvalidRequest:
        raise
    except UnidentifiedImageError:
        raise InvalidRequest("The data is not an image in a known format; send PNG, JPEG, WebP, GIF, BMP or TIFF.",
                             param=param, code="invalid_image") from None  # fmt: skip
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InvalidRequest(f"The image could not be decoded ({type(e).__name__}: {e}).", param=param,
                             code="invalid_image") from None  # fmt: skip
    mode = img.mode
    upright: Any = ImageOps.exif_transpose(img) or img  # phone photos: upright as taken
    img = upright
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")  # transparent parts read as white paper, not black
        rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    else:
        rgb = img.convert("RGB")
    brightness = ImageStat.Stat(rgb.convert("L")).mean[0] / 255
    return Picture(fmt, width, height, mode, brightness, rgb)


@dataclass(frozen=True)
class Word:
    text: str
    left: float
    top: float
    right: float
    bottom: float
    confidence: float


class Ocr:
    """rapidocr, loaded on first use; calls run one at a time."""

    def __init__(self) -> None:
        self._engine: Any = None
        self._lock = threading.Lock()

    def read(self, picture: Picture) -> list[Word]:
        import numpy as np

        with self._lock:
            if self._engine is None:
                from rapidocr_onnxruntime import RapidOCR

                self._engine = RapidOCR()
            found, _ = self._engine(np.asarray(picture.image)[:, :, ::-1])  # it takes BGR, as OpenCV does
        words = []
        for box, text, score in found or []:
            xs, ys = [p[0] for p in box], [p[1] for p in box]
            words.append(Word(text, min(xs), min(ys), max(xs), max(ys), float(score)))
        return words


def rows(words: list[Word]) -> list[list[Word]]:
    """Words grouped into rows (their vertical middles within half a line of each other),
    top to bottom, each row left to right."""
    out: list[list[Word]] = []
    for w in sorted(words, key=lambda w: (w.top + w.bottom) / 2):
        middle = (w.top + w.bottom) / 2
        if out:
            last = out[-1]
            line = sum(x.bottom - x.top for x in last) / len(last)
            if abs(middle - sum((x.top + x.bottom) / 2 for x in last) / len(last)) < line / 2:
                last.append(w)
                continue
        out.append([w])
    return [sorted(r, key=lambda w: w.left) for r in out]


def layout(words: list[Word]) -> str:
    """The text row by row; within a row, pieces far apart (table cells, a chart's
    labels) are separated by " | "."""
    lines = []
    for row in rows(words):
        text = row[0].text
        for prev, w in itertools.pairwise(row):
            char = (prev.right - prev.left) / max(len(prev.text), 1)
            text += (" | " if w.left - prev.right > 2.5 * char else " ") + w.text
        lines.append(text)
    return "\n".join(lines)


def columns(words: list[Word], short: int = 12) -> list[list[Word]]:
    """Short pieces stacked over one another (their horizontal middles inside each
    other's extent), top to bottom, left to right: a chart's value over its bar's
    label, a table's header over its cells. Only stacks of two or more rows."""
    pieces = sorted((w for w in words if len(w.text) <= short), key=lambda w: (w.left + w.right) / 2)
    stacks: list[list[Word]] = []
    for w in pieces:
        middle = (w.left + w.right) / 2
        last = stacks[-1][-1] if stacks else None
        if last and (last.left <= middle <= last.right or w.left <= (last.left + last.right) / 2 <= w.right):
            stacks[-1].append(w)
        else:
            stacks.append([w])
    out = [sorted(s, key=lambda w: w.top) for s in stacks]
    return [s for s in out if len(s) >= 2 and s[-1].top >= s[0].bottom]


LOW_CONFIDENCE = 0.75  # OCR pieces below this are mostly noise (rotated or tiny text)


def describe(picture: Picture, words: list[Word], label: str) -> str:
    """What a text-only model is told about an image: only what was measured or read."""
    tone = "light" if picture.brightness > 0.6 else "dark" if picture.brightness < 0.35 else "mid-tone"
    head = (f"[{label}: {picture.format}, {picture.width}×{picture.height} pixels, {picture.mode}, mostly {tone}. "
            "You cannot see this image; the text below was read from it by OCR")  # fmt: skip
    sure = [w for w in words if w.confidence >= LOW_CONFIDENCE]
    if not sure:
        return head + ", which found no text in it. Say so if asked what it shows.]"
    confidence = sum(w.confidence for w in sure) / len(sure)
    dropped = len(words) - len(sure)
    out = (f"{head}, row by row in reading order, with \" | \" between pieces of a row that stand apart "
           f"(mean confidence {confidence:.2f}"
           + (f"; {dropped} piece{'s' * (dropped > 1)} read with low confidence left out" if dropped else "")
           + f"):\n{layout(sure)}")  # fmt: skip
    stacks = columns(sure)
    if len(stacks) >= 2:
        out += ("\nText stacked in columns, left to right (a label with the numbers above or below it, "
                "as a chart's bar or a table's column has them):\n" + "\n".join(map(_stack, stacks)))  # fmt: skip
    return out + f"\n[end of {label}]"


_NUMBER = re.compile(r"[-+]?[$€£]?\d[\d,.]*%?")


def _stack(stack: list[Word]) -> str:
    """ "label: 1, 2" where one piece is words and the rest numbers; else top / … / bottom."""
    words = [w for w in stack if not _NUMBER.fullmatch(w.text)]
    if len(words) == 1:
        return f"{words[0].text}: " + ", ".join(w.text for w in stack if w is not words[0])
    return " / ".join(w.text for w in stack)
