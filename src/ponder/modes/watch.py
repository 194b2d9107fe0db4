"""Watching one generation as it streams: a loop, and how sure the model is.

`watched` passes a backend's events through and feeds the text to a `LoopGuard`
and the token log-probabilities to a confidence `Meter`. It cuts the generation
(closing the stream stops the engine) when the text has looped, with a bar set when
a full window of tokens falls below it (DeepConf's online stop), or when the client
steers the run (`modes.steer`: answer now, or stop this agent), or when the run
has settled its answer without this stream (`moot`). A cut stream
still ends with one `Done`: finish "stop", the tokens counted from what arrived.
The caller reads `Watch.stopped` to tell a cut from a normal end, and settles the
answer from what exists (`LoopGuard.settled_text`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal

from ponder.formats.loops import LoopGuard
from ponder.modes.confidence import Meter
from ponder.modes.steer import Steer
from ponder.types import Done, Event, TextDelta, Usage

Stop = Literal["", "loop", "confidence", "answer_now", "stopped", "settled"]


@dataclass
class Watch:
    guard: LoopGuard = field(default_factory=LoopGuard)
    meter: Meter = field(default_factory=Meter)
    stop_below: float | None = None  # cut once a full window's confidence falls below this
    steer: Steer | None = None  # the client's controls on the run (`modes.steer`)
    agent: int | None = None  # which Contemplating agent this is, for stop_agent
    reasoning: bool = True  # answer_now cuts this stream (reasoning, or a program); not an answer being written
    moot: Callable[[], bool] | None = None  # true once the run settled its answer without this stream
    loops: bool = True  # cut a loop (off for output held to a grammar: a cut would break its syntax)
    stopped: Stop = ""

    def feed(self, event: TextDelta) -> Stop:
        self.meter.add(event.logprobs)
        if self.loops and self.guard.feed(event.text):
            self.stopped = "loop"
        elif self.stop_below is not None and self.meter.lowest < self.stop_below:
            self.stopped = "confidence"
        else:
            self.stopped = self.steered()
        return self.stopped

    def steered(self) -> Stop:
        """What is asked of this run from outside: "settled" (the others settled the answer
        without it), "stopped" (the client stopped this agent), "answer_now", or nothing."""
        if self.moot is not None and self.moot():
            return "settled"
        if self.steer is None:
            return ""
        if self.agent is not None and self.agent in self.steer.stopped:
            return "stopped"
        return "answer_now" if self.steer.answering and self.reasoning else ""

    def ended(self) -> bool:
        """Between generations: take a stop from outside (the client stopped this agent, or
        the run settled its answer without it) as this run's end, with no answer."""
        if (why := self.steered()) in ("stopped", "settled"):
            self.stopped = why
            return True
        return False


async def watched(events: AsyncIterator[Event], watch: Watch) -> AsyncGenerator[Event, None]:
    tokens = 0
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            yield event
            if isinstance(event, Done):
                return
            if isinstance(event, TextDelta):
                tokens += max(1, len(event.logprobs))  # a delta is a token unless logprobs say more
                if watch.feed(event):
                    break
    yield Done("stop", Usage(0, tokens))
