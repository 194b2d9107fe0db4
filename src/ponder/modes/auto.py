"""Auto: answer cheaply, and spend more only where the answer is not sure of itself.

  1. The direct answer, as Instant gives it (the model's own answer to the message as
     sent), with its token log-probabilities. It streams as reasoning while it is
     written, since it may not be the answer yet.
  2. Its confidence is the lowest window of its trace (`modes.confidence`). An answer
     at or above `auto_confidence`, one that looped (settled from what it had), and
     one from an engine that returns no log-probabilities is the answer: it comes out
     as the reply, and the run ends.
  3. Otherwise the request escalates to Contemplating, with the direct answer as its
     first attempt: the next agent is a program or a second chain, and only if they
     disagree do more agents and a judge follow (`contemplating/attempts.py`).

A request with nothing a second opinion could check (no numbers to work with, no
options to choose from: a chat, a poem, an open question) is answered as Instant
answers it, streaming as it is written; so is one that can call the client's
functions or any server-side tool (a tool round is no answer to measure).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.formats.clean import clean
from ponder.modes import choices
from ponder.modes.base import ModeRequest
from ponder.modes.confidence import TOP_K
from ponder.modes.contemplating import contemplate
from ponder.modes.contemplating.planner import options, quantitative, request_text
from ponder.modes.contemplating.synthesis import AgentResult
from ponder.modes.instant import instant
from ponder.modes.thinking import Trace
from ponder.types import AgentEvent, Done, Event, ReasoningDelta, TextDelta, TokenLogprob, Usage


async def auto(backend: Backend, req: ModeRequest) -> AsyncGenerator[Event, None]:
    question = request_text(req.chat)
    if not (quantitative(question) or options(question) >= 2):  # nothing a second opinion could check
        async for event in instant(backend, req.chat):
            yield event
        return
    # 1. the direct answer, measured
    asked = req.chat.params.logprobs
    chat = replace(req.chat, params=replace(req.chat.params, logprobs=max(TOP_K, asked or 0)))
    trace = Trace(measure=True)
    text: list[str] = []
    logprobs: list[TokenLogprob] = []
    done = Done("stop", Usage(0, 0))
    async for event in instant(backend, chat, trace.watch, clean_answer=False):
        if isinstance(event, TextDelta):
            text.append(event.text)
            logprobs += event.logprobs
            if event.text:
                yield ReasoningDelta(event.text)
        elif isinstance(event, Done):
            done = event
    raw = "".join(text)
    trace.answer, trace.usage = raw, done.usage
    trace.distribution = choices.named(question, raw, logprobs)
    signal = trace.watch.meter.signal()

    # 2. sure enough (or looped, and settled from what it had): that is the answer. An
    # engine that returns no log-probabilities gives nothing to measure, and nothing
    # is spent on a check that no measurement asked for.
    sure = not signal.known or signal.lowest >= req.auto_confidence
    if sure or trace.watch.stopped:
        yield AgentEvent("auto", None, {"escalated": False, "confidence": round(signal.lowest, 3)})
        yield TextDelta(clean(raw).strip(), _for_client(logprobs, asked))
        yield done
        return

    # 3. escalate, with the direct answer as the first attempt
    yield AgentEvent("auto", None, {"escalated": True, "confidence": round(signal.lowest, 3)})
    yield ReasoningDelta("\n\n")
    trace.reasoning_tokens = done.usage.completion_tokens  # it was work toward the answer now
    direct = AgentResult(0, "direct", trace, method="direct")
    async for event in contemplate(backend, replace(req, mode="contemplating"), prior=(direct,)):
        yield event


def _for_client(logprobs: list[TokenLogprob], asked: int | None) -> tuple[TokenLogprob, ...]:
    """The log-probabilities the client asked for: none, or its number of alternatives."""
    if asked is None:
        return ()
    return tuple(replace(lp, top=lp.top[:asked]) for lp in logprobs)
