"""Progress for long work (model fetch, join and verify), on a terminal or in a log."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class TerminalProgress:
    """A `Progress` callback: redraws one line on a TTY, prints every 10% otherwise."""

    def __init__(self, label: str, out: TextIO | None = None):
        self.label = label
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self._stage = ""
        self._last_decile = -1
        self._last_draw = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            if self._stage and self.tty:
                self.out.write("\n")
            self._stage, self._last_decile = stage, -1
        pct = int(100 * done / total) if total else 0
        amount = _amount(stage, done, total)
        line = f"{self.label}: {stage} {amount}" + (f" {pct:3d}%" if total else "")
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw > 0.1 or done == total:
                self.out.write("\r" + _bar(pct) + " " + line + "\x1b[K")
                self._last_draw = now
                if done == total:
                    self.out.write("\n")
        elif pct // 10 != self._last_decile:
            self._last_decile = pct // 10
            self.out.write(line + "\n")
        self.out.flush()


def _amount(stage: str, done: int, total: int) -> str:
    if total > 1 << 20:
        return f"{done / 2**20:,.0f}/{total / 2**20:,.0f} MiB"
    return f"{done}/{total}" if total else ""


def _bar(pct: int, width: int = 24) -> str:
    full = width * pct // 100
    return "[" + "#" * full + "." * (width - full) + "]"
