"""Independent attempts at one question: run in waves, stopped once settled, and
checked by a judge when they disagree.

  1. The first wave is every attempt that is not a chain: the model's own answer at
     temperature 0 and, for a question with numbers, two programs run in the sandbox
     (one greedy, one sampled), or for one that letters its options the options
     scored; a question with neither gets a Thinking chain beside the direct answer.
     Answers reached by different methods agree by chance far less often than two
     samples of one method do, so when most of the wave agrees (both of two, two of
     three) the answer is settled and the run ends (early-stopping self-consistency,
     arXiv 2401.10480): easy questions cost one wave, not the whole budget, and the
     wave's agents decode together. Once two of three agree, the third cannot change
     the outcome and is stopped where it is (`decided`): two programs that agree do
     not wait for the direct answer's few hundred tokens. An attempt Auto already
     made (`prior`) takes the place of the first agent of its method.
  2. When the first wave settles nothing (its answers split, or an agent failed), the
     remaining agents (chains) run as the second wave. Each chain there is
     stopped as soon as a window of its tokens is less confident than every chain
     drawn the same way (greedy, or sampled) that finished before it (DeepConf's
     online filter, arXiv 2508.15260), and then has no vote. On a question that
     letters its options, the first wave is the direct answer and the options'
     scores; when they name different options, the chains decide between the two
     (`pooled`).
  3. The answer with most votes wins if at least two agents reached it and no other
     answer has as many. Otherwise a judge reads one attempt for each answer, checks
     them against the question and names the right one, twice, the attempts in
     opposite orders; its pick is taken only when both readings name it. Else the
     direct answer stands (the model's own, as it answers bare), or without one the
     confidence-weighted vote.

The final text is the winning answer as an agent wrote it; an answer only a program
reached is put into a sentence by one short call.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

from ponder.backends.base import Backend
from ponder.errors import PonderError, UpstreamError
from ponder.formats.clean import clean
from ponder.modes import answers, choices, evidence
from ponder.modes.base import ModeRequest
from ponder.modes.confidence import WINDOW
from ponder.modes.contemplating.agents import run_agents
from ponder.modes.contemplating.planner import AgentTask, Plan, request_text, sampled
from ponder.modes.contemplating.synthesis import AgentResult, vote
from ponder.modes.prompts import load, render
from ponder.modes.watch import Watch, watched
from ponder.types import NO_USAGE, AgentEvent, ChatRequest, Done, Event, Message, SamplingParams, TextDelta, Usage

FIRST_WAVE = 2
JUDGE_TOKENS = 512
ANSWER_TOKENS = 96
WORK_CHARS = 1200  # of each attempt the judge reads (its end, where the answer is)


@dataclass(frozen=True)
class Decision:
    answer: str | None  # the vote that won
    method: str  # "agreement" | "pooled" | "vote" | "judge" | "split" (the direct answer stood)
    winner: AgentResult | None
    tally: dict[str, float]  # votes, or (`pooled`) the options' pooled probabilities
    pooled: bool = False


async def run(
    backend: Backend, req: ModeRequest, plan: Plan, prior: Sequence[AgentResult] = ()
) -> AsyncGenerator[Event, None]:
    """The attempts of `plan` (after the plan event), ending with the answer and one Done."""
    results: list[AgentResult] = list(prior)
    usage = plan.usage + sum((r.trace.usage for r in prior), NO_USAGE)
    waves = _waves(_remaining(plan.tasks, prior), len(prior))
    decision: Decision | None = None
    for n, wave in enumerate(waves):
        if not wave:
            continue
        wave = tuple(replace(t, stop_below=_bar(results, sampled(t.chat))) if t.method == "chain" and n else t
                     for t in wave)  # fmt: skip
        async for event in run_agents(backend, req, wave, results, decided):
            yield event
        last = n == len(waves) - 1 or not waves[n + 1]
        decision = pooled(results, request_text(req.chat), last or req.steer.answering) or settled(results)
        if decision is not None or req.steer.answering:  # settled, or the client wants the answer now
            break
    results.sort(key=lambda r: r.index)  # finishing order is noise; keep output deterministic
    if all(r.error is not None for r in results):
        raise UpstreamError("every sub-agent failed: " + "; ".join(f"agent {r.index}: {r.error}" for r in results))
    for r in results:
        if not any(r is p for p in prior):  # (counted above)
            usage += replace(r.trace.usage, reasoning_tokens=0)
    reasoning_tokens = sum(r.trace.reasoning_tokens for r in results)
    if decision is None:
        decision = plurality(results)
    if decision is None and req.steer.answering:  # no time for a judge
        decision = _fallback(voters(results))
    if decision is None:
        judged: list[Decision] = []
        async with aclosing(judge(backend, req.chat, results, judged)) as judging:
            async for event in judging:
                if isinstance(event, Done):
                    usage += event.usage
                else:
                    yield event
        decision = judged[0]
    yield AgentEvent("synthesis.start", None, {"method": decision.method, "tally": decision.tally,
                                               "answer": decision.answer})  # fmt: skip
    yield evidence.event(evidence.of_attempts(decision, voters(results)))
    async for event in _final(backend, req.chat, decision, results, quick=req.steer.answering):
        if isinstance(event, Done):
            usage += event.usage
        else:
            yield event
    yield Done("stop", replace(usage, reasoning_tokens=reasoning_tokens))


def _remaining(tasks: Sequence[AgentTask], prior: Sequence[AgentResult]) -> tuple[AgentTask, ...]:
    """The plan's tasks less those `prior` attempts stand for: each takes the place of
    the first task of its method, or of the first task left."""
    left = list(tasks)
    for done in prior:
        same = next((t for t in left if t.method == done.method), left[0] if left else None)
        if same is not None:
            left.remove(same)
    return tuple(left)


def _waves(tasks: Sequence[AgentTask], done: int) -> tuple[tuple[AgentTask, ...], tuple[AgentTask, ...]]:
    """The first wave (every task that is not a chain, with chains after them to make
    FIRST_WAVE attempts with the `done` ones) and the second (the chains left)."""
    first = [t for t in tasks if t.method != "chain"]
    chains = [t for t in tasks if t.method == "chain"]
    top_up = max(0, FIRST_WAVE - done - len(first))
    return (*first, *chains[:top_up]), tuple(chains[top_up:])


def voters(results: Sequence[AgentResult]) -> list[AgentResult]:
    """The agents whose answers count in a vote: not the options' scores, which only
    weigh in on a choice the direct answer made (`pooled`)."""
    return [r for r in results if r.ok and r.vote is not None and r.method != "options"]


def settled(results: Sequence[AgentResult]) -> Decision | None:
    """Two or more agents, more than half of those that answered, agree."""
    ranked = _ranked(results)
    if not _majority(ranked, 0):
        return None
    answer = ranked[0][0]
    agreeing = [r for r in voters(results) if r.vote == answer]
    tally = {a: float(n) for a, n in ranked if a is not None}
    return Decision(answer, "agreement" if len(ranked) == 1 else "vote", _best(agreeing), tally)


def decided(results: Sequence[AgentResult], running: int) -> bool:
    """Whether `settled` will hold whatever the `running` agents answer: an answer has
    more than half of the votes there can be (two programs that agree, while the direct
    answer is still being written). Those agents can then stop. Never for a lettered
    question whose options were scored: there every distribution weighs in (`pooled`)."""
    if any(r.method == "options" for r in results):
        return False
    return _majority(_ranked(results), running)


def _ranked(results: Sequence[AgentResult]) -> list[tuple[str | None, int]]:
    """The voters' answers, most votes first."""
    return Counter(r.vote for r in voters(results)).most_common()


