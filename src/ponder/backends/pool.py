"""A pool of replicas of one model: several OpenAI-compatible engines (vLLM, SGLang,
llama-server, ...) serving the same weights, behind one model name.

Routing, per request:
1. only replicas marked up are candidates (all of them, if none is: one may be back);
2. of those, the ones with the fewest requests outstanding;
3. among those, the conversation's own replica, by rendezvous hashing of its first
   turns, so a follow-up lands where its prefix is cached. Affinity only breaks
   ties, so requests that arrive together (Contemplating's agents, `n` choices)
   spread across replicas.

A replica that fails before its first event (refused connection, 5xx) is marked
down and the request goes to the next one; after the first event, the client gets
the error (its answer has started: nothing is retried or half-stored). A request
error (4xx) is the client's and is never retried. A health loop polls each
replica's `/models` every `health_interval_s`: a down replica rejoins when it
answers. What it does not do: start, stop or scale engines (that is the engine's
or the orchestrator's job), or move a running stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from ponder.backends.base import Backend, Capabilities, public_url
from ponder.errors import UpstreamError
from ponder.types import ChatRequest, Event, Message, Tool


@dataclass
class Replica:
    url: str
    backend: Backend
    up: bool = True
    outstanding: int = 0
    served: int = 0  # requests it began to answer (for /health and the tests)
    failures: int = 0

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "up": self.up, "outstanding": self.outstanding, "served": self.served,
                "failures": self.failures}  # fmt: skip


class PoolBackend(Backend):
    def __init__(self, replicas: Sequence[Backend], health_interval_s: float = 5.0, max_concurrency: int = 64):
        if not replicas:
            raise ValueError("a pool needs at least one replica")
        self.replicas = [Replica(public_url(str(getattr(r, "base_url", f"replica-{i}"))), r)
                         for i, r in enumerate(replicas)]  # fmt: skip
        self.capabilities: Capabilities = replicas[0].capabilities
        self.health_interval_s = health_interval_s
        self.max_concurrency = max_concurrency
        self._health: asyncio.Task[None] | None = None

    @property
    def busy(self) -> int:
        return sum(r.outstanding for r in self.replicas)

    @property
    def capacity(self) -> int:
        return self.max_concurrency * len(self.replicas)

    async def load(self) -> None:
        """Start watching the replicas' health (at server start, before any request)."""
        self._watch()

    def status(self) -> list[dict[str, Any]]:
        return [r.status() for r in self.replicas]

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> int:
        return await self.replicas[0].backend.count_tokens(messages, tools)

    def route(self, request: ChatRequest, exclude: Sequence[Replica] = ()) -> Replica | None:
        """The replica for `request` (None when every one was tried)."""
        left = [r for r in self.replicas if r not in exclude]
        if not left:
            return None
        up = [r for r in left if r.up] or left
        fewest = min(r.outstanding for r in up)
        ties = [r for r in up if r.outstanding == fewest]
        key = _affinity(request.messages)
        return max(ties, key=lambda r: hashlib.blake2b(f"{key}|{r.url}".encode(), digest_size=8).digest())

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        self._watch()
        tried: list[Replica] = []
        errors: list[str] = []
        while (replica := self.route(request, tried)) is not None:
            tried.append(replica)
            replica.outstanding += 1
            started = False
            try:
                async with aclosing(replica.backend.stream(request)) as events:
                    async for event in events:
                        if not started:
                            started = True
                            replica.served += 1
                            replica.up = True
                        yield event
                return
            except UpstreamError as e:
                replica.failures += 1
                if started:  # the answer has begun: the client gets the error
                    raise
                replica.up = False  # until the health loop sees it answer again
                errors.append(e.message)
            finally:
                replica.outstanding -= 1
        raise UpstreamError("every replica failed: " + "; ".join(errors))

    def _watch(self) -> None:
        if self._health is None or self._health.done():
            self._health = asyncio.get_running_loop().create_task(self._health_loop())

    async def _health_loop(self) -> None:
        while True:
            await asyncio.gather(*(self._check(r) for r in self.replicas))
            await asyncio.sleep(self.health_interval_s)

    async def _check(self, replica: Replica) -> None:
        try:
            replica.up = await replica.backend.healthy(timeout=self.health_interval_s)
        except Exception:  # whatever it was, the loop goes on checking the others
            replica.up = False

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        await asyncio.gather(*(r.backend.close() for r in self.replicas))


def _affinity(messages: Sequence[Message]) -> str:
    """What stays the same across a conversation's turns: its system prompt and first
    user turn (a follow-up only adds turns after them)."""
    system = next((m.content for m in messages if m.role == "system"), "")
    first = next((m.content for m in messages if m.role == "user"), "")
    return hashlib.blake2b(f"{system}\x00{first}".encode("utf-8", "replace"), digest_size=16).hexdigest()
