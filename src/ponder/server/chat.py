"""POST /v1/chat/completions: wire request -> backend events -> JSON or SSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Coroutine
from contextlib import aclosing
from dataclasses import replace
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ponder import modes
from ponder.backends.registry import Registry
from ponder.errors import ClientDisconnected, InvalidRequest, PonderError
from ponder.media.perceive import Perception
from ponder.modes import ModeRequest
from ponder.server.audio import check_voice, spoken
from ponder.server.encode import ChunkEncoder, completion_json
from ponder.server.guard import Limits, owner
from ponder.server.protocol import ChatCompletionRequest, Contemplation, ToolDef
from ponder.tools import Toolbox, check_names
from ponder.types import ChatRequest, Done, Event, collect

router = APIRouter()
T = TypeVar("T")


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
    registry: Registry = request.app.state.registry
    box = await request.app.state.tools.toolbox(body.hosted_tools())
    check_names(box, (t.function.name for t in body.tools or [] if isinstance(t, ToolDef)))
    perception: Perception = request.app.state.perception
    speak = body.speaks()
    if speak is not None:
        check_voice(speak.voice, perception.tts.name, param="audio.voice")
    backend = await registry.get(body.model)
    chat = _with_spoken_turns(body.to_internal(box.specs), body, perception, owner(request))
    mode = mode_request(registry, chat, body.model, body.mode, body.reasoning_effort, body.thinking_budget,
                        body.thought_compression, body.contemplation, box)  # fmt: skip
    limits: Limits = request.app.state.limits
    limits.check(mode, body.n)  # before any media work: a request past a limit costs nothing
    prepared = await perception.prepare(chat.messages, backend.capabilities)
    mode = replace(mode, chat=replace(mode.chat, messages=prepared))
    backend.check(mode.chat)
    deadline = limits.deadline()
    await unless_disconnected(request, limits.admit(request, backend, deadline))
    # n > 1: n runs of the mode at once (the batched engine decodes them together),
    # each with its own seed when the request gave one, so the choices can differ.
    streams = [limits.metered(modes.run(backend, _choice(mode, i)), owner(request), deadline, body.model, mode.mode)
               for i in range(body.n)]  # fmt: skip

    if not body.stream:
        completions = await unless_disconnected(request, _all([collect(s) for s in streams]))
        audio = [await spoken(perception, c.text, speak.format, owner(request)) if speak else None
                 for c in completions]  # fmt: skip
        return JSONResponse(completion_json(body.model, completions, mode.mode, bool(body.logprobs), audio))

    # Pull the first event before answering 200, so request errors the backend
    # finds up front (context too long, say) still get their HTTP status.
    events = _interleave(streams)
    try:
        first = await unless_disconnected(request, anext(events))
    except BaseException:
        await events.aclose()  # stops the other choices
        raise
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    encoder = ChunkEncoder(body.model, include_usage, mode.mode, body.n)
    voice = (perception, speak.format, owner(request)) if speak else None
    return StreamingResponse(
        _sse(encoder, first, events, voice),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _with_spoken_turns(
    chat: ChatRequest, body: ChatCompletionRequest, perception: Perception, owner: str
) -> ChatRequest:
    """Assistant turns a client sends back as `{"audio": {"id"}}` (a spoken answer it
    got from here), with their text again."""
    messages = list(chat.messages)
    for i, audio_id in body.spoken_turns():
        text = perception.recall(f"{owner}\0{audio_id}")
        if text is None:
            raise InvalidRequest(f"Audio '{audio_id}' is unknown here or has expired: send the turn's text as "
                                 "content instead.", param=f"messages.{i}.audio.id", code="invalid_value")  # fmt: skip
        messages[i] = replace(messages[i], content=text)
    return replace(chat, messages=tuple(messages))


async def _all(runs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Every run's result; the first failure cancels the others, so none keeps decoding."""
    tasks = [asyncio.ensure_future(r) for r in runs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _choice(mode: ModeRequest, index: int) -> ModeRequest:
    seed = mode.chat.params.seed
    if index == 0 or seed is None:
        return mode
    return replace(mode, chat=replace(mode.chat, params=replace(mode.chat.params, seed=seed + index)))


async def _interleave(streams: list[AsyncGenerator[Event, None]]) -> AsyncGenerator[tuple[int, Event], None]:
    """The events of several streams as they come, each tagged with its stream's index.
    An error in any stream ends them all and is raised here."""
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


def mode_request(
    registry: Registry,
    chat: ChatRequest,
    model: str,
    mode: str | None,
    effort: str | None,
    budget: int | None,
    compression: bool | None,
    contemplation: Contemplation | None,
    toolbox: Toolbox | None = None,
) -> ModeRequest:
    """A request's mode fields (either API's), with the model alias's defaults, resolved."""
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


async def _sse(
    encoder: ChunkEncoder,
    first: tuple[int, Event],
    events: AsyncGenerator[tuple[int, Event], None],
    voice: tuple[Perception, str, str] | None = None,
) -> AsyncIterator[str]:
    """`voice` (the perception service, an audio format, the key's id): each choice's answer is
    also spoken, in one audio delta just before the choice finishes."""
    # Starlette cancels this generator when the client disconnects; the
    # cancellation lands inside the backends' streams, which stops the engine.
    async with aclosing(events):
        yield encoder.start()
        yield encoder.event(*first)
        try:
            async for index, event in events:
                if voice and isinstance(event, Done):
                    said = await spoken(voice[0], encoder.text(index), voice[1], voice[2])
                    if said is not None:
                        yield encoder.audio(index, said)
                yield encoder.event(index, event)
        except PonderError as e:  # headers are sent: report in-band, as vLLM does
            yield encoder.error(e)


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