def _majority(ranked: list[tuple[str | None, int]], running: int) -> bool:
    """The leading answer has two votes or more, and more than half of all there can be
    with `running` agents still to answer."""
    return bool(ranked) and ranked[0][1] >= 2 and 2 * ranked[0][1] > sum(n for _, n in ranked) + running


def pooled(results: Sequence[AgentResult], question: str, last: bool = True) -> Decision | None:
    """For a question with lettered options, once its options are scored and the
    direct answer named one of them. When the two name the same option, that is the
    answer. Otherwise, once the `last` wave is in, the chains decide between the two:
    the one more of them named; on a tie, or when they named neither, the likelier of
    the two by the product of their distributions (the letter the direct answer
    named, the options' scores: `modes.choices`). The tally is that product.

    A chain's letter breaks the tie rather than joins the product: a chain that has
    reasoned its way to a letter names it with near certainty, so pooled it carried
    every answer, no better than the options' words alone (Thinking's `_chosen`). A
    direct answer that named no option (the request was not a choice after all, say)
    leaves it to the votes."""
    found = choices.parse(question)
    scored = [r for r in results if r.ok and r.method == "options" and r.trace.distribution is not None]
    if found is None or not scored:
        return None
    n = len(found.options)
    direct = [r for r in results if r.ok and r.method == "direct"]
    named = [answers.choice(r.trace.answer, n, found.options) for r in direct]
    if not any(named):
        return None
    first = [r for r in direct + scored if r.trace.distribution is not None]
    joint = choices.pool(*(r.trace.distribution for r in first))
    tally = {chr(ord("a") + i): round(p, 3) for i, p in enumerate(joint)}
    candidates = sorted({letter for letter in named if letter} | {r.vote for r in scored if r.vote})
    if len(candidates) == 1:
        answer = candidates[0]
        return Decision(answer, "agreement", _best([r for r in first if r.vote == answer]), tally, pooled=True)
    if not last:
        return None
    chains = [r for r in results if r.ok and r.method == "chain"]  # (one that answers in an option's words counts)
    letters = Counter(a for r in chains if (a := answers.choice(r.trace.answer, n, found.options)) in candidates)
    ranked = letters.most_common()
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        answer, method = ranked[0][0], "vote"
    else:
        answer, method = max(candidates, key=lambda letter: joint[ord(letter) - ord("a")]), "pooled"
    return Decision(answer, method, _best([r for r in results if r.ok and r.vote == answer]), tally, pooled=True)


