"""Metrics and request logs, on the scripted backend through an in-process client."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ponder.backends.pool import PoolBackend
from ponder.backends.registry import Registry
from ponder.backends.scripted import ScriptedBackend
from ponder.config import ServerSettings, Settings
from ponder.models import ModelStore
from ponder.server.app import create_app
from ponder.server.observe import configure_logging
from ponder.types import ReasoningDelta, TextDelta

USER = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path, default_model="scripted", server=ServerSettings(log_format="json"))
    backends = {"scripted": ScriptedBackend(), "pooled": PoolBackend([ScriptedBackend(), ScriptedBackend()], 3600)}
    registry = Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), backends)
    transport = httpx.ASGITransport(app=create_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    for line in metrics.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            have = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(have.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_requests_tokens_and_time_to_first_token_are_counted(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (
            await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER})
        ).status_code == 200
    body = {"model": "scripted", "messages": USER, "stream": True, "mode": "instant"}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assert (await client.post("/v1/chat/completions", json={"model": "nope", "messages": USER})).status_code == 404
    m = (await client.get("/metrics")).text
    route = "/v1/chat/completions"
    assert sample(m, "ponder_requests_total", route=route, status="200") == 3
    assert sample(m, "ponder_requests_total", route=route, status="404") == 1
    assert sample(m, "ponder_request_duration_seconds_count", route=route) == 4
    for mode, n in (("auto", 2), ("instant", 1)):  # a request that names no mode is Auto's
        assert sample(m, "ponder_tokens_total", model="scripted", mode=mode, kind="output") > 0
        assert sample(m, "ponder_tokens_total", model="scripted", mode=mode, kind="input") > 0
        assert sample(m, "ponder_time_to_first_token_seconds_count", model="scripted", mode=mode) == n
    assert sample(m, "ponder_engine_queue_depth", model="scripted") == 0
    assert 'ponder_engine_running{model="scripted"} 0.0' in m


async def test_reasoning_tokens_are_counted_by_mode(client: httpx.AsyncClient, tmp_path: Path) -> None:
    backend = ScriptedBackend([ReasoningDelta("think"), ReasoningDelta("more"), TextDelta("42")])
    settings = Settings(data_dir=tmp_path, default_model="scripted")
    registry = Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), {"scripted": backend})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(registry)),
                                 base_url="http://localhost") as c:  # fmt: skip
        body = {"model": "scripted", "messages": USER, "mode": "thinking", "thought_compression": False}
        r = await c.post("/v1/chat/completions", json=body)
        m = (await c.get("/metrics")).text
    reasoning = r.json()["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning >= 2
    assert sample(m, "ponder_tokens_total", model="scripted", mode="thinking", kind="reasoning") == reasoning


async def test_replica_health_is_exported(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json={"model": "pooled", "messages": USER})
    assert r.status_code == 200
    m = (await client.get("/metrics")).text
    assert sample(m, "ponder_replica_up", model="pooled", replica="replica-0") == 1
    assert sample(m, "ponder_replica_up", model="pooled", replica="replica-1") == 1


async def test_each_request_gets_an_id_and_one_json_log_line_without_secrets(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging(json_logs=True)
    logging.getLogger("ponder").propagate = True  # so caplog sees it
    with caplog.at_level(logging.INFO, logger="ponder.access"):
        secret = {"Authorization": "Bearer pdr-very-secret", "X-Request-Id": "mine-123"}
        r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER}, headers=secret)
        r2 = await client.get("/v1/models?api_key=pdr-very-secret", headers={"X-Request-Id": "bad id\nwith newline"})
    assert r.headers["x-request-id"] == "mine-123"
    assert r2.headers["x-request-id"].startswith("req_")  # an unsafe id is replaced
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "ponder.access"]
    assert [x["request_id"] for x in lines] == ["mine-123", r2.headers["x-request-id"]]
    assert lines[0]["route"] == "/v1/chat/completions" and lines[0]["status"] == 200 and lines[0]["duration_ms"] > 0
    assert "pdr-very-secret" not in caplog.text
    logging.getLogger("ponder").propagate = False
