"""At the engines: the bounded queue in front of each, the request deadline, the
tokens a key holds for a request, and the meter that counts what a request spent.

A generation waits for a place at its engine's `Gate` (a bounded queue: 429 at once
when full, RequestTimeout when the wait reaches the deadline), and gives it back
when its events end (`pipeline.py` holds the ticket for exactly that long). Its
events pass through `Limits.metered`, which ends them at the deadline and counts the
tokens they spend into a `Tally`, for the metrics and for the key's day. A key with
a daily limit first holds, in the store, tokens for its prompt and a first stretch
of its answer (`Limits.hold`), and the meter holds more, a stretch at a time, as
the answer goes on; an answer that can hold no more is ended there. The holds of
a key's running requests, in every process, count as spent for each other, so
together they never pass its limit: a run's first prompt is held from its estimate
(about 3 characters a token) until the engine reports it; a later call's prompt (a
mode's next step, which rereads the work so far) is counted when it reports, and
may pass the hold by that much. When the run ends, what it spent is counted
and the hold let go in one step (`Limits.settle`). What it does not know: the
load of engines it does not run (a remote engine's own queue). The audio endpoints
take a place at the media threads' own gate the same way (`Limits.within`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

from ponder.config import ServerSettings
from ponder.errors import RateLimited, RequestTimeout, invalid_value
from ponder.modes import ModeRequest
from ponder.server.guard import Lease, today, until_tomorrow
from ponder.store import Store
from ponder.types import AgentEvent, Done, Event, ReasoningDelta, TextDelta

log = logging.getLogger("ponder.admission")
T = TypeVar("T")
HOLD_STEP = 1024  # tokens a request holds at a time against its key's daily limit, beyond its prompt


class Gate:
    """At most `running` requests at an engine and `queued` waiting for it; one more
    is refused at once (429), with a Retry-After from recent requests' durations."""

    def __init__(self, running: int, queued: int):
        self.running, self.queued = running, queued
        self._slots = asyncio.Semaphore(running)
        self._waiting = 0
        self.in_use = 0
        self._mean_s: float | None = None  # a running mean of how long a request holds its place

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue ahead, at the recent pace."""
        return max(1, min(60, math.ceil((self._mean_s or 1.0) * (self._waiting + 1) / self.running)))

    async def enter(self) -> Ticket:
        if self._slots.locked():
            if self._waiting >= self.queued:
                raise RateLimited(f"The engine is busy: {self.running} requests running and {self._waiting} "
                                  "waiting. Retry later.", retry_after=self.retry_after(), type="requests",
                                  code="engine_overloaded")  # fmt: skip
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        self.in_use += 1
        return Ticket(self, time.monotonic())

    @property
    def waiting(self) -> int:
        return self._waiting

    def _leave(self, started: float) -> None:
        took = time.monotonic() - started
        self._mean_s = took if self._mean_s is None else 0.8 * self._mean_s + 0.2 * took
        self.in_use -= 1
        self._slots.release()


@dataclass
class Ticket:
    gate: Gate
    started: float
    done: bool = False

    def release(self) -> None:
        if not self.done:
            self.done = True
            self.gate._leave(self.started)


class Gates:
    """One gate per engine, made on first use."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self._gates: dict[int, Gate] = {}  # by id(backend)

    def __call__(self, backend: Any) -> Gate:
        key = id(backend)
        if key not in self._gates:
            running = self.settings.max_running or max(1, int(getattr(backend, "capacity", 1)))
            self._gates[key] = Gate(running, self.settings.max_queue)
        return self._gates[key]

    def get(self, backend: Any) -> Gate | None:
        """The engine's gate, if a request has been there."""
        return self._gates.get(id(backend))


@dataclass
class Tally:
    """What one request's runs spent (every choice's), and where it goes."""

    owner: str  # the key's id, or ""
    lease: Lease | None = None
    budget: int | None = None  # the tokens held for it: the meter ends the runs there
    spent: int = 0  # tokens of the Done events
    pending: int = 0  # tokens streamed since a run's last Done
    unreported: int = 0  # the estimated prompts of runs whose first call has not reported its usage yet
    per_run: int = 0  # one run's estimated prompt

    @property
    def total(self) -> int:
        return self.spent + self.pending + self.unreported


