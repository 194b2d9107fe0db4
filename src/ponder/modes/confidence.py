"""How sure a trace is of itself, from its own token log-probabilities (DeepConf,
arXiv 2508.15260).

A token's confidence is the negative mean log-probability of the engine's top-k
candidates at that step: a peaked distribution (the model knew what came next) has
one candidate near 0 and the others far below, so the mean is very negative and the
confidence high; a flat one (several continuations looked alike) scores low. A
trace is scored by its weakest stretch, the lowest mean over a sliding window of
tokens, and by its tail, where the answer is written: an average over the whole
trace hides the few steps where a small model guessed.

`Meter` keeps these figures as tokens stream in, so a caller can stop a trace the
moment its window confidence drops below a bar (DeepConf's online mode). It knows
nothing of answers or votes; the modes decide what a figure means.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ponder.types import TokenLogprob

TOP_K = 5  # candidates per token the engine is asked for (logprobs=TOP_K)
WINDOW = 32  # tokens per window: DeepConf used 2,048 on 10k-token traces; ours run 100-500


def token_confidence(lp: TokenLogprob) -> float:
    """-mean log p over the top candidates; with none returned, -log p of the token itself."""
    values = [x for _, x in lp.top if math.isfinite(x)]
    if not values:
        return -lp.logprob if math.isfinite(lp.logprob) else 0.0
    return -sum(values) / len(values)


@dataclass(frozen=True)
class Signal:
    """A trace's confidence figures (higher is surer). `tokens` is 0 when the engine
    returned no log-probabilities: then nothing is known, and every figure is 0."""

    tokens: int = 0
    mean: float = 0.0
    lowest: float = 0.0  # the lowest window mean
    tail: float = 0.0  # the mean over the last window

    @property
    def known(self) -> bool:
        return self.tokens > 0


class Meter:
    """Window confidence over a stream of tokens."""

    def __init__(self, window: int = WINDOW):
        self.window = window
        self._recent: deque[float] = deque(maxlen=window)
        self._sum = 0.0  # of the whole trace
        self._n = 0
        self._lowest = math.inf

    def add(self, logprobs: Iterable[TokenLogprob]) -> None:
        for lp in logprobs:
            c = token_confidence(lp)
            self._recent.append(c)
            self._sum += c
            self._n += 1
            if len(self._recent) == self.window:
                self._lowest = min(self._lowest, sum(self._recent) / self.window)

    @property
    def tokens(self) -> int:
        return self._n

    @property
    def lowest(self) -> float:
        """The lowest full-window mean so far (inf until a window is full)."""
        return self._lowest

    def signal(self) -> Signal:
        if not self._n:
            return Signal()
        tail = sum(self._recent) / len(self._recent)
        lowest = self._lowest if math.isfinite(self._lowest) else tail  # a trace shorter than a window
        return Signal(self._n, self._sum / self._n, lowest, tail)


def measure(logprobs: Iterable[TokenLogprob], window: int = WINDOW) -> Signal:
    meter = Meter(window)
    meter.add(logprobs)
    return meter.signal()


def for_client(logprobs: Iterable[TokenLogprob], asked: int | None) -> tuple[TokenLogprob, ...]:
    """The log-probabilities a client asked for (`logprobs`/`top_logprobs`), of those a
    mode asked the engine for to measure: none, or its number of alternatives."""
    if asked is None:
        return ()
    return tuple(replace(lp, top=lp.top[:asked]) for lp in logprobs)
