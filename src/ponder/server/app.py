"""The app factory: routers, and the one place errors become HTTP responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

import ponder
from ponder.backends.registry import Registry
from ponder.errors import InvalidRequest, ModelNotFound, NotFound, PonderError, TooLarge
from ponder.media.perceive import Perception
from ponder.server.admission import Gates, Limits
from ponder.server.audio import router as audio_router
from ponder.server.chat import router as chat_router
from ponder.server.controls import Controls
from ponder.server.controls import router as controls_router
from ponder.server.dialects import error_body
from ponder.server.guard import Guard
from ponder.server.messages import router as messages_router
from ponder.server.observe import Observe, Observer
from ponder.server.ollama import router as ollama_router
from ponder.server.responses import router as responses_router
from ponder.server.web import router as web_router
from ponder.store import Store, open_store
from ponder.tools import ToolHost


def create_app(registry: Registry, preload: str | None = None, store: Store | None = None) -> FastAPI:
    """The API app. `preload` names a model to load at start-up, so the first
    request does not pay for loading and a broken model fails the start, not a user.
    `store` defaults to the one the settings name (`[store]`)."""
    store = store or open_store(registry.settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if preload:
            backend = await registry.get(preload)
            load = getattr(backend, "load", None)
            if load is not None:
                await load()
        yield
        await app.state.tools.close()
        await registry.close()
        await app.state.limits.flush()
        store.close()
        app.state.perception.close()

    app = FastAPI(title="Ponder", version=ponder.__version__, lifespan=lifespan)
    app.state.registry = registry
    app.state.store = store
    app.state.tools = ToolHost(registry.settings)
    app.state.perception = Perception(registry.settings, store)
    gates = Gates(registry.settings.server)
    app.state.observer = Observer(registry, gates)
    app.state.limits = Limits(registry.settings.server, store, gates, app.state.observer)
    app.state.controls = Controls()
    app.include_router(chat_router)
    app.include_router(controls_router)
    app.include_router(responses_router)
    app.include_router(messages_router)
    app.include_router(ollama_router)
    app.include_router(audio_router)
    app.include_router(web_router)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        loaded = registry.loaded()
        return {
            "status": "ok",
            "default_model": registry.settings.default_model,
            "models": registry.names(),
            "loaded": {name: _load(b) for name, b in loaded.items()},
        }

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(app.state.observer.scrape(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(n) for n in registry.names()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id not in registry.names():
            raise ModelNotFound(f"The model `{model_id}` does not exist or is not served here.", param="model")
        return _model_card(model_id)

    @app.exception_handler(PonderError)
    async def ponder_error(request: Request, e: PonderError) -> JSONResponse:
        return _error(request, e)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return _error(request, _validation_message(e.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        cls = {404: NotFound, 413: TooLarge}.get(e.status_code, InvalidRequest)
        err = cls(str(e.detail))
        err.status = e.status_code
        return _error(request, err)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception) -> JSONResponse:
        # A bug: still a 500, in the dialect's shape (Starlette logs it after this answer)
        return _error(request, PonderError("The server had an error while processing your request."))

    # Outermost first: Observe (request ids, metrics, the access log) sees every answer;
    # CORS (only when origins are configured) answers preflights before the guard asks
    # them for a key.
    app.add_middleware(Guard, settings=registry.settings, store=store)
    if registry.settings.server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(registry.settings.server.cors_origins),
                           allow_methods=["*"], allow_headers=["*"], max_age=600,
                           expose_headers=["X-Request-Id", "Retry-After"])  # fmt: skip
    app.add_middleware(Observe, observer=app.state.observer, json_logs=registry.settings.server.log_format == "json")
    return app


def _load(backend: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"busy": backend.busy}
    if hasattr(backend, "status"):  # a pool: each replica's health and load
        out["replicas"] = backend.status()
    return out


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "ponder"}


def _error(request: Request, e: PonderError) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, e), status_code=e.status, headers=e.headers())


def _validation_message(errors: Any) -> InvalidRequest:
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return InvalidRequest(
            "We could not parse the JSON body of your request: " + str(first.get("ctx", {}).get("error", "")),
            code="invalid_json",
        )
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    # Union members add their type name to the path ("content.str"): keep it readable.
    # (A user's own key may be "": metadata {"": 5}, say. It is left out of the path too.)
    param = ".".join(x for x in loc if x and not x[0].isupper() and x not in {"str", "list", "int", "float", "bool"})
    if first.get("type") == "missing":
        return InvalidRequest(
            f"Missing required parameter: '{param}'.", param=param or None, code="missing_required_parameter"
        )
    detail = (
        f"Invalid value for '{param}': {first.get('msg', 'invalid')}" if param else first.get("msg", "invalid request")
    )
    return InvalidRequest(detail + ".", param=param or None, code="invalid_value")
