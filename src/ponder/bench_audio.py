"""`ponder bench audio`: word error rate and speed of speech to text on the five
LibriVox clips in Debian's pocketsphinx-testdata (16 kHz wav, with transcripts).

Each clip is transcribed as `/v1/audio/transcriptions` does for `response_format`
json (the same model, settings and decoding), after one untimed warm-up run, both
with fitted windows (the default, see audio.SpeechToText) and with full 30 s
windows. The real-time factor is audio seconds per wall second: 5.0 means five
times faster than real time. Words are compared after the usual normalisation (case,
punctuation, hyphens, a few spoken abbreviations).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ponder.media.audio import SpeechToText, decode

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
_SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint"}


def normalise(text: str) -> list[str]:
    text = re.sub(r"<\/?s>|\([^)]*\)$", " ", text.lower())  # sphinx markers and the utterance id
    text = re.sub(r"[-–—]", " ", text)
    words = re.sub(r"[^\w\s']", " ", text).split()
    return [_SPOKEN.get(w, w) for w in words]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over a corpus: word edits / reference words."""
    refs = [normalise(r) for r in references]
    edits = sum(edit_distance(r, normalise(h)) for r, h in zip(refs, hypotheses))
    return edits / max(sum(len(r) for r in refs), 1)


def clips(directory: Path = LIBRIVOX) -> list[tuple[Path, str]]:
    """(wav file, reference transcript) for each clip."""
    if not (directory / "transcription").exists():
        raise FileNotFoundError(f"{directory}/transcription not found: install Debian's pocketsphinx-testdata "
                                "(`make test-data`)")  # fmt: skip
    out = []
    for line in (directory / "transcription").read_text().splitlines():
        m = re.fullmatch(r"\s*(.*?)\s*\(([\w.-]+)\)\s*", line)
        if m:
            out.append((directory / f"{m.group(2)}.wav", " ".join(normalise(m.group(1)))))
    return out


@dataclass(frozen=True)
class Row:
    config: str
    clip: str
    seconds: float
    wall_s: float
    reference: str
    hypothesis: str
    wer: float


def run(
    configs: dict[str, SpeechToText], directory: Path = LIBRIVOX, progress: bool = True
) -> tuple[list[Row], dict[str, dict[str, float]]]:
    """Every clip through every config, side by side (clip by clip, in turn), so
    the machine's noise falls on all of them alike."""
    items = clips(directory)
    load: dict[str, float] = {}
    for name, stt in configs.items():
        # Load the model and warm it up on two seconds of a tone: not a clip, so that
        # no clip's encoding is left cached (see audio.SpeechToText).
        t0 = time.perf_counter()
        stt.transcribe((0.1 * np.sin(np.arange(32_000) * 2 * np.pi * 440 / 16_000)).astype(np.float32))
        load[name] = time.perf_counter() - t0
    rows = []
    for n, (path, ref) in enumerate(items, 1):
        for name, stt in configs.items():
            start = time.perf_counter()
            samples = decode(path.read_bytes(), "file", 3600)
            text = stt.transcribe(samples).text
            wall = time.perf_counter() - start
            rows.append(Row(name, path.stem, samples.size / 16_000, wall, ref, text, wer([ref], [text])))
            if progress:
                print(f"[{n}/{len(items)}] {name}: {path.stem}: {rows[-1].seconds:.1f} s audio in {wall:.2f} s, "
                      f"WER {rows[-1].wer:.1%}", flush=True)  # fmt: skip
    summary = {}
    for name, stt in configs.items():
        mine = [r for r in rows if r.config == name]
        audio_s, wall_s = sum(r.seconds for r in mine), sum(r.wall_s for r in mine)
        summary[name] = {"clips": len(mine), "wer": wer([r.reference for r in mine], [r.hypothesis for r in mine]),
                         "audio_s": audio_s, "wall_s": wall_s, "realtime_factor": audio_s / wall_s,
                         "load_and_warmup_s": load[name], "threads": stt.threads}  # fmt: skip
    return rows, summary


def table(summary: dict[str, dict[str, float]]) -> str:
    lines = []
    for name, s in summary.items():
        lines.append(f"{name:>12}: {int(s['clips'])} LibriVox clips, {s['audio_s']:.1f} s of audio: "
                     f"WER {s['wer']:.1%}, "
                     f"{s['realtime_factor']:.1f}x real time ({s['wall_s']:.2f} s wall, {int(s['threads'])} threads; "
                     f"load and warm-up {s['load_and_warmup_s']:.1f} s, not counted)")  # fmt: skip
    if len(summary) == 2:
        (a, x), (b, y) = summary.items()
        lines.append(f"{a} is {x['realtime_factor'] / y['realtime_factor']:.2f}x the speed of {b}")
    return "\n".join(lines)


def write(rows: list[Row], summary: dict[str, dict[str, float]], path: Path | None) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"summary": summary, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
