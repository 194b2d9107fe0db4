"""A bench's results file: a JSON object with `summary` and `rows`, written after
every item, so a long run that stops resumes from where it was."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")


def saved(path: Path | None, row: Callable[..., R]) -> list[R]:
    """The rows already in `path` (none when there is no file yet)."""
    if path is None or not path.exists():
        return []
    rows = [row(**r) for r in json.loads(path.read_text())["rows"]]
    print(f"resuming: {len(rows)} results already in {path}", file=sys.stderr)
    return rows


def save(path: Path, rows: Sequence[Any], summary: list[dict[str, Any]]) -> None:
    """Write the file whole, then move it in place: a kill mid-write loses nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"summary": summary, "rows": [asdict(r) for r in rows]}, indent=2))
    tmp.replace(path)
