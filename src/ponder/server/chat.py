"""POST /v1/chat/completions: wire request -> backend events -> JSON or SSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing
from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ponder import modes
from ponder.backends.registry import Registry
from ponder.config import ModeSettings
from ponder.errors import PonderError
from ponder.modes import ModeRequest
from ponder.server.encode import ChunkEncoder, completion_json
from ponder.server.protocol import ChatCompletionRequest
from ponder.types import Event, collect

router = APIRouter()
T = TypeVar("T")


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
    registry: Registry = request.app.state.registry
    mode = _mode_request(body, registry.settings.modes)
    backend = await registry.get(body.model)
    events = modes.run(backend, mode)

    if not body.stream:
        completion = await _unless_disconnected(request, collect(events))
        return JSONResponse(completion_json(body.model, completion, mode.mode))

    # Pull the first event before answering 200, so request errors the backend
    # finds up front (context too long, say) still get their HTTP status.
    first = await _unless_disconnected(request, anext(events))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    encoder = ChunkEncoder(body.model, include_usage, mode.mode)
    return StreamingResponse(
        _sse(encoder, first, events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _mode_request(body: ChatCompletionRequest, settings: ModeSettings) -> ModeRequest:
    c = body.contemplation
    return modes.resolve(
        body.to_internal(),
        settings,
        mode=body.mode,
        effort=body.reasoning_effort,
        budget=body.thinking_budget,
        compression=body.thought_compression,
        agents=c.agents if c else None,
        agent_budget=c.agent_budget if c else None,
        strategy=c.strategy if c else None,
    )


async def _sse(encoder: ChunkEncoder, first: Event, events: AsyncGenerator[Event, None]) -> AsyncIterator[str]:
    # Starlette cancels this generator when the client disconnects; the
    # cancellation lands inside the backend's stream, which stops the engine.
    async with aclosing(events):  # type: ignore[type-var]
        yield encoder.start()
        yield encoder.event(first)
        try:
            async for event in events:
                yield encoder.event(event)
        except PonderError as e:  # headers are sent: report in-band, as vLLM does
            yield encoder.error(e)


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client goes away first."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.25)
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    finally:
        watcher.cancel()
