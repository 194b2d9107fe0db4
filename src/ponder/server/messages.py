"""Anthropic's Messages API: POST /v1/messages (whole or streamed) and
/v1/messages/count_tokens. Wire -> the serving pipeline -> `messages_wire`'s
encoders; errors on these paths come in Anthropic's shape (`app.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field

from ponder.backends.registry import Registry
from ponder.server import pipeline
from ponder.server.messages_wire import HOSTED, MessagesRequest, StreamEncoder, message_id, message_json
from ponder.server.pipeline import mode_request, unless_disconnected
from ponder.tools import check_names

router = APIRouter()
PREFIX = "/v1/messages"


@router.post(PREFIX, response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> JSONResponse | StreamingResponse:
    registry: Registry = request.app.state.registry
    box = await request.app.state.tools.toolbox(body.hosted_tools())
    check_names(box, (t.name for t in body.tools or [] if t.type not in HOSTED and t.name))
    chat = body.to_internal(box.specs)
    backend = await registry.get(body.model)
    mode_name, budget = body.chosen_mode()
    mode = mode_request(registry, chat, body.model, mode_name, body.effort, budget, body.thought_compression,
                        body.contemplation, box)  # fmt: skip
    run_id = message_id()
    run = await pipeline.start(request, backend, mode, run_id=run_id)
    events = run.single()
    if not body.stream:
        (completion,) = await unless_disconnected(request, run.completions())
        return JSONResponse(message_json(body.model, completion, run.mode.mode, run_id))
    first = await unless_disconnected(request, anext(events))  # request errors keep their HTTP status
    encoder = StreamEncoder(body.model, run.mode.mode, run_id)
    return pipeline.sse_response(pipeline.encoded(first, events, encoder.start(), encoder.event, encoder.error))


class CountRequest(MessagesRequest):
    """What /v1/messages/count_tokens reads: a message request without max_tokens."""

    max_tokens: int = Field(default=1, ge=1)


@router.post(PREFIX + "/count_tokens")
async def count_tokens(req: CountRequest, request: Request) -> dict[str, Any]:
    registry: Registry = request.app.state.registry
    box = await request.app.state.tools.toolbox(req.hosted_tools())
    chat = req.to_internal(box.specs)
    backend = await registry.get(req.model)
    messages = await request.app.state.perception.prepare(chat.messages, backend.capabilities)
    return {"input_tokens": await backend.count_tokens(messages, chat.tools)}
