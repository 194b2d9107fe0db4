"""The data sets `ponder bench modes` runs on, by name."""

from __future__ import annotations

from pathlib import Path

from ponder.evals import Item, gsm8k, multichoice
from ponder.wheels import Progress

NAMES = ("gsm8k", "truthfulqa", "hellaswag")


def load(name: str, cache_dir: Path, progress: Progress) -> list[Item]:
    """All 100 items of the named sample, in the data set's own order."""
    if name == "gsm8k":
        return gsm8k.load(cache_dir, progress)
    if name in multichoice.SAMPLES:
        return multichoice.load(name, cache_dir, progress)
    raise ValueError(f"unknown data set {name!r}: use one of {', '.join(NAMES)}")
