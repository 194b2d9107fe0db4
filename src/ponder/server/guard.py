"""Who may call, and how much: API keys, per-key limits, body limits.

`Guard` is ASGI middleware around the whole app. For each HTTP request it
1. refuses a body over `max_body_bytes` (413), by its Content-Length or as it streams in,
   and, on loopback without keys, a Host that is not a local name (403: DNS rebinding);
2. on the API's paths (/v1/…, Ollama's /api/…, /app/api/…), when keys are required, finds the key
   (`Authorization: Bearer …`) among the live ones in the store, or answers 401;
3. on POSTs to /v1/…, holds the key to its requests per minute, tokens per day and
   requests at once (429 with Retry-After);
4. leaves the key's id in `request.state.owner`: what it stores belongs to that key.

What happens at the engines (their queues, the deadline, the meter) is
`admission.py`'s, through the serving pipeline (`pipeline.py`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ponder.config import Settings
from ponder.errors import (
    AuthenticationError,
    PermissionDenied,
    PonderError,
    RateLimited,
    TooLarge,
)
from ponder.server.dialects import error_body
from ponder.store import ApiKey, Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def keys_required(settings: Settings) -> bool:
    """Keys are required when config says "required", or "auto" off loopback."""
    auth = settings.server.auth
    return auth == "required" or (auth == "auto" and not _loopback(settings.host))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _until_tomorrow() -> int:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


@dataclass
class _Usage:
    """One key's requests in the last minute and requests in flight (in memory: a
    restart forgets them; tokens per day live in the store)."""

    recent: deque[float] = field(default_factory=deque)
    running: int = 0


class Guard:
    def __init__(self, app: ASGIApp, settings: Settings, store: Store):
        self.app = app
        self.limits = settings.server
        self.store = store
        self.required = keys_required(settings)
        # Without keys on loopback, a page elsewhere could still reach the server through
        # DNS rebinding (its own name, resolved to 127.0.0.1): only local names may call.
        self.local_only = not self.required and _loopback(settings.host)
        self.origins = settings.server.cors_origins
        self._usage: dict[str, _Usage] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            self._check_length(scope)
            if self.local_only:
                _check_host(scope)
                _check_origin(scope, self.origins)
            key = await self._key(scope) if self.required and _guarded(path) else None
        except PonderError as e:
            await _send_error(send, e, path)
            return
        state = scope.setdefault("state", {})
        state["owner"] = key.id if key else ""
        usage = None
        if key is not None and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):  # what makes work or data
            usage = self._usage.setdefault(key.id, _Usage())
            try:
                await self._enter(key, usage)  # counts it as running, or raises
            except PonderError as e:
                await _send_error(send, e, path)
                return
        try:
            await self.app(scope, self._capped(receive), send)
        finally:  # the request is over, streamed answer and all (or the client left)
            if usage is not None:
                usage.running -= 1

    def _check_length(self, scope: Scope) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limits.max_body_bytes:
                raise _too_large(self.limits.max_body_bytes)

    def _capped(self, receive: Receive) -> Receive:
        """`receive`, stopping a body that grows past the limit without a Content-Length."""
        seen = 0
        limit = self.limits.max_body_bytes

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:  # raised inside the route's body parsing: FastAPI passes an HTTPException on
                raise HTTPException(413, _too_large(limit).message)
            return message

        return capped

    async def _key(self, scope: Scope) -> ApiKey:
        secret = _bearer(scope)
        if not secret:
            raise AuthenticationError("You didn't provide an API key. Send it as 'Authorization: Bearer <key>' "
                                      "(or 'x-api-key: <key>'); "
                                      "the server's owner creates keys with `ponder keys create`.")  # fmt: skip
        key = await asyncio.to_thread(self.store.key_for, secret)
        if key is None:  # never echo the secret: it may be a real key of somewhere else
            raise AuthenticationError("Incorrect API key provided, or the key was revoked.")
        return key

    async def _enter(self, key: ApiKey, usage: _Usage) -> None:
        """Count the request against the key's rate and concurrency, or raise RateLimited.
        It takes its place before anything is awaited, so a burst cannot slip through
        together; a refusal by the token check gives the place back."""
        now = time.monotonic()
        while usage.recent and usage.recent[0] <= now - 60:
            usage.recent.popleft()
        if key.rpm is not None and len(usage.recent) >= key.rpm:
            wait = math.ceil(usage.recent[0] + 60 - now)
            raise RateLimited(f"Rate limit reached for key {key.id}: {key.rpm} requests per minute.",
                              retry_after=wait, type="requests")  # fmt: skip
        if key.concurrency is not None and usage.running >= key.concurrency:
            raise RateLimited(f"Key {key.id} already has {key.concurrency} requests running; wait for one to end.",
                              retry_after=1, type="requests", code="concurrency_limit_exceeded")  # fmt: skip
        usage.recent.append(now)
        usage.running += 1
        if key.tokens_per_day is None:
            return
        try:
            spent = await asyncio.to_thread(self.store.spent, key.id, today())
        except BaseException:
            usage.running -= 1
            raise
        if spent >= key.tokens_per_day:
            usage.running -= 1
            raise RateLimited(f"Key {key.id} has spent its {key.tokens_per_day:,} tokens for today (UTC).",
                              retry_after=_until_tomorrow(), type="tokens")  # fmt: skip


def owner(request: Request) -> str:
    """The id of the key that made `request` ("" without keys): what it stores is that key's."""
    return str(request.scope.get("state", {}).get("owner", ""))


def _check_host(scope: Scope) -> None:
    host = header(scope, b"host")
    if host and not _loopback(_host_name(host)):
        raise PermissionDenied(f"This server listens on loopback without API keys and answers only requests for "
                               f"a local name (localhost, 127.0.0.1, [::1]), not {host!r}. To serve other names, "
                               "listen on another address (keys are then required).")  # fmt: skip


def _check_origin(scope: Scope, allowed: tuple[str, ...]) -> None:
    """A browser page on another site can still POST to 127.0.0.1 (a form, a no-cors
    fetch: the Host is then genuine). Browsers name the page's origin: only a local
    one, or one `cors_origins` names, may call."""
    origin = header(scope, b"origin")
    if not origin or origin in allowed or "*" in allowed:
        return
    if not _loopback(_host_name(origin.split("://", 1)[-1])):
        raise PermissionDenied(f"Requests from pages on {origin!r} are refused: this server takes requests from "
                               "its own pages and from the origins in [server] cors_origins.")  # fmt: skip


def header(scope: Scope, name: bytes) -> str:
    """A request header's value ("" when absent)."""
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), "")


def _host_name(host: str) -> str:
    """ "name:port" or "[v6]:port" -> the name."""
    return host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]


def _guarded(path: str) -> bool:
    return path.startswith(("/v1/", "/api/", "/app/api/")) or path == "/metrics"


def _bearer(scope: Scope) -> str:
    """The key: `Authorization: Bearer …`, or `x-api-key: …` as Anthropic's clients send it."""
    scheme, _, secret = header(scope, b"authorization").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else header(scope, b"x-api-key").strip()


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"The request body is over this server's limit of {limit:,} bytes.", code="request_too_large")


async def _send_error(send: Send, e: PonderError, path: str) -> None:
    body = json.dumps(error_body(path, e)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in e.headers().items()]
    await send({"type": "http.response.start", "status": e.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
