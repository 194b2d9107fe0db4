"""At the engines: the bounded queue in front of each, the request deadline, the
tokens a key holds for a request, and the meter that counts what a request spent.

A generation waits for a place at its engine's `Gate` (a bounded queue: 429 at once
when full, RequestTimeout when the wait reaches the deadline), and gives it back
when its events end (`pipeline.py` holds the ticket for exactly that long). Its
events pass through `Limits.metered`, which ends them at the deadline and counts the
tokens they spend into a `Tally`, for the metrics and for the key's day. A key with
a daily limit first holds, in the store, the most its request may spend (`Limits.hold`,
from the request's caps, at most what the key has left); the meter ends a run that
reaches its hold, so a key's concurrent requests, in any process, never pass its
limit together. When the run ends, what it spent is counted and the hold let go
in one step (`Limits.settle`). What it does not know: the
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

    @property
    def total(self) -> int:
        return self.spent + self.pending


def cap(mode: ModeRequest, n: int, max_tokens: int) -> int:
    """The most tokens a request may spend, as held against its key's day: each model
    call reads the prompt (about 3 characters a token) and every cap is spent in full.
    An estimate from above; the meter stops the run at it regardless."""
    prompt = sum(len(m.content) for m in mode.chat.messages) // 3 + 1
    answer = mode.chat.params.max_tokens or max_tokens
    calls, thought = 1, 0
    if mode.mode != "instant":
        calls, thought = 2 + mode.budget // max(1, mode.probe_every), mode.budget
    if mode.mode in ("contemplating", "auto"):
        calls += mode.agents * (3 + mode.agent_budget // max(1, mode.probe_every)) + 2
        thought += mode.agents * (mode.agent_budget + answer)
    return n * (calls * prompt + thought + answer)


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
        """The tally for a request; for a key with a daily limit, with the tokens it may
        spend held in the store first (429 when the key has none left)."""
        if lease is None or lease.key.tokens_per_day is None:
            return Tally(owner, lease)
        wanted = cap(mode, n, self.settings.max_tokens)
        granted = await asyncio.to_thread(self.store.reserve, lease.key, lease.id, time.time(), today(), wanted)
        if granted <= 0:
            raise RateLimited(f"Key {owner}'s {lease.key.tokens_per_day:,} tokens for today (UTC) are spent or "
                              "held by its running requests.", retry_after=1, type="tokens")  # fmt: skip
        return Tally(owner, lease, granted)

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
        try:
            async with aclosing(events):
                while True:
                    if tally.budget is not None and tally.total >= tally.budget:
                        raise RateLimited(f"The answer reached the {tally.budget:,} tokens its key had left for "
                                          "today (UTC).", retry_after=until_tomorrow(), type="tokens")  # fmt: skip
                    try:
                        async with asyncio.timeout_at(deadline):
                            event: Event = await anext(events)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        raise RequestTimeout(f"The request ran past this server's limit of "
                                             f"{self.settings.request_timeout_s:g} s.") from None  # fmt: skip
                    if isinstance(event, Done):
                        tally.spent += event.usage.total_tokens
                        tally.pending -= pending
                        pending = 0
                    elif isinstance(event, TextDelta | ReasoningDelta) or (
                        isinstance(event, AgentEvent) and event.kind == "agent.delta"
                    ):
                        pending += 1  # one streamed delta is one token for every engine we know
                        tally.pending += 1
                    yield event
        finally:
            # A client that left, a deadline or a failed engine: what was made is charged still.
            tally.spent += pending
            tally.pending -= pending

    def settle(self, tally: Tally) -> None:
        """Count what the request spent to its key's day and let its hold go, on a
        thread (never on the loop: the store may be a network away)."""
        if tally.owner and (tally.spent or tally.budget):
            future = asyncio.get_running_loop().run_in_executor(None, self._settle, tally)
            self._spending.add(future)

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
