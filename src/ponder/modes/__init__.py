"""The modes: Instant, Thinking and Contemplating, each a small strategy over the
backend seam, and Auto, which answers cheaply first and escalates to Contemplating
when the answer is unsure. `run` picks one from a resolved `ModeRequest`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import suppress
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.modes import answers, check, evidence
from ponder.modes.auto import auto
from ponder.modes.base import MODES, ModeName, ModeRequest, resolve
from ponder.modes.confidence import TOP_K, for_client
from ponder.modes.contemplating import contemplate
from ponder.modes.contemplating.attempts import phrased
from ponder.modes.contemplating.synthesis import AgentResult
from ponder.modes.instant import instant
from ponder.modes.thinking import Trace, think
from ponder.modes.tools import run as with_tools
from ponder.types import AgentEvent, ChatRequest, Done, Event, TextDelta, Usage

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
    """A Thinking run, measured: its tokens' log-probabilities are asked for (the
    client gets those it asked for), a program checks its answer where one can
    (`modes.check`: the answer is held until it has), and the evidence behind the
    answer comes last."""
    asked = chat.params.logprobs
    measured = replace(chat, params=replace(chat.params, logprobs=max(TOP_K, asked or 0)))
    trace = Trace(measure=True)
    checking = asyncio.ensure_future(check.run(backend, req, req.steer)) if check.wanted(req) else None
    held: list[TextDelta] = []
    try:
        async for event in think(backend, measured, req.budget, compression=req.compression,
                                 probe_every=req.probe_every, trace=trace, steer=req.steer):  # fmt: skip
            if isinstance(event, TextDelta):
                event = TextDelta(event.text, for_client(event.logprobs, asked))
                if checking is not None:
                    held.append(event)
                    continue
            if isinstance(event, Done) and not trace.tool_calls:
                program = await checking if checking is not None else None
                if program is not None:
                    spent = program.trace.usage + Usage(0, 0, reasoning_tokens=program.trace.reasoning_tokens)
                    event = replace(event, usage=event.usage + spent)  # its code is work toward the answer
                    async for shown in _checked(backend, req, trace, program, held):
                        if isinstance(shown, Done):
                            event = replace(event, usage=event.usage + shown.usage)
                        else:
                            yield shown
                yield evidence.event(evidence.of_chain(trace, program))
            yield event
    finally:
        if checking is not None and not checking.done():
            checking.cancel()
            with suppress(asyncio.CancelledError):
                await checking


async def _checked(
    backend: Backend, req: ModeRequest, trace: Trace, program: AgentResult, held: list[TextDelta]
) -> AsyncGenerator[Event, None]:
    """The answer once a program has checked it (`modes.check`): the chain's as written
    when they agree (or the program has no answer), else the program's, in a sentence
    (or alone, when the client asked for the answer now). A Done carries what that cost."""
    final, got = answers.extract(trace.answer), program.vote
    agrees = None if got is None else got == final
    yield AgentEvent("check", None, {"method": "program", "answer": got, "agrees": agrees})
    if agrees is not False:
        for delta in held:
            yield delta
    elif req.steer.answering:
        yield TextDelta(program.trace.answer.strip())
    else:
        async for event in phrased(backend, req.chat, program):
            yield event
