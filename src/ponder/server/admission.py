"""At the engines: the bounded queue in front of each, the request deadline, and the
meter that counts what a request spent.

A generation waits for a place at its engine's `Gate` (a bounded queue: 429 at once
when full, RequestTimeout when the wait reaches the deadline), and gives it back
when its events end (`pipeline.py` holds the ticket for exactly that long). Its
events pass through `Limits.metered`, which ends them at the deadline and adds the
tokens they spent to the key's day and to the metrics. What it does not know: the
load of engines it does not run (a remote engine's own queue), and audio endpoints,
which run on the perception pool rather than an engine.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from ponder.config import ServerSettings
from ponder.errors import RateLimited, RequestTimeout, invalid_value
from ponder.modes import ModeRequest
from ponder.server.guard import today
from ponder.store import Store
from ponder.types import AgentEvent, Done, Event, ReasoningDelta, TextDelta

log = logging.getLogger("ponder.admission")


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

    def metered(
        self, events: AsyncGenerator[Any, None], owner: str, deadline: float, model: str, mode: str
    ) -> AsyncGenerator[Any, None]:
        """`events` until they end or the deadline passes (then RequestTimeout, and the
        work underneath is closed); the tokens of every `Done` go to `owner`'s day, and
        to the metrics of `model` in `mode`."""
        events = self._until(events, owner, deadline)
        return self.observer.watch(events, model, mode) if self.observer is not None else events

    async def _until(self, events: AsyncGenerator[Any, None], owner: str, deadline: float) -> AsyncGenerator[Any, None]:
        spent = 0
        pending = 0  # tokens streamed since the last Done: charged too if the answer never ends
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
                    if isinstance(event, Done):
                        spent += event.usage.total_tokens
                        pending = 0
                    elif isinstance(event, TextDelta | ReasoningDelta) or (
                        isinstance(event, AgentEvent) and event.kind == "agent.delta"
                    ):
                        pending += 1  # one streamed delta is one token for every engine we know
                    yield event
        finally:
            # A client that left, a deadline or a failed engine: what was made is charged still.
            spent += pending
            if owner and spent:  # on a thread, never on the loop (the store may be a network away)
                self._spending.add(asyncio.get_running_loop().run_in_executor(None, self._spend, owner, today(), spent))

    def _spend(self, owner: str, day: str, tokens: int) -> None:
        try:
            self.store.spend(owner, day, tokens)
        except Exception as e:  # the answer was given; only its count is lost, and said so
            log.error("could not count %d tokens for key %s: %s", tokens, owner, getattr(e, "message", e))

    async def flush(self) -> None:
        """Wait for the token counts still being written (before the store closes)."""
        while self._spending:
            await asyncio.gather(*list(self._spending), return_exceptions=True)
            self._spending = {f for f in self._spending if not f.done()}
