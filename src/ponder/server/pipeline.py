"""The one serving pipeline: from a dialect's internal request to its stream of events.

A dialect's route reads its wire shape into a `ChatRequest` and mode fields
(`mode_request`), calls `start`, and encodes what comes back. The steps here are
every dialect's, in one order:

  1. the request's size against the server's limits, before any media work, so a
     request past a limit costs nothing (400);
  2. perception: the new turns' images, audio and documents checked, and turned
     into text where the backend cannot take them;
  3. the backend's own check (a grammar it cannot build, say);
  then, when the events are first read:
  4. for a key with a daily token limit, the most the request may spend, held in
     the store (429 when the key has nothing left); then a place at the engine
     (`admission.py`): refused at once when its queue is full (429), or waited for
     until the deadline (408);
  5. the mode's run, or `n` runs at once each with its own seed, metered (ended at
     the deadline or at the tokens held); the place goes back when the events end,
     however they end, and what they spent goes to the key's day and the metrics.

Admission waits for the first read, so a route that reads the first event before
it answers (to give a request error its HTTP status) also answers a full queue with
429, and a stream nobody reads holds no place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, aclosing
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from ponder import modes
from ponder.backends.base import Backend
from ponder.backends.registry import Registry
from ponder.errors import ClientDisconnected, PonderError
from ponder.media.perceive import Perception
from ponder.modes import ModeRequest
from ponder.server.admission import Limits
from ponder.server.guard import Lease, lease_of, owner
from ponder.tools import Toolbox
from ponder.types import ChatRequest, Completion, Event, collect

T = TypeVar("T")
# events may carry more than `Event` after a wrap (a Responses summary's deltas)
Wrap = Callable[[AsyncGenerator[Event, None], ModeRequest], AsyncGenerator[Any, None]]


@dataclass
class Run:
    """A request ready to run: its mode as resolved and perceived, and its events,
    each tagged with the index of its choice (0 unless `n` > 1)."""

    mode: ModeRequest
    n: int
    events: AsyncGenerator[tuple[int, Event], None]

    def single(self) -> AsyncGenerator[Event, None]:
        """The events of a one-choice run, untagged."""
        return _untagged(self.events)

    async def completions(self) -> list[Completion]:
        """Every choice's events, drained, in choice order."""
        per: list[list[Event]] = [[] for _ in range(self.n)]
        async with aclosing(self.events) as events:
            async for i, event in events:
                per[i].append(event)
        return [await collect(_replay(p)) for p in per]


async def start(
    request: Request,
    backend: Backend,
    mode: ModeRequest,
    *,
    n: int = 1,
    tokens_param: str = "max_tokens",
    perceive_from: int = 0,
    wrap: Wrap | None = None,
    run_id: str = "",
) -> Run:
    """Steps 1-3 now (their errors are the request's); 4-5 when the events are read.
    Messages before `perceive_from` are history the model already took as it stands.
    `wrap(events, mode)` goes around each run's events inside the meter (a reasoning
    summary, say). While it runs, the request can be steered (`server/controls.py`)
    by its `X-Request-Id` and by `run_id`, the id its dialect's response carries."""
    limits: Limits = request.app.state.limits
    perception: Perception = request.app.state.perception
    limits.check(mode, n, tokens_param)
    messages = mode.chat.messages
    fresh = await perception.prepare(messages[perceive_from:], backend.capabilities)
    mode = replace(mode, chat=replace(mode.chat, messages=(*messages[:perceive_from], *fresh)))
    backend.check(mode.chat)
    ids = (str(request.scope.get("state", {}).get("request_id", "")), run_id)
    steered = request.app.state.controls.running(ids, owner(request), mode.mode, mode.steer)
    return Run(mode, n, _run(limits, backend, mode, n, owner(request), lease_of(request), wrap, steered))