def plurality(results: Sequence[AgentResult]) -> Decision | None:
    """The answer at least two agents reached, with more votes than any other."""
    ranked = _ranked(results)
    if not ranked or ranked[0][1] < 2 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return None
    answer = ranked[0][0]
    assert answer is not None
    tally = {a: float(n) for a, n in ranked if a is not None}
    return Decision(answer, "vote", _best([r for r in voters(results) if r.vote == answer]), tally)


def _best(results: Sequence[AgentResult]) -> AgentResult | None:
    """The one to quote: a chain or the direct answer before the options' scores, and
    those before a program (the model wrote its answer in words), then the surest."""
    rank = {"program": 0, "options": 1}
    return max(results, key=lambda r: (rank.get(r.method, 2), r.confidence, -r.index), default=None)


def _bar(results: Sequence[AgentResult], drawn_sampled: bool) -> float | None:
    """The confidence a later chain must keep: the lowest window of the least sure
    chain that finished before it and was drawn the same way (greedy, or sampled),
    so a chain is stopped only once it is less sure than all of them. Like is held to
    like, as DeepConf sets its bar from warm-up traces drawn as the later ones are:
    a sampled trace's tokens are less sure than a greedy one's by the sampling alone,
    and a direct answer or a program's code is not a chain of reasoning."""
    like = [r for r in results if r.ok and r.method == "chain" and r.sampled == drawn_sampled]
    lows = [r.trace.watch.meter.signal().lowest for r in like if r.trace.watch.meter.tokens >= WINDOW]
    lows = [x for x in lows if x > 0]
    return min(lows) if lows else None


async def judge(
    backend: Backend, chat: ChatRequest, results: Sequence[AgentResult], out: list[Decision]
) -> AsyncGenerator[Event, None]:
    """Ask the model to check one attempt per answer, twice, the attempts in opposite
    orders (the first reading streams); append the decision to `out`. Its pick stands
    only when both readings name the same attempt: a judge that names whichever it
    read first is checking nothing (the default model named the attempt it read
    first on 34 of 40 GSM8K splits, and was right only there: docs/modes.md).
    Otherwise the direct answer stands (`_fallback`)."""
    counted = voters(results)
    by_answer: dict[str, AgentResult] = {}
    for r in sorted(counted, key=lambda r: (r.method == "program", -r.confidence)):
        by_answer.setdefault(r.vote, r)  # type: ignore[arg-type]
    if len(by_answer) < 2:  # nothing to choose between
        verdict = vote(counted)
        out.append(Decision(verdict.answer, "vote", verdict.winner, verdict.tally))
        yield Done("stop", NO_USAGE)
        return
    system = tuple(m for m in chat.messages if m.role in ("system", "developer"))
    params = SamplingParams(max_tokens=JUDGE_TOKENS, temperature=0.0, seed=chat.params.seed)

    def reading(order: list[tuple[str, AgentResult]]) -> ChatRequest:
        candidates = [{"answer": a, "work": _work(r)} for a, r in order]
        prompt = render(load("contemplating")["judge"]["user"], question=request_text(chat), candidates=candidates)
        return ChatRequest(chat.model, (*system, Message("user", prompt)), params)

    order = list(by_answer.items())
    yield AgentEvent("judge.start", None, {"answers": list(by_answer)})
    reverse = asyncio.ensure_future(_read(backend.stream(reading(order[::-1]))))
    try:
        text, usage = "", NO_USAGE
        async for event in watched(backend.stream(reading(order)), Watch()):
            if isinstance(event, TextDelta):
                text += event.text
                yield AgentEvent("judge.delta", None, {"text": event.text})
            elif isinstance(event, Done):
                usage = event.usage
        try:
            other, other_usage = await reverse
        except PonderError:  # the second reading failed: no check, so no pick
            other, other_usage = "", NO_USAGE
    finally:
        reverse.cancel()
        await asyncio.gather(reverse, return_exceptions=True)
    picked, again = answers.extract(text), answers.extract(other)
    if picked in by_answer and picked == again:
        out.append(Decision(picked, "judge", by_answer[picked], vote(counted).tally))
    else:
        out.append(_fallback(counted))
    yield Done("stop", usage + other_usage)


