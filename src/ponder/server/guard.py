"""Who may call, and how much: API keys, per-key limits, body limits.

`Guard` is ASGI middleware around the whole app. For each HTTP request it
1. refuses a body over `max_body_bytes` (413), by its Content-Length or as it streams in,
   and, on loopback without keys, a Host that is not a local name (403: DNS rebinding);
2. on the API's paths (/v1/…, Ollama's /api/…, /app/api/…), when keys are required, finds the key
   (`Authorization: Bearer …`) among the live ones in the store, or answers 401;
3. on requests that make work or data, holds the key to its requests per minute,
   tokens per day and requests at once (429 with Retry-After), counted in the store
   so the limits hold across every process that shares it (`Leases`);
4. leaves the key's id in `request.state.owner` (what it stores belongs to that key)
   and its lease in `request.state.lease` (the pipeline holds tokens on it).

What happens at the engines (their queues, the deadline, the meter) is
`admission.py`'s, through the serving pipeline (`pipeline.py`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
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
from ponder.store.base import Refusal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
log = logging.getLogger("ponder.guard")

CONTROL_PATHS = ("/v1/control", "/v1/chat/completions/control")  # server/controls.py


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


def until_tomorrow() -> int:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


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
        self.leases = Leases(store, settings.server.key_lease_s)

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
        lease = None
        steering = path in CONTROL_PATHS  # a control steers a request that holds its lease already
        if key is not None and scope["method"] in ("POST", "PUT", "PATCH", "DELETE") and not steering:
            try:
                lease = await self.leases.take(key)  # counts it against the key's limits, or raises
            except PonderError as e:
                await _send_error(send, e, path)
                return
            if lease is not None:
                state["lease"] = Lease(lease, key)
        try:
            await self.app(scope, self._capped(receive), send)
        finally:  # the request is over, streamed answer and all (or the client left)
            if lease is not None:
                await self.leases.end(lease)

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


def owner(request: Request) -> str:
    """The id of the key that made `request` ("" without keys): what it stores is that key's."""
    return str(request.scope.get("state", {}).get("owner", ""))


def lease_of(request: Request) -> Lease | None:
    """The lease `request` holds on its key's limits (None without keys)."""
    lease = request.scope.get("state", {}).get("lease")
    return lease if isinstance(lease, Lease) else None


@dataclass(frozen=True)
class Lease:
    id: str
    key: ApiKey


class Leases:
    """A key's requests held in the store (`Store.admit`), so that its limits hold
    across every process that shares it: this process renews the leases of its
    running requests every third of `ttl`, and ends each when its request ends."""

    def __init__(self, store: Store, ttl: float):
        self.store, self.ttl = store, max(1.0, ttl)
        self._running: set[str] = set()
        self._renewing: asyncio.Task[None] | None = None

    async def take(self, key: ApiKey) -> str | None:
        """A lease for a request of `key` (None for a key with no limits: nothing to count)."""
        if key.rpm is None and key.concurrency is None and key.tokens_per_day is None:
            return None
        lease = f"lease_{secrets.token_hex(12)}"
        now = time.time()
        refusal = await asyncio.to_thread(self.store.admit, key, lease, now, today(), self.ttl)
        if refusal is not None:
            raise _refused(key, refusal)
        self._running.add(lease)
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.get_running_loop().create_task(self._renew())
        return lease

    async def end(self, lease: str) -> None:
        self._running.discard(lease)
        try:
            await asyncio.to_thread(self.store.end, lease, time.time() + self.ttl)
        except Exception as e:  # the lease expires by itself; only its early end is lost, and said so
            log.error("could not end lease %s: %s", lease, getattr(e, "message", e))

    async def _renew(self) -> None:
        while self._running:
            await asyncio.sleep(self.ttl / 3)
            try:
                await asyncio.to_thread(self.store.renew, sorted(self._running), time.time() + self.ttl)
            except Exception as e:  # tried again at the next beat; a lease lives ttl
                log.warning("could not renew %d key leases: %s", len(self._running), getattr(e, "message", e))


def _refused(key: ApiKey, refusal: Refusal) -> RateLimited:
    if refusal.limit == "rpm":
        return RateLimited(f"Rate limit reached for key {key.id}: {key.rpm} requests per minute.",
                           retry_after=max(1, math.ceil(refusal.retry_after or 1)), type="requests")  # fmt: skip
    if refusal.limit == "concurrency":
        return RateLimited(f"Key {key.id} already has {key.concurrency} requests running; wait for one to end.",
                           retry_after=1, type="requests", code="concurrency_limit_exceeded")  # fmt: skip
    if refusal.retry_after is None:
        return RateLimited(f"Key {key.id} has spent its {key.tokens_per_day:,} tokens for today (UTC).",
                           retry_after=until_tomorrow(), type="tokens")  # fmt: skip
    return RateLimited(f"Key {key.id}'s {key.tokens_per_day:,} tokens for today (UTC) are spent or held by "
                       "its running requests; some may come back when those end.", retry_after=1,
                       type="tokens")  # fmt: skip


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