async def _run(
    limits: Limits,
    backend: Backend,
    mode: ModeRequest,
    n: int,
    key: str,
    lease: Lease | None,
    wrap: Wrap | None,
    steered: AbstractContextManager[None],
) -> AsyncGenerator[tuple[int, Event], None]:
    deadline = limits.deadline()
    mode.steer.ceiling = limits.settings.max_tokens
    with steered:  # the client may steer it from now on, while it waits for the engine too
        tally = await limits.hold(key, lease, mode, n)
        try:
            ticket = await limits.admit(backend, deadline)
            try:
                streams: list[AsyncGenerator[Any, None]] = []
                for i in range(n):
                    one = _choice(mode, i)
                    events = modes.run(backend, one)
                    streams.append(limits.metered(wrap(events, one) if wrap else events, tally, deadline,
                                                  mode.chat.model, mode.mode))  # fmt: skip
                async with aclosing(interleave(streams)) as tagged:
                    async for item in tagged:
                        yield item
            finally:
                ticket.release()
        finally:
            limits.settle(tally)


def _choice(mode: ModeRequest, index: int) -> ModeRequest:
    """Choice `index` of `n`: its own seed when the request gave one, so the choices can differ."""
    seed = mode.chat.params.seed
    if index == 0 or seed is None:
        return mode
    return replace(mode, chat=replace(mode.chat, params=replace(mode.chat.params, seed=seed + index)))


async def interleave(streams: list[AsyncGenerator[Event, None]]) -> AsyncGenerator[tuple[int, Event], None]:
    """The events of several streams as they come, each tagged with its stream's index.
    An error in any stream ends them all and is raised here."""
    if len(streams) == 1:  # the common case: no tasks, no queue
        async with aclosing(streams[0]) as events:
            async for event in events:
                yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Event | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, stream: AsyncGenerator[Event, None]) -> None:
        try:
            async with aclosing(stream) as events:
                async for event in events:
                    queue.put_nowait((i, event))
        except Exception as e:  # handed to the consumer, which raises it
            queue.put_nowait((i, e))
        finally:
            queue.put_nowait((i, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            i, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _untagged(events: AsyncGenerator[tuple[int, Event], None]) -> AsyncGenerator[Event, None]:
    async with aclosing(events):
        async for _, event in events:
            yield event


async def _replay(events: Iterable[Event]) -> AsyncGenerator[Event, None]:
    for event in events:
        yield event


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_response(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def encoded(
    first: Any,
    events: AsyncGenerator[Any, None],
    start: str,
    encode: Callable[[Any], str],
    fail: Callable[[PonderError], str],
    after: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[str]:
    """A stream's wire text: `start`, then each event encoded; a failure once the
    headers are sent goes in-band (`fail`, in the dialect's shape); then `after`.
    A client that leaves cancels this generator inside the backend's stream, which
    stops the engine (and `after` does not run)."""
    async with aclosing(events):
        yield start
        yield encode(first)
        try:
            async for event in events:
                yield encode(event)
        except PonderError as e:
            yield fail(e)
        if after is not None:
            await after()


def mode_request(
    registry: Registry,
    chat: ChatRequest,
    model: str,
    mode: str | None,
    effort: str | None,
    budget: int | None,
    compression: bool | None,
    contemplation: Any = None,
    toolbox: Toolbox | None = None,
) -> ModeRequest:
    """A request's mode fields (any dialect's), with the model alias's defaults, resolved.
    `contemplation`: an object with `agents`, `agent_budget` and `strategy`, or None."""
    c = contemplation
    mode, effort = registry.mode_for(model, mode, effort)
    return modes.resolve(
        chat,
        registry.settings.modes,
        mode=mode,
        effort=effort,
        budget=budget,
        compression=compression,
        agents=c.agents if c else None,
        agent_budget=c.agent_budget if c else None,
        strategy=c.strategy if c else None,
        toolbox=toolbox,
    )


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client goes away first."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.25)
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():  # the client left: not a failure of ours
            raise ClientDisconnected("The client closed the connection before the answer.") from None
        raise
    finally:
        watcher.cancel()
