"""The modes: Instant, Thinking and Contemplating, each a small strategy over the
backend seam, and Auto, which answers cheaply first and escalates to Contemplating
when the answer is unsure. `run` picks one from a resolved `ModeRequest`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.modes import computed, evidence
from ponder.modes.auto import auto
from ponder.modes.base import MODES, ModeName, ModeRequest, resolve
from ponder.modes.confidence import TOP_K, for_client
from ponder.modes.contemplating import contemplate
from ponder.modes.contemplating.synthesis import AgentResult
from ponder.modes.instant import instant
from ponder.modes.thinking import Trace, think
from ponder.modes.tools import run as with_tools
from ponder.types import NO_USAGE, ChatRequest, Done, Event, ReasoningDelta, TextDelta

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
        return _thinking(backend, req, chat)

    return with_tools(one, req.chat, req.toolbox) if req.toolbox else one(req.chat)


async def _thinking(backend: Backend, req: ModeRequest, chat: ChatRequest) -> AsyncGenerator[Event, None]:
    """A Thinking run, measured: for a question with numbers, a program first
    (`modes.computed`), whose answer stands if it printed one; else a chain, its
    tokens' log-probabilities asked for (the client gets those it asked for). The
    evidence behind the answer comes last, before Done."""
    ran: list[AgentResult] = []
    if computed.wanted(req):
        async for event in computed.solve(backend, req, ran):
            yield event
        if computed.settles(ran[0]):
            async for event in computed.answer(backend, req, ran[0]):
                if isinstance(event, Done):
                    yield evidence.event(evidence.of_program(ran[0].trace))
                yield event
            return
        yield ReasoningDelta("\n\n")
    before = computed.cost(ran[0]) if ran else NO_USAGE  # a program that got no answer still cost its tokens
    asked = chat.params.logprobs
    measured = replace(chat, params=replace(chat.params, logprobs=max(TOP_K, asked or 0)))
    trace = Trace(measure=True)
    budget = computed.left(req, ran[0]) if ran else req.budget
    async for event in think(backend, measured, budget, compression=req.compression,
                             probe_every=req.probe_every, trace=trace, steer=req.steer):  # fmt: skip
        if isinstance(event, TextDelta):
            event = TextDelta(event.text, for_client(event.logprobs, asked))
        if isinstance(event, Done) and not trace.tool_calls:
            yield evidence.event(evidence.of_chain(trace))
            event = replace(event, usage=event.usage + before)
        yield event
