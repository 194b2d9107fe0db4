"""What the server tells its operators: Prometheus metrics at `/metrics`, and one
log line per request, with a request id (JSON lines with `[server] log_format =
"json"`).

`Observer` holds the app's own metrics registry (never the process-global one), and
`Observe` is ASGI middleware that
1. gives each request an id: the client's `X-Request-Id` when it is a sane one,
   else a new one; it is sent back as `X-Request-Id`;
2. counts the request and its duration by route and status, and logs it.

Token counts and time to first token come from the routes' event streams
(`Observer.watch`); queue depth and replica health are read when scraped. Logs hold
no secrets: no headers, no bodies, no query strings, only the key's id.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Iterator, MutableMapping
from contextlib import aclosing
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ponder.server.admission import Gates
from ponder.server.guard import ASGIApp, Receive, Scope, Send, header
from ponder.types import Done, Event, ReasoningDelta, TextDelta

log = logging.getLogger("ponder.access")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Observer:
    def __init__(self, registry: Any, gates: Gates):
        self.metrics = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ponder_requests", "HTTP requests, by route and status",
                                ("method", "route", "status"), registry=self.metrics)  # fmt: skip
        self.duration = Histogram("ponder_request_duration_seconds", "HTTP request duration, streams included",
                                  ("route",), buckets=LATENCY_BUCKETS, registry=self.metrics)  # fmt: skip
        self.tokens = Counter("ponder_tokens", "Tokens, by model, mode and kind (input, output, reasoning)",
                              ("model", "mode", "kind"), registry=self.metrics)  # fmt: skip
        self.ttft = Histogram("ponder_time_to_first_token_seconds", "From a generation's start to its first token",
                              ("model", "mode"), buckets=LATENCY_BUCKETS, registry=self.metrics)  # fmt: skip
        self.metrics.register(_Live(registry, gates))

    def scrape(self) -> bytes:
        return generate_latest(self.metrics)

    async def watch(self, events: AsyncGenerator[Any, None], model: str, mode: str) -> AsyncGenerator[Any, None]:
        """`events`, unchanged, counting its tokens and its time to first token."""
        start = time.perf_counter()
        first = True
        async with aclosing(events):
            async for event in events:
                e: Event = event
                if first and isinstance(e, (TextDelta, ReasoningDelta)):
                    self.ttft.labels(model, mode).observe(time.perf_counter() - start)
                    first = False
                elif isinstance(e, Done):
                    u = e.usage
                    for kind, n in (("input", u.prompt_tokens), ("output", u.completion_tokens),
                                    ("reasoning", u.reasoning_tokens)):  # fmt: skip
                        if n:
                            self.tokens.labels(model, mode, kind).inc(n)
                yield event


class _Live(Collector):
    """Gauges read at scrape time: each loaded model's queue, and each replica's health."""

    def __init__(self, registry: Any, gates: Gates):
        self.registry, self.gates = registry, gates

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily("ponder_engine_running", "Requests an engine is serving", labels=["model"])
        waiting = GaugeMetricFamily("ponder_engine_queue_depth", "Requests waiting for an engine", labels=["model"])
        up = GaugeMetricFamily("ponder_replica_up", "1 when a pool's replica passes its health check",
                               labels=["model", "replica"])  # fmt: skip
        outstanding = GaugeMetricFamily("ponder_replica_outstanding", "Requests at a pool's replica",
                                        labels=["model", "replica"])  # fmt: skip
        for name, backend in self.registry.loaded().items():
            gate = self.gates.get(backend)
            running.add_metric([name], gate.in_use if gate else 0)
            waiting.add_metric([name], gate.waiting if gate else 0)
            for r in getattr(backend, "status", list)():
                up.add_metric([name, r["url"]], 1 if r["up"] else 0)
                outstanding.add_metric([name, r["url"]], r["outstanding"])
        yield from (running, waiting, up, outstanding)


class Observe:
    def __init__(self, app: ASGIApp, observer: Observer, json_logs: bool = False):
        self.app, self.observer, self.json_logs = app, observer, json_logs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope, b"x-request-id")
        request_id = given if _ID.fullmatch(given) else f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # if the app dies before it answers
        start = time.perf_counter()

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}  # fmt: skip
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            took = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or _unrouted(scope["path"])
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"  # a label set that cannot grow
            self.observer.requests.labels(method, route, str(status)).inc()
            self.observer.duration.labels(route).observe(took)
            fields = {"request_id": request_id, "method": scope["method"], "route": route, "path": scope["path"],
                      "status": status, "duration_ms": round(took * 1000, 1),
                      "key": scope["state"].get("owner") or None}  # fmt: skip
            # Values are JSON-quoted in text lines too, so a path cannot forge a field or a line.
            text = " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items())
            log.info(json.dumps(fields) if self.json_logs else text)


def _unrouted(path: str) -> str:
    """A path no route matched, as a label that cannot grow without bound."""
    return "/static/*" if path.startswith("/static/") else "(unmatched)"


def configure_logging(json_logs: bool, level: str = "info") -> None:
    """Ponder's and uvicorn's loggers to stderr: JSON lines, or plain text (uvicorn is
    then started with `log_config=None`, so it keeps these)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("ponder", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler] if name != "uvicorn.error" else []
        logger.setLevel(level.upper())
        logger.propagate = name == "uvicorn.error"  # to "uvicorn", once


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                               "logger": record.name}  # fmt: skip
        message = record.getMessage()
        try:
            fields = json.loads(message)
            out.update(fields if isinstance(fields, dict) else {"msg": message})
        except ValueError:
            out["msg"] = message
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)