def prompt_estimate(mode: ModeRequest, n: int) -> int:
    """The tokens a request's prompt is likely to take (about 3 characters a token,
    and room for the chat template), read once by each of its `n` runs."""
    chars = sum(len(m.content) for m in mode.chat.messages) + sum(len(t.name) + len(t.description or "")
                                                                  for t in mode.chat.tools)  # fmt: skip
    return n * (chars // 3 + 16 * len(mode.chat.messages) + 64)


def _reached(tally: Tally) -> RateLimited:
    return RateLimited(
        f"The answer reached the {tally.budget or 0:,} tokens its key had left for today (UTC).",
        retry_after=until_tomorrow(),
        type="tokens",
    )


class Limits:
    """The request limits, the gates (one per engine), and the meter: the store that
    counts each key's tokens, and the observer (`observe.Observer`) that counts them
    for the metrics."""

    def __init__(self, settings: ServerSettings, store: Store, gates: Gates, observer: Any = None):
        self.settings = settings
        self.store = store
        self.gates = gates
        self.observer = observer
        self._spending: set[asyncio.Future[None]] = set()

    async def admit(self, backend: Any, deadline: float) -> Ticket:
        """Wait for a place at `backend`'s engine (or raise RateLimited at once when its
        queue is full, RequestTimeout when the wait reaches the deadline). The caller
        gives the place back with `Ticket.release`."""
        try:
            async with asyncio.timeout_at(deadline):
                return await self.gates(backend).enter()
        except TimeoutError:
            raise RequestTimeout(f"The request waited for the engine past this server's limit of "
                                 f"{self.settings.request_timeout_s:g} s.") from None  # fmt: skip

    def check(self, mode: ModeRequest, n: int = 1, tokens_param: str = "max_tokens") -> None:
        """The request's size against the server's limits (400 when past one)."""
        s, chat = self.settings, mode.chat
        if len(chat.messages) > s.max_messages:
            raise invalid_value("messages", f"this server takes at most {s.max_messages} messages in one request")
        if (chat.params.max_tokens or 0) > s.max_tokens:
            raise invalid_value(tokens_param, f"this server allows at most {s.max_tokens} tokens")
        if mode.mode != "instant" and max(mode.budget, mode.agent_budget) > s.max_tokens:
            raise invalid_value("thinking_budget", f"this server allows at most {s.max_tokens} tokens")
        if mode.mode in ("contemplating", "auto") and mode.agents > s.max_agents:
            raise invalid_value("contemplation.agents", f"this server runs at most {s.max_agents} agents")
        if n > s.max_n:
            raise invalid_value("n", f"this server allows at most {s.max_n} choices")

    def deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.settings.request_timeout_s

    async def within(self, worker: Any, work: Callable[[], Awaitable[T]]) -> T:
        """`work()` with a place at `worker`'s gate (the media threads, say: 429 at once
        when its queue is full), ended at the request's deadline (RequestTimeout). A
        thread already running finishes on its own; the caller has its error at once."""
        deadline = self.deadline()
        ticket = await self.admit(worker, deadline)
        try:
            async with asyncio.timeout_at(deadline):
                return await work()
        except TimeoutError:
            raise RequestTimeout(f"The request ran past this server's limit of "
                                 f"{self.settings.request_timeout_s:g} s.") from None  # fmt: skip
        finally:
            ticket.release()

    async def hold(self, owner: str, lease: Lease | None, mode: ModeRequest, n: int) -> Tally:
        """The tally for a request; for a key with a daily limit, with tokens held in
        the store first for its prompt and a first stretch of its answer (429 when the
        key has none left). The meter holds more as the answer goes on (`_more`)."""
        if lease is None or lease.key.tokens_per_day is None:
            return Tally(owner, lease)
        prompt = prompt_estimate(mode, n)
        tally = Tally(owner, lease, 0, unreported=prompt, per_run=prompt // n)
        if not await self._more(tally, prompt + HOLD_STEP):
            raise RateLimited(f"Key {owner}'s {lease.key.tokens_per_day:,} tokens for today (UTC) are spent or "
                              "held by its running requests.", retry_after=1, type="tokens")  # fmt: skip
        return tally

    async def _more(self, tally: Tally, wanted: int) -> bool:
        """Hold `wanted` tokens in all for the tally's request (or what is left); whether
        that covers what it has spent so far, and more."""
        assert tally.lease is not None
        key, lease = tally.lease.key, tally.lease.id
        tally.budget = await asyncio.to_thread(self.store.reserve, key, lease, time.time(), today(), wanted)
        return tally.budget > tally.total

    def metered(
        self, events: AsyncGenerator[Any, None], tally: Tally, deadline: float, model: str, mode: str
    ) -> AsyncGenerator[Any, None]:
        """`events` until they end, the deadline passes (then RequestTimeout) or the
        tally reaches its hold (then RateLimited), the work underneath closed either
        way; the tokens of every `Done`, and of deltas of a run that never ended, go to
        the tally, and to the metrics of `model` in `mode`."""
        events = self._until(events, tally, deadline)
        return self.observer.watch(events, model, mode) if self.observer is not None else events

    async def _until(
        self, events: AsyncGenerator[Any, None], tally: Tally, deadline: float
    ) -> AsyncGenerator[Any, None]:
        pending = 0  # this run's tokens streamed since its last Done
        first = True  # this run's first model call has not reported yet
        try:
            async with aclosing(events):
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            event: Event = await anext(events)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        raise RequestTimeout(f"The request ran past this server's limit of "
                                             f"{self.settings.request_timeout_s:g} s.") from None  # fmt: skip
                    if isinstance(event, Done):  # a model call ended: what it read and wrote is spent
                        tally.spent += event.usage.total_tokens
                        tally.pending -= pending
                        pending = 0
                        if first:  # its prompt is counted now, not estimated
                            tally.unreported -= min(tally.unreported, tally.per_run)
                            first = False
                        if tally.budget is not None and tally.total >= tally.budget:
                            await self._more(tally, tally.total + HOLD_STEP)  # for the calls after it, if any
                    elif isinstance(event, TextDelta | ReasoningDelta) or (
                        isinstance(event, AgentEvent) and event.kind == "agent.delta"
                    ):
                        # one streamed delta is one token for every engine we know; one the hold
                        # cannot cover is not given, nor counted
                        over = tally.budget is not None and tally.total + 1 > tally.budget
                        if over and not await self._more(tally, tally.total + 1 + HOLD_STEP):
                            raise _reached(tally)
                        pending += 1
                        tally.pending += 1
                    yield event
        finally:
            # A client that left, a deadline or a failed engine: what was made is charged still.
            tally.spent += pending
            tally.pending -= pending
            if first:  # no call reported: its prompt is no longer expected
                tally.unreported -= min(tally.unreported, tally.per_run)

    def settle(self, tally: Tally) -> None:
        """Count what the request spent to its key's day and let its hold go, on a
        thread (never on the loop: the store may be a network away)."""
        if tally.owner and (tally.spent or tally.budget):
            future = asyncio.get_running_loop().run_in_executor(None, self._settle, tally)
            self._spending.add(future)
            future.add_done_callback(self._spending.discard)

    def _settle(self, tally: Tally) -> None:
        try:
            if tally.lease is not None:
                self.store.settle(tally.owner, tally.lease.id, today(), tally.spent)
            elif tally.spent:
                self.store.spend(tally.owner, today(), tally.spent)
        except Exception as e:  # the answer was given; only its count is lost, and said so
            log.error("could not count %d tokens for key %s: %s", tally.spent, tally.owner, getattr(e, "message", e))

    async def flush(self) -> None:
        """Wait for the token counts still being written (before the store closes)."""
        while self._spending:
            await asyncio.gather(*list(self._spending), return_exceptions=True)
            self._spending = {f for f in self._spending if not f.done()}
