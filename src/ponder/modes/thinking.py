"""Thinking: one chain of reasoning under a token budget, then the answer.

With a backend that can continue a reply (prefill), the server drives the shape of
the reply itself, so models with no thinking mode of their own still think:

  1. reasoning: continue the reply from "<think>\\n", at most `budget` tokens, stopping
     early if the model closes the block itself;
  2. thought compression: the reasoning is asked to be terse (notes, not prose), and
     every `probe_every` reasoning tokens the answer is asked for right now, in a new
     turn after the reasoning so far. When the probe gives the answer the reasoning
     has already stated as its conclusion, what follows would only re-check it, so
     thinking stops. (Agreeing with the last number is not enough: on GSM8K,
     Qwen2.5-1.5B's probes often repeated an intermediate result, and stopping there
     cost accuracy);
  3. answer: a new user turn after the reasoning asks for the final answer, so the
     answer is always written, even when the budget cut the reasoning short (budget
     forcing).

Each phase repeats the prompt of the one before, so the engine's prefix reuse makes
the phase switches cheap. Backends that cannot prefill (most remote engines) get
one streamed call whose `<think>` block (or native reasoning) is split out; if the
reasoning overruns the budget the call is cut and the answer asked for in a new turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, suppress
from dataclasses import dataclass, field, replace

from ponder.backends.base import Backend
from ponder.errors import PonderError
from ponder.formats.clean import AnswerCleaner, clean
from ponder.formats.reasoning import ThinkSplitter
from ponder.modes import answers, choices
from ponder.modes.confidence import TOP_K
from ponder.modes.instant import instant
from ponder.modes.messages import with_system, with_user_note
from ponder.modes.prompts import load
from ponder.modes.steer import Steer
from ponder.modes.watch import Watch, watched
from ponder.types import (
    NO_USAGE,
    AgentEvent,
    ChatRequest,
    Done,
    Event,
    FinishReason,
    Message,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallEvent,
    Usage,
)

PROBE_TOKENS = 12
# The most an answer asked for by answer_now may take: a short sentence is 10-30
# tokens; told to skip the working, the default model still wrote it out again at
# times (14 s in one Contemplating run of bench/controls.py), and the client waits.
BRIEF_TOKENS = 48
# The most Thinking's first answer to a lettered question may take (`_chosen`): the
# bare model names the letter in its first token or few; one that writes its working
# instead has given no option to weigh by then, and the chain decides.
DIRECT_TOKENS = 64


@dataclass
class Trace:
    """What one Thinking run did, for callers that compose runs (Contemplating)."""

    reasoning: str = ""
    answer: str = ""
    reasoning_tokens: int = 0
    forced: bool = False  # the budget ran out (or the client asked for the answer) before the model finished thinking
    settled: bool = False  # an answer probe confirmed the conclusion the reasoning had stated
    probes: list[str | None] = field(default_factory=list)
    usage: Usage = NO_USAGE
    tool_calls: list[ToolCall] = field(default_factory=list)
    # The reasoning's loop guard and confidence (log-probabilities are asked for when
    # `measure` is set); with `watch.stop_below`, a trace whose confidence falls below
    # it stops at once and gives no answer (`dropped`).
    watch: Watch = field(default_factory=Watch)
    measure: bool = False
    # For a question with lettered options: how likely each option is, by this run's
    # own evidence (the letter it named, or its options' likelihood: `modes.choices`);
    # for Thinking, the first letter pooled with the options' words (`_chosen`)
    distribution: list[float] | None = None
    pooled: list[float] | None = None  # Thinking on a lettered question: the first letter pooled with the words
    answer_logprobs: list[TokenLogprob] = field(default_factory=list)  # of the answer call, when asked for

    @property
    def dropped(self) -> bool:
        """Ended with no answer: less sure than the bar, stopped by the client, or no
        longer needed (the other agents settled the answer)."""
        return self.watch.stopped in ("confidence", "stopped", "settled")

    def budget(self, base: int) -> int:
        """The reasoning budget now: `base`, and what the client added (think_longer)."""
        return self.watch.steer.budget(base) if self.watch.steer else base

    @property
    def answer_now(self) -> bool:
        """The client asked for the answer now (or stopped this agent), or the other
        agents settled the answer without this one (`Watch.moot`)."""
        return bool(self.watch.steered())


async def think(
    backend: Backend,
    chat: ChatRequest,
    budget: int,
    *,
    compression: bool = True,
    probe_every: int = 64,
    trace: Trace | None = None,
    steer: Steer | None = None,
    choose: bool = True,
) -> AsyncGenerator[Event, None]:
    """Stream one Thinking run: ReasoningDeltas, then TextDeltas, then one Done.
    `steer`: the client's controls (answer now, think longer), if not on `trace` already.
    `choose`: on a question that letters its options, weigh the chain against two
    cheaper answers (`_chosen`); off for a chain whose caller weighs it (Contemplating)."""
    trace = trace if trace is not None else Trace()
    if steer is not None:
        trace.watch.steer = steer
    if chat.tools and (chat.tool_name or chat.tool_choice == "required"):
        # A call is forced (asked for in words, or by the client): there is nothing to
        # think out before it, and reasoning first only tempted the model to work the
        # result out by hand. The call comes now; the thinking follows its result.
        async for event in instant(backend, chat):
            if isinstance(event, ToolCallEvent):
                trace.tool_calls.append(event.call)
            elif isinstance(event, Done):
                trace.usage += event.usage
            yield event
        return
    prompts = load("thinking")
    asked = chat
    question = next((m.content for m in reversed(chat.messages) if m.role == "user"), "")
    found = choices.parse(question) if choose and backend.capabilities.scoring else None
    chat = with_system(chat, prompts["system"])
    if compression:  # in the user's turn, where small models heed it
        chat = with_user_note(chat, prompts["compress"])
    run = _prefilled if backend.capabilities.prefill else _single_call
    # The reasoning sees the tools but calls none; only the answer may call them.
    events = run(_Run(backend, chat, budget, compression, probe_every, trace, prompts))
    if found is not None:
        events = _chosen(events, backend, asked, found, trace)
    async for event in events:
        yield event
    if trace.dropped:  # too unsure to go on: no answer (Contemplating leaves it out)
        yield Done("stop", replace(trace.usage, reasoning_tokens=trace.reasoning_tokens))
        return
    if not trace.answer.strip() and not trace.tool_calls:  # never an empty answer: use the reasoning's conclusion
        lines = trace.reasoning.strip().splitlines()
        trace.answer = answers.extract(trace.reasoning) or (lines[-1] if lines else "")
        yield TextDelta(trace.answer)
    usage = replace(trace.usage, reasoning_tokens=trace.reasoning_tokens)
    yield Done("tool_calls" if trace.tool_calls else "stop", usage)


async def _chosen(
    run: AsyncGenerator[Event, None],
    backend: Backend,
    chat: ChatRequest,
    found: choices.Choices,
    trace: Trace,
) -> AsyncGenerator[Event, None]:
    """Thinking on a question that letters its options: two answers that cost no
    reasoning come first, the model's own letter (greedy, the request as the client
    sent it: what the bare model says) and the options' own likelihood (scored, no
    tokens written: `modes.choices`). When they name the same option, that is the
    answer and no chain is written. When they differ, the chain of reasoning (`run`)
    decides between them: the option it names, if it is one of the two; if it names
    a third, the likelier of the two by the product of their distributions. A first
    answer that names no option (or was cut before it finished) is no evidence, and
    the chain's letter then stands against the words; a chain's answer that names no
    option stands as it is.

    The chain breaks the tie rather than overrules both. A chain that has just
    reasoned its way to a letter names it with near certainty, so pooled with the
    others it carried every answer; where the letter and the words disagreed, that
    did no better than the words alone on the default model's TruthfulQA and worse on
    its HellaSwag (docs/modes.md). Chain-of-thought pays on maths and symbolic work,
    little on knowledge and commonsense (Sprague et al., arXiv 2409.12183)."""
    scoring = asyncio.ensure_future(choices.score(backend, chat, found))
    n = len(found.options)
    try:
        async with aclosing(run) as inner:
            direct, logprobs, finish = "", list[TokenLogprob](), "stop"
            asked = replace(chat, tools=(), tool_name=None, params=replace(
                chat.params, temperature=0.0, logprobs=TOP_K,
                max_tokens=min(chat.params.max_tokens or DIRECT_TOKENS, DIRECT_TOKENS)))  # fmt: skip
            # short, and an answer: the client's answer_now does not cut it
            watch = Watch(steer=trace.watch.steer, reasoning=False)
            async with aclosing(instant(backend, asked, watch, clean_answer=False)) as first_answer:
                async for event in first_answer:
                    if isinstance(event, TextDelta):
                        direct += event.text
                        logprobs += event.logprobs
                    elif isinstance(event, Done):
                        trace.usage += event.usage
                        finish = event.finish_reason
            values, read = await scoring
            trace.usage += Usage(read, 0)
            whole = finish != "length"  # a cut answer is working, and a letter in it no choice
            said = answers.choice(direct, n, found.options) if whole else None
            first = choices.pool(choices.letter_distribution(logprobs, n, said), choices.softmax(values))
            trace.distribution = trace.pooled = first
            likeliest = found.letter(max(range(n), key=lambda i: values[i]))
            two = {likeliest, said} if said else {likeliest}
            likelier = max(sorted(two), key=lambda letter: first[ord(letter) - ord("a")])

            def answer(letter: str) -> TextDelta:
                """The option `letter` as the answer: the first answer itself, with its
                log-probabilities, when that is the one it named; else the option in its form."""
                shown = clean(direct).strip() if whole else None
                trace.answer = shown if letter == said and shown else choices.shown(found, letter, shown)
                return TextDelta(trace.answer, tuple(logprobs) if trace.answer == shown else ())

            head = f"The first answer names {said.upper() if said else 'no option'}; " \
                   f"the options' own likelihood, {likeliest.upper()}."  # fmt: skip
            if said == likeliest or trace.answer_now:  # settled before any reasoning, or the client wants it now
                trace.settled = said == likeliest
                trace.forced = not trace.settled
                trace.reasoning = f"{head} They agree." if trace.settled else head
                yield ReasoningDelta(trace.reasoning + "\n\n")
                if likelier == said:
                    trace.answer_logprobs = logprobs
                yield answer(likelier)
                return
            lead = f"{head} Reasoning decides between them.\n\n" if said else f"{head}\n\n"
            yield ReasoningDelta(lead)
            held: list[Event] = []
            async for event in inner:
                if isinstance(event, TextDelta | ToolCallEvent):
                    held.append(event)
                else:
                    yield event
            trace.reasoning = lead + trace.reasoning
            named = answers.choice(trace.answer, n, found.options)
            # A first answer that names no option is no evidence: the chain's own letter stands.
            candidates = two if said else {found.letter(i) for i in range(n)}
            if named is not None and named not in candidates and not trace.tool_calls and not trace.dropped:
                held = [answer(likelier)]
            for event in held:
                yield event
    finally:
        scoring.cancel()
        with suppress(asyncio.CancelledError, PonderError):
            await scoring


@dataclass
class _Run:
    backend: Backend
    chat: ChatRequest
    budget: int
    compression: bool
    probe_every: int
    trace: Trace
    prompts: dict[str, str]


async def _prefilled(r: _Run) -> AsyncGenerator[Event, None]:
    backend, chat, budget, compression, trace, prompts = r.backend, r.chat, r.budget, r.compression, r.trace, r.prompts
    probe_every = r.probe_every
    opened, closed = prompts["open"], prompts["close"]
    finished = False
    # 1-2. reasoning, in slices between answer probes
    while not finished and trace.reasoning_tokens < trace.budget(budget) and not trace.answer_now:
        left = trace.budget(budget) - trace.reasoning_tokens
        step = min(probe_every, left) if compression else left
        params = replace(chat.params, max_tokens=step, stop=("</think>",), response_format=None,
                         logprobs=TOP_K if trace.measure else None)  # fmt: skip
        finish: FinishReason = "length"
        usage = NO_USAGE
        slice_chat = replace(chat, params=params, prefill=opened + trace.reasoning, tool_choice="none", tool_name=None)
        async for event in watched(_text(backend, slice_chat), trace.watch):
            if isinstance(event, TextDelta):
                trace.reasoning += event.text
                yield ReasoningDelta(event.text)
            elif isinstance(event, Done):
                finish, usage = event.finish_reason, event.usage
        trace.usage += usage
        trace.reasoning_tokens += usage.completion_tokens
        if trace.watch.stopped == "loop":  # go on from what was written before the loop
            trace.reasoning = trace.watch.guard.settled_text
        if trace.dropped:
            return
        finished = finish == "stop" or usage.completion_tokens == 0 or trace.watch.stopped in ("loop", "answer_now")
        if compression and not finished and trace.reasoning_tokens < trace.budget(budget) and not trace.answer_now:
            finished = trace.settled = await _probe_agrees(backend, chat, opened + trace.reasoning, trace,
                                                           prompts["answer_now"])  # fmt: skip
            if trace.probes[-1] is not None:  # the best answer so far, for a client that shows it live
                yield AgentEvent("best", None, {"answer": trace.probes[-1], "reasoning_tokens": trace.reasoning_tokens})
    if trace.watch.ended():  # stopped between slices
        return
    cut = trace.watch.stopped == "answer_now" or (trace.answer_now and not trace.settled)  # by the client
    trace.forced = cut or (not finished and trace.reasoning_tokens >= trace.budget(budget))
    # 3. the answer, always
    async for answer_event in answer_after(
        backend, chat, opened + trace.reasoning.rstrip() + closed.rstrip(), trace, brief=cut
    ):
        yield answer_event


async def answer_after(
    backend: Backend, chat: ChatRequest, reasoning: str, trace: Trace, *, brief: bool = False
) -> AsyncGenerator[Event, None]:
    """Ask for the answer in a new user turn after the reasoning. Continuing the
    reply after "</think>" does not work on models without a thinking mode: Qwen2.5
    took the reasoning for a draft and wrote the whole solution again.
    `brief`: the client asked for the answer now; it gets one short sentence."""
    prompts = load("thinking")
    ask = prompts["answer_brief" if brief else "answer_now"]
    follow = (*chat.messages, Message("assistant", reasoning), Message("user", ask))
    if brief:
        chat = replace(chat, params=replace(chat.params, max_tokens=min(chat.params.max_tokens or BRIEF_TOKENS,
                                                                         BRIEF_TOKENS)))  # fmt: skip
    cleaner = AnswerCleaner(echoes=prompts["echoes"])
    watch = Watch()
    seen = False  # whether the client was shown any of it
    async for event in watched(_text(backend, replace(chat, messages=follow, thinking=0)), watch):  # thinking is done
        if isinstance(event, TextDelta):
            trace.answer += event.text
            trace.answer_logprobs += event.logprobs
            if shown := cleaner.feed(event.text):
                seen = True
                yield TextDelta(shown, event.logprobs)
        elif isinstance(event, ToolCallEvent):
            trace.tool_calls.append(event.call)
            yield event
        elif isinstance(event, Done):
            trace.usage += event.usage
    if watch.stopped:
        trace.answer = watch.guard.settled_text
    if tail := cleaner.flush():
        seen = True
        yield TextDelta(tail)
    if not seen and not trace.tool_calls:  # nothing left once cleaned (an empty \boxed{}): no answer, so
        trace.answer = ""  # think()'s fallback (the reasoning's conclusion) gives one


async def _probe_agrees(backend: Backend, chat: ChatRequest, reasoning: str, trace: Trace, prompt: str) -> bool:
    """Ask for the answer now, in a new turn after the reasoning so far. True when it
    is the conclusion the reasoning has stated itself, so neither an early guess nor
    an intermediate value ends the thinking."""
    params = SamplingParams(max_tokens=PROBE_TOKENS, temperature=0.0)
    follow = (*chat.messages, Message("assistant", reasoning), Message("user", prompt))
    text = []
    async for event in _text(
        backend, replace(chat, messages=follow, params=params, tool_choice="none", tool_name=None)
    ):
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, Done):
            trace.usage += event.usage
    got = answers.extract("".join(text))
    settled = got is not None and got == answers.stated(reasoning)
    trace.probes.append(got)
    return settled


async def _single_call(r: _Run) -> AsyncGenerator[Event, None]:
    """One streamed call; the budget is enforced by cutting it (no probes: they need prefill).
    An engine that caps thinking itself (vLLM's thinking_token_budget) is asked to, so
    it closes the reasoning and answers in the same call; the cut stays as a backstop."""
    backend, chat, budget, trace = r.backend, r.chat, r.budget, r.trace
    chat = replace(chat, thinking=budget)
    splitter = ThinkSplitter()
    over_budget = False
    if trace.measure:
        chat = replace(chat, params=replace(chat.params, logprobs=TOP_K))
    async with aclosing(watched(backend.stream(chat), trace.watch)) as events:
        async for event in events:
            if isinstance(event, Done):
                trace.usage += event.usage
                break
            if isinstance(event, ToolCallEvent):  # parsed by the backend (remote engines send them whole)
                trace.tool_calls.append(event.call)
                yield event
                continue
            reasoning, answer = _split(event, splitter)
            if answer:
                trace.watch.reasoning = False  # the answer has begun: answer_now no longer cuts it
            if reasoning:
                trace.reasoning += reasoning
                trace.reasoning_tokens += 1  # one streamed delta is one token for every engine we know
                yield ReasoningDelta(reasoning)
            if answer:
                trace.answer += answer
                yield TextDelta(answer)
            if (trace.reasoning_tokens >= trace.budget(budget) or trace.answer_now) and not trace.answer:
                over_budget = True
                break  # leaving the block closes the stream, which stops the engine
    reasoning, answer = splitter.flush()
    trace.reasoning += reasoning
    trace.answer += answer
    if answer:
        yield TextDelta(answer)
    if trace.watch.stopped == "loop" and not trace.answer.strip():  # it looped in its reasoning
        trace.reasoning = trace.watch.guard.settled_text
        over_budget = True
    cut = trace.answer_now and not trace.answer.strip()  # by the client, before the answer began
    trace.watch.ended()
    if trace.dropped:
        return
    if over_budget or cut:
        trace.forced = True
        async for event in answer_after(backend, chat, trace.reasoning, trace, brief=cut):
            yield event


def _split(event: Event, splitter: ThinkSplitter) -> tuple[str, str]:
    if isinstance(event, ReasoningDelta):  # the engine split it already
        return event.text, ""
    if isinstance(event, TextDelta):
        return splitter.feed(event.text)
    return "", ""


async def _text(backend: Backend, chat: ChatRequest) -> AsyncIterator[TextDelta | ToolCallEvent | Done]:
    """The backend's text, tool calls and Done (reasoning a native model adds is kept as text)."""
    async with aclosing(backend.stream(chat)) as events:
        async for event in events:
            if isinstance(event, ReasoningDelta):
                yield TextDelta(event.text)
            elif isinstance(event, TextDelta | ToolCallEvent | Done):
                yield event
