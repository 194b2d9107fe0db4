"""Merge the sub-agents' work into one answer.

`vote` is the confidence-weighted vote over the answers attempts commit to
(`answers.extract`), which `attempts.py` falls back on. An agent's confidence is its
trace's own (`modes.confidence`), lower when the budget cut its thinking short or its
answer disagrees with where its own reasoning ended. Sub-tasks get a written
synthesis: one more model call that sees every part.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from ponder.backends.base import Backend
from ponder.modes import answers
from ponder.modes.prompts import load, render
from ponder.modes.thinking import Trace
from ponder.types import ChatRequest, Done, Event, Message, TextDelta


@dataclass
class AgentResult:
    index: int
    title: str
    trace: Trace
    error: str | None = None
    method: str = "chain"  # "direct" | "chain" | "program"
    sampled: bool = False  # drawn at a temperature above 0

    @property
    def ok(self) -> bool:
        """It finished with something to count: no failure, and not stopped for low confidence."""
        return self.error is None and not self.trace.dropped

    @property
    def vote(self) -> str | None:
        return answers.extract(self.trace.answer) if self.ok else None

    @property
    def confidence(self) -> float:
        """The lowest window confidence of its trace (modes.confidence); a trace the
        budget cut short counts half, and one whose answer disagrees with where its own
        reasoning ended a little over half. Without log-probabilities, only those two."""
        signal = self.trace.watch.meter.signal()
        weight = signal.lowest if signal.known else 1.0
        if self.trace.forced:
            weight *= 0.5
        tail = answers.extract(self.trace.reasoning[-400:]) if self.trace.reasoning and self.method == "chain" else None
        if tail is not None and self.vote is not None and tail != self.vote:
            weight *= 0.6
        return weight


@dataclass(frozen=True)
class Verdict:
    answer: str | None
    tally: dict[str, float]
    winner: AgentResult | None


def vote(results: Sequence[AgentResult]) -> Verdict:
    tally: dict[str, float] = defaultdict(float)
    for r in results:
        if r.vote is not None:
            tally[r.vote] += r.confidence
    if not tally:
        return Verdict(None, {}, None)
    # Ties go to the answer whose best single agent was most confident, then the earliest.
    best = max(tally, key=lambda a: (tally[a], max(r.confidence for r in results if r.vote == a)))
    winner = max((r for r in results if r.vote == best), key=lambda r: (r.confidence, -r.index))
    return Verdict(best, dict(tally), winner)


async def written(
    backend: Backend, chat: ChatRequest, request: str, results: Sequence[AgentResult]
) -> AsyncGenerator[Event, None]:
    prompts = load("contemplating")["synthesis"]
    parts = [{"task": r.title, "answer": r.trace.answer.strip()} for r in results if r.ok]
    system = [m for m in chat.messages if m.role in ("system", "developer")]
    messages = (*system, Message("system", prompts["system"]),
                Message("user", render(prompts["user"], request=request, parts=parts)))  # fmt: skip
    async for event in backend.stream(ChatRequest(chat.model, messages, chat.params)):
        if isinstance(event, TextDelta | Done):
            yield event