async def _read(events: AsyncGenerator[Event, None]) -> tuple[str, Usage]:
    text, usage = "", NO_USAGE
    async for event in watched(events, Watch()):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Done):
            usage = event.usage
    return text, usage


def _fallback(counted: Sequence[AgentResult]) -> Decision:
    """A split no majority and no judge settled: the direct answer (the question
    alone, as the model answers it bare), else the confidence-weighted vote."""
    verdict = vote(counted)
    direct = [r for r in counted if r.method == "direct"]
    if direct:
        return Decision(direct[0].vote, "split", direct[0], verdict.tally)
    return Decision(verdict.answer, "vote", verdict.winner, verdict.tally)


def _option(question: str, letter: str, results: Sequence[AgentResult]) -> str:
    found = choices.parse(question)
    direct = [clean(r.trace.answer) for r in results if r.method == "direct" and r.error is None]
    return choices.shown(found, letter, direct[0] if direct else None) if found else letter.upper()


def _work(r: AgentResult) -> str:
    work = r.trace.reasoning.strip()
    if r.method != "program":
        work = f"{work}\n{r.trace.answer.strip()}".strip()
    return work if len(work) <= WORK_CHARS else "..." + work[-WORK_CHARS:]


async def _final(
    backend: Backend, chat: ChatRequest, decision: Decision, results: Sequence[AgentResult], quick: bool = False
) -> AsyncGenerator[Event, None]:
    """The answer the user reads: the winning chain's, or a sentence around a program's
    (with `quick`, when the client asked for the answer now, the program's answer alone)."""
    chains = [r for r in results if r.ok and r.method not in ("program", "options") and r.vote == decision.answer]
    winner = _best(chains) or decision.winner
    if decision.pooled and decision.answer and not chains:  # no agent wrote this option as its vote
        yield TextDelta(_option(request_text(chat), decision.answer, results))
        return
    if winner is None:  # no agent committed to an answer: the surest one's text
        finished = [r for r in results if r.error is None and r.trace.answer.strip() and r.method != "options"]
        winner = max(finished, key=lambda r: (r.ok, r.method != "program", r.confidence), default=None)
    if winner is not None and winner.method != "program":
        yield TextDelta(clean(winner.trace.answer).strip())
        return
    if winner is None or quick:
        yield TextDelta(winner.trace.answer.strip() if winner else "")
        return
    async for event in phrased(backend, chat, winner):
        yield event


async def phrased(backend: Backend, chat: ChatRequest, program: AgentResult) -> AsyncGenerator[Event, None]:
    """A program's answer put into a sentence by one short call: one TextDelta, one Done."""
    ask = render(load("contemplating")["program"]["answer"], output=program.trace.answer)
    messages = (*chat.messages, Message("user", ask))
    params = SamplingParams(max_tokens=ANSWER_TOKENS, temperature=0.0, seed=chat.params.seed)
    text, usage = "", Usage(0, 0)
    async for event in watched(backend.stream(ChatRequest(chat.model, messages, params)), Watch()):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Done):
            usage = event.usage
    # the sentence must carry the program's answer; if the model wrote another, the answer alone
    shown = clean(text).strip() if answers.extract(text) == program.vote else program.trace.answer.strip()
    yield TextDelta(shown)
    yield Done("stop", usage)
