"""KV-cache slots: which llama.cpp sequence id holds which tokens, and where a new
prompt should go.

A slot is one sequence id in the context. Its `tokens` are the tokens whose keys and
values sit in the cache at positions 0..len-1; they stay there after the request
that put them there is done, so a later prompt that starts the same way (the next
turn of a chat) only pays for its new tokens. While a slot prefills a prompt its
`target` is that prompt, so a request arriving meanwhile with the same prefix can
wait for it and copy it instead of computing it a second time.

This module is pure bookkeeping over token lists. It knows nothing of llama.cpp:
the scheduler carries out a `Plan` with `seq_rm` / `seq_cp`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ponder.engine.common import common_prefix

# Waiting for, or copying from, another slot is worth it only for a real shared
# prefix (a system prompt, a question shared by sub-agents), not for the few tokens
# every chat template starts with.
MIN_SHARED = 16


@dataclass(eq=False)  # a slot is itself, whatever it holds
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # in the KV cache, from position 0
    target: list[int] = field(default_factory=list)  # the prompt being prefilled, if any
    busy: bool = False
    last_used: int = 0


@dataclass(frozen=True)
class Plan:
    """How to start a prompt: in `slot`, with its first `reuse` tokens taken from
    `source` (the slot itself, or another slot to copy from). When `wait` is set,
    `source` is still prefilling them."""

    slot: Slot
    reuse: int = 0
    source: Slot | None = None
    wait: bool = False


class SlotTable:
    def __init__(self, n: int):
        self.slots = [Slot(i) for i in range(n)]
        self._clock = 0

    def plan(self, prompt: Sequence[int], limit: int | None = None) -> Plan | None:
        """Pick a slot for `prompt`, or None when every slot is busy.

        1. An idle slot whose cache is (nearly) all a prefix of the prompt, the
           previous turn of the same chat, is extended in place; so is one that
           holds the whole prompt (a repeat: its old answer goes).
        2. Otherwise the prompt takes the least recently used idle slot (empty
           ones first), so one chat's cache is not cut down by another that only
           shares its system prompt, and fills it with the longest prefix on offer:
           one still being prefilled by a busy slot (awaited), one in any slot's
           cache (copied), or what the slot itself holds.

        At most `limit` tokens are reused (by default all but the last, which is
        always decoded for its logits; a scoring job needs logits from earlier on).
        """
        idle = [s for s in self.slots if not s.busy]
        busy = [s for s in self.slots if s.busy]
        if not idle:
            return None
        limit = len(prompt) - 1 if limit is None else min(limit, len(prompt) - 1)
        source, has = _best(prompt, limit, idle + busy, lambda s: s.tokens)  # on a tie, an idle one
        pending, will_have = _best(prompt, limit, busy, lambda s: s.target)
        awaited = pending is not None and will_have >= has + MIN_SHARED
        # what taking `source` over would cut off: nothing much, or an answer to this very prompt
        cheap_cut = source is not None and (has >= len(source.tokens) - MIN_SHARED or has == limit)
        if source is not None and not source.busy and cheap_cut and not awaited:
            return self._take(prompt, Plan(source, has, source))
        slot = min(idle, key=lambda s: (len(s.tokens) > 0, s.last_used))
        if awaited:
            return self._take(prompt, Plan(slot, will_have, pending, wait=True))
        own = min(common_prefix(prompt, slot.tokens), limit)
        if source is not None and has >= MIN_SHARED and has > own:
            return self._take(prompt, Plan(slot, has, source))
        return self._take(prompt, Plan(slot, own, slot))

    def release(self, slot: Slot) -> None:
        slot.busy = False
        slot.target = []
        self._clock += 1
        slot.last_used = self._clock

    def _take(self, prompt: Sequence[int], plan: Plan) -> Plan:
        """Mark the plan's slot busy with `prompt` as its target."""
        plan.slot.busy = True
        plan.slot.target = list(prompt)
        self._clock += 1
        plan.slot.last_used = self._clock
        return plan


def _best(
    prompt: Sequence[int], limit: int, slots: list[Slot], tokens: Callable[[Slot], list[int]]
) -> tuple[Slot | None, int]:
    """The slot whose `tokens(slot)` shares the longest prefix with `prompt`, capped at `limit`."""
    best: Slot | None = None
    best_n = 0
    for slot in slots:
        n = min(common_prefix(prompt, tokens(slot)), limit)
        if n > best_n:
            best, best_n = slot, n
    return best, best_n
