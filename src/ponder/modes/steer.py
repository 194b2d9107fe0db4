"""Controls on a running request: what a client asks of a run after it started.

The server keeps one `Steer` per running request (`server/controls.py`); the modes
read it as they go:

- `answer_now`: end the reasoning and answer from what exists. A Thinking run cuts
  the slice it is writing and asks for the answer in one short sentence (at most
  `thinking.BRIEF_TOKENS`); Contemplating ends every agent the same way, a direct
  answer still being written included (what it wrote counts as its working; a
  program still being written is dropped), and decides from what they have, with
  no further wave and no judge;
- `think_longer(tokens)`: raise the reasoning budget by that many tokens (every
  agent's, in Contemplating) while the run is still reasoning;
- `stop_agent(index)`: end one Contemplating agent now; it has no vote.

A control that comes after the part it steers (`answer_now` once the answer is being
written, say) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Steer:
    answering: bool = False  # answer_now was asked
    extra: int = 0  # tokens think_longer added to the budget
    stopped: set[int] = field(default_factory=set)  # agents stop_agent ended
    ceiling: int | None = None  # the most a budget may grow to (the server's max_tokens)

    def answer_now(self) -> None:
        self.answering = True

    def think_longer(self, tokens: int) -> None:
        self.extra += tokens

    def stop_agent(self, index: int) -> None:
        self.stopped.add(index)

    def budget(self, base: int) -> int:
        """`base` and what think_longer added, never past the ceiling (nor below `base`)."""
        raised = base + self.extra
        return raised if self.ceiling is None else max(base, min(raised, self.ceiling))
