"""The modes: Instant, Thinking and Contemplating, each a small strategy over the
backend seam, and Auto, which starts as Instant and escalates to Contemplating when
the answer is unsure. `run` picks one from a resolved `ModeRequest`."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from ponder.backends.base import Backend
from ponder.modes.auto import auto
from ponder.modes.base import MODES, ModeName, ModeRequest, resolve
from ponder.modes.contemplating import contemplate
from ponder.modes.instant import instant
from ponder.modes.thinking import think
from ponder.modes.tools import run as with_tools
from ponder.types import ChatRequest, Event

__all__ = ["MODES", "ModeName", "ModeRequest", "resolve", "run"]


def run(backend: Backend, req: ModeRequest) -> AsyncGenerator[Event, None]:
    """The mode's run; with server-side tools, rounds of it in the agent loop."""
    if req.mode == "contemplating":
        return contemplate(backend, req)  # its agents run the loop themselves
    if req.mode == "auto" and not req.toolbox:
        return auto(backend, req)

    def one(chat: ChatRequest) -> AsyncGenerator[Event, None]:
        if req.mode in ("instant", "auto"):  # Auto with tools: tool rounds are Instant's
            return instant(backend, chat)
        return think(backend, chat, req.budget, compression=req.compression, probe_every=req.probe_every,
                     steer=req.steer)  # fmt: skip

    return with_tools(one, req.chat, req.toolbox) if req.toolbox else one(req.chat)
