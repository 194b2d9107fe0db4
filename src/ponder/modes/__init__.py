"""The three modes: Instant, Thinking and Contemplating, each a small strategy
over the backend seam. `run` picks one from a resolved `ModeRequest`."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from ponder.backends.base import Backend
from ponder.modes.base import MODES, ModeName, ModeRequest, resolve
from ponder.modes.contemplating import contemplate
from ponder.modes.instant import instant
from ponder.modes.thinking import think
from ponder.types import Event

__all__ = ["MODES", "ModeName", "ModeRequest", "resolve", "run"]


def run(backend: Backend, req: ModeRequest) -> AsyncGenerator[Event, None]:
    if req.mode == "instant":
        return instant(backend, req.chat)
    if req.mode == "thinking":
        return think(backend, req.chat, req.budget, compression=req.compression, probe_every=req.probe_every)
    return contemplate(backend, req)
