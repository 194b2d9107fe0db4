"""Auto: answer cheaply, and spend more only where the answer is not sure of itself.

  1. A first answer, measured by its token log-probabilities (`modes.confidence`):
     - for a question that letters its options, the model's own answer as Instant
       gives it (often the letter alone: one token), weighed against the options'
       words when the engine can score them (`modes.choices`);
     - for a question with numbers to work with, Thinking's program
       (`modes.computed`): what it printed, if a number; if not (or with programs
       off), one Thinking chain (compressed: the working as terse notes, stopped once
       it has settled).
     Its reasoning streams as reasoning, and so does a direct answer while it is
     written, since it may not be the reply yet.
  2. Its confidence is the lowest 32-token window of what gave the answer it would
     show: the direct answer's whole text, the program's code, or the answer a chain
     stated after its reasoning (`_signal`). An answer at or above `auto_confidence`,
     one that looped (settled from what it had), and one from an engine that returns
     no log-probabilities is the answer: it comes out as the reply (a program's
     number put in a sentence), and the run ends.
  3. Otherwise the request escalates to Contemplating, with the first attempts as
     its first agents, each in the place of the agent of its method: the next agent
     is the model's own answer, and only if it disagrees do more agents and a judge
     follow (`contemplating/attempts.py`).

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
from ponder.modes import choices, computed, evidence
from ponder.modes.base import ModeRequest
from ponder.modes.confidence import TOP_K, Signal, for_client, measure
from ponder.modes.contemplating import contemplate
from ponder.modes.contemplating.planner import options, quantitative, request_text, sampled
from ponder.modes.contemplating.synthesis import AgentResult
from ponder.modes.instant import instant
from ponder.modes.thinking import Trace, think
from ponder.types import AgentEvent, ChatRequest, Done, Event, ReasoningDelta, TextDelta, TokenLogprob, Usage


async def auto(backend: Backend, req: ModeRequest) -> AsyncGenerator[Event, None]:
    question = request_text(req.chat)
    lettered = options(question) >= 2
    if not (lettered or quantitative(question)):  # nothing a second opinion could check
        async for event in instant(backend, req.chat):
            yield event
        return
    # 1. the first answer, measured
    first: list[AgentResult] = []
    answer: list[TextDelta] = []
    done = Done("stop", Usage(0, 0))
    if lettered:
        steps = _direct(backend, req.chat, question, first)
    elif computed.wanted(req):
        steps = _computed(backend, req, first)
    else:
        steps = _chain(backend, req, first)
    async for event in steps:
        if isinstance(event, TextDelta):
            answer.append(event)
        elif isinstance(event, Done):
            done = event
        else:
            yield event
    result = first[-1]
    signal = _signal(result)

    # 2. sure enough (or looped, and settled from what it had): that is the answer. An
    # engine that returns no log-probabilities gives nothing to measure, and nothing
    # is spent on a check that no measurement asked for.
    report = {"first": result.method, "confidence": round(signal.lowest, 3)}
    settled = not signal.known or signal.lowest >= req.auto_confidence or result.trace.watch.stopped == "loop"
    if settled or req.steer.answering:  # (the client asked for the answer now: no checking it further)
        yield AgentEvent("auto", None, {"escalated": False, **report})
        if result.method == "program":  # its number, put in a sentence now that it is the answer
            async for event in computed.answer(backend, req, result):
                if isinstance(event, Done):
                    yield evidence.event(evidence.of_program(result.trace))
                yield event
            return
        for event in answer:
            yield event
        yield evidence.event(evidence.of_direct(result.trace) if lettered else evidence.of_chain(result.trace))
        yield done
        return

    # 3. escalate, with the first attempts as the first agents
    yield AgentEvent("auto", None, {"escalated": True, **report})
    yield ReasoningDelta("\n\n")
    async for event in contemplate(backend, replace(req, mode="contemplating"), prior=tuple(first)):
        yield event


async def _computed(backend: Backend, req: ModeRequest, out: list[AgentResult]) -> AsyncGenerator[Event, None]:
    """A program first (`modes.computed`), its work streamed as reasoning. One that
    printed a number is the first answer (put in a sentence only once it is the
    reply); one that did not is followed by a chain, whose Done counts them both."""
    async for event in computed.solve(backend, req, out):
        yield event
    if computed.settles(out[-1]):
        return
    yield ReasoningDelta("\n\n")
    async for event in _chain(backend, replace(req, budget=computed.left(req, out[0])), out):
        yield replace(event, usage=event.usage + computed.cost(out[0])) if isinstance(event, Done) else event


async def _direct(
    backend: Backend, chat: ChatRequest, question: str, out: list[AgentResult]
) -> AsyncGenerator[Event, None]:
    """The model's own answer, streamed as reasoning while it is written; the answer
    (its `\\boxed{}` taken off) comes as one TextDelta at the end, before Done."""
    asked = chat.params.logprobs
    measured = replace(chat, params=replace(chat.params, logprobs=max(TOP_K, asked or 0)))
    trace = Trace(measure=True)
    text: list[str] = []
    logprobs: list[TokenLogprob] = []
    done = Done("stop", Usage(0, 0))
    async for event in instant(backend, measured, trace.watch, clean_answer=False):
        if isinstance(event, TextDelta):
            text.append(event.text)
            logprobs += event.logprobs
            if event.text:
                yield ReasoningDelta(event.text)
        elif isinstance(event, Done):
            done = event
    trace.answer, trace.usage = "".join(text), done.usage
    trace.distribution = choices.named(question, trace.answer, logprobs)
    trace.reasoning_tokens = done.usage.completion_tokens  # work toward the answer, if it escalates
    out.append(AgentResult(0, "direct", trace, method="direct"))
    yield TextDelta(clean(trace.answer).strip(), for_client(logprobs, asked))
    yield done


async def _chain(backend: Backend, req: ModeRequest, out: list[AgentResult]) -> AsyncGenerator[Event, None]:
    """One Thinking chain, its answer measured: its reasoning streams; its answer and Done follow."""
    asked = req.chat.params.logprobs
    chat = replace(req.chat, params=replace(req.chat.params, logprobs=max(TOP_K, asked or 0)))
    trace = Trace(measure=True)
    try:
        async for event in think(backend, chat, req.budget, compression=req.compression,
                                 probe_every=req.probe_every, trace=trace, steer=req.steer):  # fmt: skip
            yield TextDelta(event.text, for_client(list(event.logprobs), asked)) if isinstance(event, TextDelta) \
                else event  # fmt: skip
    finally:
        out.append(AgentResult(0, "chain", trace, method="chain", sampled=sampled(chat)))


def _signal(first: AgentResult) -> Signal:
    """How sure the model was of the answer it would show: the lowest window of the
    direct answer, which is all the answer there is; of a program, of its code; of a
    chain, of its answer call (the conclusion it stated after reasoning). On the default model's GSM8K fitting
    items (1-20), that told a chain's right answers from its wrong ones better than
    its reasoning's lowest window did (AUROC 0.73 against 0.54: docs/modes.md)."""
    if first.method == "chain":
        return measure(first.trace.answer_logprobs)
    return first.trace.watch.meter.signal()
