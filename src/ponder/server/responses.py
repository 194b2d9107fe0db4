"""The Responses API: POST /v1/responses (whole or streamed), stored responses and
their input items, follow-ups through `previous_response_id`, and token counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ponder.backends.registry import Registry
from ponder.errors import NotFound
from ponder.modes import ModeRequest
from ponder.modes.summary import with_summary
from ponder.server import pipeline, tool_search
from ponder.server.guard import owner
from ponder.server.pipeline import mode_request, unless_disconnected
from ponder.server.responses_request import (
    ResponsesRequest,
    TokenCountRequest,
    function_tools,
    hosted_entries,
    input_items,
    item_id,
    message_json,
    message_of,
    messages_of,
    tools_of,
)
from ponder.server.responses_wire import Item, ResponseBuilder, build
from ponder.store import Store, StoredResponse
from ponder.tools import Toolbox, check_names
from ponder.types import ChatRequest, Message, SamplingParams

router = APIRouter()


@router.post("/v1/responses", response_model=None)
async def create_response(body: ResponsesRequest, request: Request) -> JSONResponse | StreamingResponse:
    registry: Registry = request.app.state.registry
    store: Store = request.app.state.store
    items = input_items(body.input)
    history = await _history(store, body.previous_response_id, owner(request))
    params = SamplingParams(max_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p,
                            seed=body.seed, response_format=body.response_format())  # fmt: skip
    backend = await registry.get(body.model)
    # History was stored as the model took it; only the new input's media are perceived.
    instructions = _instructions(body.instructions)
    messages = instructions + history + messages_of(items)
    box = await request.app.state.tools.toolbox(hosted_entries(body.tools))
    tools, choice, forced = tools_of(body, messages, box.specs)
    check_names(box, (t.name for t in (*tools.tools, *tools.deferred)))
    if tools.execution == "server":  # the search runs here, in the same loop as the other server-side tools
        box = replace(box, hosted={**box.hosted, tool_search.SEARCH: tool_search.hosted(tools)})
    offered = tools.prompt_tools() + tuple(t for t in box.specs if t.name != tool_search.SEARCH)
    chat = ChatRequest(body.model, tuple(messages), params, tools=offered, tool_choice=choice,
                       tool_name=forced, parallel_tool_calls=body.parallel_tool_calls is not False)  # fmt: skip
    summary = body.reasoning.summary if body.reasoning else None
    wrap = (lambda events, mode: with_summary(events, backend, mode.chat, summary)) if summary else None
    response_id = item_id("resp")
    run = await pipeline.start(request, backend, _mode_request(body, chat, registry, box),
                               tokens_param="max_output_tokens", perceive_from=len(instructions) + len(history),
                               wrap=wrap, run_id=response_id)  # fmt: skip
    mode = run.mode
    events = run.single()
    # what a follow-up continues from: the conversation as the model took it, media perceived
    keep = _Keeper(store, body, items, list(mode.chat.messages[len(instructions) :]), owner(request))

    if not body.stream:
        got = await unless_disconnected(request, _drain(events))
        builder = build(body, mode.mode, got, response_id)
        await keep(builder)
        return JSONResponse(builder.body())

    first = await unless_disconnected(request, anext(events))
    builder = ResponseBuilder(body, mode.mode, response_id)
    # nothing is stored for a response nobody received (a client that left)
    stream = pipeline.encoded(first, events, builder.start(), builder.event,
                              lambda e: builder.fail(e.code or e.type, e.message), lambda: keep(builder))  # fmt: skip
    return pipeline.sse_response(stream)


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    return (await _stored(request, response_id)).body


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    if not await asyncio.to_thread(request.app.state.store.delete, response_id, owner(request)):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    request: Request,
    limit: int = Query(default=20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    items = (await _stored(request, response_id)).input_items
    if order == "desc":
        items = items[::-1]
    if after is not None:
        ids = [it["id"] for it in items]
        if after not in ids:
            raise NotFound(f"No input item with id '{after}' in response '{response_id}'.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}  # fmt: skip


@router.post("/v1/responses/input_tokens")
async def count_input_tokens(body: TokenCountRequest, request: Request) -> dict[str, Any]:
    registry: Registry = request.app.state.registry
    history = await _history(request.app.state.store, body.previous_response_id, owner(request))
    items = input_items(body.input) if body.input else []
    backend = await registry.get(body.model or registry.settings.default_model)
    turns = list(await request.app.state.perception.prepare(messages_of(items), backend.capabilities))
    messages = _instructions(body.instructions) + history + turns
    tools = tool_search.tool_set(function_tools(body.tools)).loaded_by(messages)
    box = await request.app.state.tools.toolbox(hosted_entries(body.tools))
    count = await backend.count_tokens(messages, tools.prompt_tools() + box.specs)
    return {"object": "response.input_tokens", "input_tokens": count}


# --- helpers -----------------------------------------------------------------------


def _instructions(text: str | None) -> list[Message]:
    return [Message("system", text)] if text else []


async def _history(store: Store, previous: str | None, owner: str) -> list[Message]:
    if previous is None:
        return []
    stored = await asyncio.to_thread(store.get, previous, owner)
    if stored is None:
        raise NotFound(f"Previous response with id '{previous}' not found.", param="previous_response_id")
    return [message_of(m) for m in stored.history]


async def _stored(request: Request, response_id: str) -> StoredResponse:
    """The stored response, if it is there and the request's key made it."""
    stored = await asyncio.to_thread(request.app.state.store.get, response_id, owner(request))
    if stored is None:
        raise _not_found(response_id)
    return stored


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


def _mode_request(body: ResponsesRequest, chat: ChatRequest, registry: Registry, box: Toolbox) -> ModeRequest:
    effort = body.reasoning.effort if body.reasoning else None
    return mode_request(registry, chat, body.model, body.mode, effort, body.thinking_budget, body.thought_compression,
                        body.contemplation, box)  # fmt: skip


class _Keeper:
    """Stores a finished response (when the request asked for `store`), with what a
    follow-up needs: the conversation so far and this answer."""

    def __init__(
        self, store: Store, body: ResponsesRequest, items: list[dict[str, Any]], turns: list[Message], owner: str
    ):
        # `turns`: the conversation as the model took it (media already perceived)
        self.store, self.body, self.items, self.turns, self.owner = store, body, items, turns, owner

    async def __call__(self, builder: ResponseBuilder) -> None:
        if not self.body.store:
            return
        turns = list(self.turns)
        for run in builder.runs:  # tools run here: the model's call and what it read back
            turns += [Message("assistant", "", tool_calls=(run.call,)), run.result]
        if builder.status != "failed":
            turns.append(Message("assistant", builder.text, tool_calls=tuple(builder.calls)))
        history = [message_json(m) for m in turns]
        await asyncio.to_thread(self.store.put, StoredResponse(builder.id, builder.body(), self.items, history,
                                                                 self.owner))  # fmt: skip


async def _drain(events: AsyncGenerator[Item, None]) -> list[Item]:
    async with aclosing(events):
        return [e async for e in events]
