"""POST /v1/chat/completions: wire request -> the serving pipeline -> JSON or SSE."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ponder.backends.registry import Registry
from ponder.errors import InvalidRequest, PonderError
from ponder.media.perceive import Perception
from ponder.server import pipeline
from ponder.server.audio import check_voice, spoken
from ponder.server.encode import ChunkEncoder, completion_id, completion_json
from ponder.server.guard import owner
from ponder.server.pipeline import mode_request, unless_disconnected
from ponder.server.protocol import ChatCompletionRequest, ToolDef
from ponder.tools import check_names
from ponder.types import ChatRequest, Done, Event

router = APIRouter()


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
    chat = await _with_spoken_turns(body.to_internal(box.specs), body, perception, owner(request))
    mode = mode_request(registry, chat, body.model, body.mode, body.reasoning_effort, body.thinking_budget,
                        body.thought_compression, body.contemplation, box)  # fmt: skip
    # n > 1: n runs of the mode at once (the batched engine decodes them together)
    run_id = completion_id()
    run = await pipeline.start(request, backend, mode, n=body.n, run_id=run_id)

    if not body.stream:
        completions = await unless_disconnected(request, run.completions())
        audio = [await spoken(perception, c.text, speak.format, owner(request)) if speak else None
                 for c in completions]  # fmt: skip
        return JSONResponse(completion_json(body.model, completions, run.mode.mode, bool(body.logprobs), audio,
                                            run_id))  # fmt: skip

    # Pull the first event before answering 200, so request errors the backend
    # finds up front (context too long, say) still get their HTTP status.
    events = run.events
    try:
        first = await unless_disconnected(request, anext(events))
    except BaseException:
        await events.aclose()  # stops the other choices
        raise
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    encoder = ChunkEncoder(body.model, include_usage, run.mode.mode, body.n, run_id)
    voice = (perception, speak.format, owner(request)) if speak else None
    return pipeline.sse_response(_sse(encoder, first, events, voice))


async def _with_spoken_turns(
    chat: ChatRequest, body: ChatCompletionRequest, perception: Perception, owner: str
) -> ChatRequest:
    """Assistant turns a client sends back as `{"audio": {"id"}}` (a spoken answer it
    got from here), with their text again."""
    messages = list(chat.messages)
    for i, audio_id in body.spoken_turns():
        text = await perception.recall(audio_id, owner)
        if text is None:
            raise InvalidRequest(f"Audio '{audio_id}' is unknown here or has expired: send the turn's text as "
                                 "content instead.", param=f"messages.{i}.audio.id", code="invalid_value")  # fmt: skip
        messages[i] = replace(messages[i], content=text)
    return replace(chat, messages=tuple(messages))


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
