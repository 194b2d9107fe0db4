"""A program checks a Thinking chain's answer to a question with numbers.

A small model reasoning in words slips on arithmetic; the same model writing a
program rarely does, and the default model is a coder (program-aided reasoning: PAL,
arXiv 2211.10435). So beside a Thinking chain on a question with numbers to work
with, the program agent (`contemplating/program.py`, temperature 0) solves it too,
at the same time (the batched engine decodes both together; on two CPU cores that
still doubled Thinking's median time on GSM8K, docs/modes.md). Then:

- they agree: the answer is the chain's, and as sure as this model's answers get;
- they disagree: the program's answer is shown, in a sentence the model writes
  around it (as Contemplating shows an answer only a program reached), since an
  interpreter does not slip where words do. The chain's reasoning stays as written;
- the program failed, printed no number, or the client asked for the answer before
  it was done: the chain's answer stands, unchecked.

The outcome goes into the answer's evidence (`program_agrees`, `program_answer`),
where the calibration weighs it. A check is one more agent's tokens, counted in the
answer's usage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.media import own_words
from ponder.modes import evidence
from ponder.modes.base import ModeRequest
from ponder.modes.contemplating import program
from ponder.modes.contemplating.attempts import phrased
from ponder.modes.contemplating.planner import quantitative, request_text
from ponder.modes.contemplating.synthesis import AgentResult
from ponder.modes.thinking import Trace
from ponder.types import AgentEvent, Done, Event, TextDelta, Usage


def wanted(req: ModeRequest) -> bool:
    """Whether a program can check this request's answer: a question with numbers to
    work with in the user's own words (numbers read off an attached image or file are
    data, and a chart's question is seldom a sum: "which sold most?"), no options,
    programs on and runnable here, and no tools in play (a tool round is no answer to
    check)."""
    return (req.programs and not req.toolbox and not req.chat.tools
            and quantitative(own_words(request_text(req.chat))) and program.available())  # fmt: skip


@asynccontextmanager
async def beside(backend: Backend, req: ModeRequest) -> AsyncIterator[asyncio.Future[AgentResult] | None]:
    """The check, started now to run beside the chain; None where none is `wanted`.
    Left unawaited (the client went away), it is cancelled."""
    task = asyncio.ensure_future(run(backend, req)) if wanted(req) else None
    try:
        yield task
    finally:
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


async def run(backend: Backend, req: ModeRequest) -> AgentResult:
    """The program agent's attempt at the request, at temperature 0, steered by the
    client's controls as the chain is; its code is not streamed (it runs beside the
    chain, whose reasoning is)."""
    chat = replace(req.chat, params=replace(req.chat.params, temperature=0.0))
    trace = Trace(measure=True)
    trace.watch.steer = req.steer
    async for event in program.program(backend, chat, request_text(req.chat), trace):
        if isinstance(event, Done):
            break
    return AgentResult(1, "program", trace, method="program")


async def answer(
    backend: Backend, req: ModeRequest, chain: Trace, checker: AgentResult, held: Sequence[TextDelta], done: Done
) -> AsyncGenerator[Event, None]:
    """The answer once the program has checked it: the chain's as written (`held`) when
    they agree or the program got none, else the program's, in a sentence (alone, when
    the client asked for the answer now). A check event comes first, and `done` last,
    with what the program and any sentence cost added."""
    verdict = evidence.agrees(chain, checker)
    yield AgentEvent("check", None, {"method": "program", "answer": checker.vote, "agrees": verdict})
    # the program's code is work toward the answer: reasoning tokens
    usage = done.usage + checker.trace.usage + Usage(0, 0, reasoning_tokens=checker.trace.reasoning_tokens)
    if verdict is not False:
        for delta in held:
            yield delta
    elif req.steer.answering:
        yield TextDelta(checker.trace.answer.strip())
    else:
        async for event in phrased(backend, req.chat, checker):
            if isinstance(event, Done):
                usage += event.usage
            else:
                yield event
    yield replace(done, usage=usage)
