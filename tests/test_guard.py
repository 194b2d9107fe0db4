"""Keys, per-key limits, request limits, the engine queue and the deadline, on the
scripted backend through an in-process ASGI client (the real-server tests of the
same are in test_e2e_guard)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from ponder.backends.registry import Registry
from ponder.backends.scripted import ScriptedBackend
from ponder.config import ServerSettings, Settings
from ponder.models import ModelStore
from ponder.server.app import create_app
from ponder.server.guard import keys_required, today
from ponder.store import ApiKey, SqliteStore, Store
from ponder.types import TextDelta

USER = [{"role": "user", "content": "hello there"}]
Client = Callable[..., httpx.AsyncClient]


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


def add_key(store: Store, name: str, **limits: int) -> tuple[ApiKey, str]:
    secret = f"pdr-secret-{name}-" + "x" * 20
    key = ApiKey(f"key_{name}", name, secret[:8], time.time(), None, **limits)
    store.add_key(key, secret)
    return key, secret


@pytest.fixture
async def make(tmp_path: Path, backend: ScriptedBackend) -> AsyncIterator[Callable[..., Any]]:
    """make(engine=None, **server settings) -> (store, client factory: client(secret) ->
    AsyncClient); `engine` replaces the test's scripted backend."""
    clients: list[httpx.AsyncClient] = []
    stores: list[Store] = []

    def build(engine: ScriptedBackend | None = None, **server: Any) -> tuple[Store, Client]:
        settings = Settings(data_dir=tmp_path, default_model="scripted", server=ServerSettings(**server))
        registry = Registry(settings, ModelStore(settings.models_dir, settings.cache_dir),
                            {"scripted": engine or backend})  # fmt: skip
        store = SqliteStore(tmp_path / "ponder.db")
        stores.append(store)
        app = create_app(registry, store=store)

        def client(secret: str | None = None) -> httpx.AsyncClient:
            headers = {"Authorization": f"Bearer {secret}"} if secret else {}
            c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost", headers=headers)
            clients.append(c)
            return c

        return store, client

    yield build
    for c in clients:
        await c.aclose()


async def counted(store: Store, key_id: str, want: int | Callable[[int], bool]) -> bool:
    """Whether the key's tokens today reach `want` (they are written just after the
    answer, off the event loop: wait a moment for them)."""
    ok = want if callable(want) else (lambda n: n == want)
    for _ in range(100):
        if ok(store.spent(key_id, today())):
            return True
        await asyncio.sleep(0.02)
    return False


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "scripted", "messages": USER, **extra}


# --- keys ------------------------------------------------------------------------------


async def test_missing_invalid_and_revoked_keys_get_401(make: Callable[..., Any]) -> None:
    store, client = make(auth="required")
    key, secret = add_key(store, "alice")
    assert_error(await client().post("/v1/chat/completions", json=chat()), 401, "invalid_api_key")
    error = assert_error(await client("pdr-wrong").post("/v1/chat/completions", json=chat()), 401)
    assert "pdr-wrong" not in error["message"]  # a secret is never echoed
    assert (await client(secret).get("/v1/models")).status_code == 200
    ok = await client(secret).post("/v1/chat/completions", json=chat())
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"].startswith("hello there")
    assert store.revoke_key(key.id, time.time())
    assert_error(await client(secret).post("/v1/chat/completions", json=chat()), 401)
    assert_error(await client(secret).get("/v1/models"), 401)
    assert_error(await client(secret).get("/app/api/conversations"), 401)


async def test_the_page_and_health_need_no_key(make: Callable[..., Any]) -> None:
    _, client = make(auth="required")
    assert (await client().get("/health")).status_code == 200
    assert (await client().get("/")).status_code == 200


async def test_a_key_sees_only_its_own_responses_and_conversations(make: Callable[..., Any]) -> None:
    store, client = make(auth="required")
    _, alice = add_key(store, "alice")
    _, bob = add_key(store, "bob")
    made = await client(alice).post("/v1/responses", json={"model": "scripted", "input": "remember 42"})
    rid = made.json()["id"]
    assert (await client(alice).get(f"/v1/responses/{rid}")).status_code == 200
    assert_error(await client(bob).get(f"/v1/responses/{rid}"), 404, "not_found")
    assert_error(await client(bob).get(f"/v1/responses/{rid}/input_items"), 404)
    follow = {"model": "scripted", "input": "and?", "previous_response_id": rid}
    assert_error(await client(bob).post("/v1/responses", json=follow), 404)
    assert_error(await client(bob).delete(f"/v1/responses/{rid}"), 404)
    assert (await client(alice).get(f"/v1/responses/{rid}")).status_code == 200  # bob's delete did nothing

    conv = (await client(alice).post("/app/api/conversations", json={"title": "alice's plans"})).json()
    assert [c["id"] for c in (await client(alice).get("/app/api/conversations")).json()["data"]] == [conv["id"]]
    assert (await client(bob).get("/app/api/conversations")).json()["data"] == []
    assert_error(await client(bob).get(f"/app/api/conversations/{conv['id']}"), 404)
    assert_error(await client(bob).put(f"/app/api/conversations/{conv['id']}", json={"title": "mine"}), 404)
    assert_error(await client(bob).delete(f"/app/api/conversations/{conv['id']}"), 404)
    assert (await client(alice).get(f"/app/api/conversations/{conv['id']}")).json()["title"] == "alice's plans"


def test_keys_are_required_off_loopback_by_default() -> None:
    assert not keys_required(Settings(host="127.0.0.1"))
    assert not keys_required(Settings(host="::1"))
    assert keys_required(Settings(host="0.0.0.0"))
    assert keys_required(Settings(host="my-box.lan"))
    assert not keys_required(Settings(host="0.0.0.0", server=ServerSettings(auth="off")))
    assert keys_required(Settings(host="127.0.0.1", server=ServerSettings(auth="required")))


def test_the_store_keeps_only_a_hash_of_the_secret(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ponder.db")
    _, secret = add_key(store, "alice")
    store.close()
    assert secret.encode() not in (tmp_path / "ponder.db").read_bytes()
    assert secret.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("ponder.db*"))


# --- per-key limits ------------------------------------------------------------------------


async def test_requests_per_minute_get_429_with_retry_after(make: Callable[..., Any]) -> None:
    store, client = make(auth="required")
    _, secret = add_key(store, "alice", rpm=2)
    _, other = add_key(store, "bob", rpm=2)
    for _ in range(2):
        assert (await client(secret).post("/v1/chat/completions", json=chat())).status_code == 200
    r = await client(secret).post("/v1/chat/completions", json=chat())
    assert assert_error(r, 429, "rate_limit_exceeded")["type"] == "requests"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert (await client(other).post("/v1/chat/completions", json=chat())).status_code == 200  # per key
    assert (await client(secret).get("/v1/models")).status_code == 200  # reads are not counted


async def test_tokens_per_day_are_metered_and_enforced(make: Callable[..., Any], backend: ScriptedBackend) -> None:
    store, client = make(auth="required")
    key, secret = add_key(store, "alice", tokens_per_day=1_000_000)
    r = await client(secret).post("/v1/chat/completions", json=chat())
    spent = r.json()["usage"]["total_tokens"]
    assert spent > 0 and await counted(store, key.id, spent)
    body = chat(stream=True, stream_options={"include_usage": True})
    async with client(secret).stream("POST", "/v1/chat/completions", json=body) as s:
        chunks = [line async for line in s.aiter_lines() if line.startswith("data: {")]
    streamed = json.loads(chunks[-1][len("data: ") :])["usage"]["total_tokens"]
    assert await counted(store, key.id, spent + streamed)  # streamed answers count too
    r = await client(secret).post("/v1/responses", json={"model": "scripted", "input": "hi"})
    assert await counted(store, key.id, spent + streamed + r.json()["usage"]["total_tokens"])

    # an answer longer than one held stretch holds more as it goes, and ends whole
    carol, roomy = add_key(store, "carol", tokens_per_day=5000)
    long_answer = " ".join(f"w{i}" for i in range(1500))
    backend.enqueue(long_answer)
    r = await client(roomy).post("/v1/chat/completions", json=chat())
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == long_answer, r.text
    assert await counted(store, carol.id, r.json()["usage"]["total_tokens"])
    # a key with 150 tokens a day: an answer is cut where it would pass them, what it made is
    # counted, and a request whose prompt alone would not fit is refused before it starts
    bob, small = add_key(store, "bob", tokens_per_day=150)
    backend.enqueue(" ".join(f"w{i}" for i in range(300)))
    r = await client(small).post("/v1/chat/completions", json=chat())
    assert assert_error(r, 429)["type"] == "tokens" and "reached the 150 tokens" in r.json()["error"]["message"]
    assert await counted(store, bob.id, lambda n: 0 < n <= 150)  # never past the limit
    r = await client(small).post("/v1/chat/completions", json=chat())
    assert assert_error(r, 429)["type"] == "tokens"
    assert 1 <= int(r.headers["retry-after"]) <= 86400


async def test_concurrency_per_key(make: Callable[..., Any]) -> None:
    slow = ScriptedBackend(delay=0.05)
    store, client = make(slow, auth="required")
    _, secret = add_key(store, "alice", concurrency=1)
    c = client(secret)
    slow.enqueue("a b c d e f g h")
    first = asyncio.create_task(c.post("/v1/chat/completions", json=chat()))
    while not slow.active:
        await asyncio.sleep(0.01)
    assert_error(await c.post("/v1/chat/completions", json=chat()), 429, "concurrency_limit_exceeded")
    assert (await first).status_code == 200
    assert (await c.post("/v1/chat/completions", json=chat())).status_code == 200  # the slot came back


# --- request limits ------------------------------------------------------------------------


async def test_body_over_the_limit_gets_413_with_or_without_a_length(make: Callable[..., Any]) -> None:
    _, client = make(max_body_bytes=10_000)
    big = chat(messages=[{"role": "user", "content": "x" * 20_000}])
    assert_error(await client().post("/v1/chat/completions", json=big), 413, "request_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "scripted", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}]}'

    r = await client().post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413)
    assert (await client().post("/v1/chat/completions", json=chat())).status_code == 200


@pytest.mark.parametrize(
    ("server", "body", "param"),
    [
        ({"max_messages": 3}, chat(messages=USER * 4), "messages"),
        ({"max_tokens": 100}, chat(max_tokens=101), "max_tokens"),
        ({"max_tokens": 100}, chat(mode="thinking", thinking_budget=200), "thinking_budget"),
        ({"max_agents": 2}, chat(mode="contemplating", contemplation={"agents": 3}), "contemplation.agents"),
        ({"max_n": 2}, chat(n=3), "n"),
    ],
)
async def test_request_limits_get_400_naming_the_parameter(
    make: Callable[..., Any], server: dict[str, int], body: dict[str, Any], param: str
) -> None:
    _, client = make(**server)
    assert assert_error(await client().post("/v1/chat/completions", json=body), 400)["param"] == param


async def test_responses_limits_name_their_own_parameter(make: Callable[..., Any]) -> None:
    _, client = make(max_tokens=100)
    r = await client().post("/v1/responses", json={"model": "scripted", "input": "hi", "max_output_tokens": 500})
    assert assert_error(r, 400)["param"] == "max_output_tokens"


# --- the engine queue and the deadline --------------------------------------------------------


async def test_a_full_engine_queue_gets_429_with_retry_after(make: Callable[..., Any]) -> None:
    slow = ScriptedBackend(respond=lambda r: "one two three four five six", delay=0.05)
    _, client = make(slow, max_running=1, max_queue=2)
    c = client()
    done = await asyncio.gather(*(c.post("/v1/chat/completions", json=chat()) for _ in range(6)))
    codes = sorted(r.status_code for r in done)
    assert codes == [200, 200, 200, 429, 429, 429]  # one running, two waiting, three refused at once
    assert slow.max_active == 1
    refused = [r for r in done if r.status_code == 429]
    for r in refused:
        assert_error(r, 429, "engine_overloaded")
        assert int(r.headers["retry-after"]) >= 1
    assert (await c.post("/v1/chat/completions", json=chat())).status_code == 200  # every place came back


class Stalled(ScriptedBackend):
    """Sends one word, then waits for ever: only the server's deadline ends its answer,
    however slow the machine running the test."""

    async def _play(self, events: list[Any], request: Any) -> AsyncIterator[Any]:
        yield TextDelta("word")
        await asyncio.Event().wait()


async def test_the_deadline_ends_a_request_and_its_generation(make: Callable[..., Any]) -> None:
    stalled = Stalled()
    _, client = make(stalled, request_timeout_s=1.0)
    c = client()
    assert_error(await c.post("/v1/chat/completions", json=chat(mode="instant")), 408, "request_timeout")
    assert stalled.active == 0
    r = await c.post("/v1/chat/completions", json=chat(mode="instant", stream=True))
    assert r.status_code == 200
    lines = [x for x in r.text.splitlines() if x.startswith("data: {")]
    assert '"word"' in r.text and '"request_timeout"' in lines[-1]  # in-band, after the chunk that made it
    assert stalled.active == 0
    r = await c.post("/v1/responses", json={"model": "scripted", "input": "hi", "mode": "instant", "stream": True})
    assert "response.failed" in r.text and "request_timeout" in r.text
    assert stalled.active == 0


# --- CORS ------------------------------------------------------------------------------------


async def test_cors_is_off_by_default_and_on_for_named_origins(make: Callable[..., Any], tmp_path: Path) -> None:
    preflight = {"Origin": "https://app.example.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    _, client = make()
    r = await client().options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = await client().post("/v1/chat/completions", json=chat(), headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers

    _, client = make(cors_origins=("https://app.example.org",), auth="required")
    r = await client().options("/v1/chat/completions", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.org"
    r = await client().options("/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"})
    assert r.headers.get("access-control-allow-origin") != "https://evil.example"


def test_server_settings_are_checked(tmp_path: Path) -> None:
    from ponder.config import load_settings
    from ponder.errors import ConfigError

    config = tmp_path / "config.toml"
    for bad in ('auth = "sometimes"', "max_queue = -1", 'cors_origins = "*"', "request_timeout_s = 0", "nope = 1"):
        config.write_text(f"[server]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"\[server\]"):
            load_settings(config, env={})
    config.write_text('[server]\nauth = "required"\ncors_origins = ["https://a.example"]\nmax_queue = 4\n')
    s = load_settings(config, env={"PONDER_MAX_QUEUE": "9"}).server
    assert replace(s, max_queue=4) == ServerSettings(auth="required", cors_origins=("https://a.example",), max_queue=4)
    assert s.max_queue == 9


async def test_on_loopback_without_keys_only_local_names_may_call(make: Callable[..., Any]) -> None:
    """DNS rebinding: a page on evil.example that resolves its name to 127.0.0.1 sends
    Host: evil.example, and is refused; local names pass."""
    _, client = make()
    for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"):
        assert (await client().get("/v1/models", headers={"Host": host})).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
        r = await client().post("/v1/chat/completions", json=chat(), headers={"Host": host})
        assert assert_error(r, 403)["type"] == "permission_error", host
    _, client = make(auth="required")  # with keys, the key is what counts
    assert_error(await client().get("/v1/models", headers={"Host": "my-box.lan"}), 401)


# --- what a review found -------------------------------------------------------------------


async def test_a_burst_cannot_slip_past_a_keys_concurrency_while_its_tokens_are_checked(
    make: Callable[..., Any],
) -> None:
    slow = ScriptedBackend(respond=lambda r: "one two three four", delay=0.05)
    store, client = make(slow, auth="required")
    _, secret = add_key(store, "alice", concurrency=1, rpm=100, tokens_per_day=1_000_000)
    c = client(secret)
    done = await asyncio.gather(*(c.post("/v1/chat/completions", json=chat()) for _ in range(10)))
    assert sorted(r.status_code for r in done) == [200] + [429] * 9
    assert slow.max_active == 1


async def test_an_answer_cut_short_is_charged_for_what_was_made(make: Callable[..., Any]) -> None:
    slow = ScriptedBackend(respond=lambda r: " ".join(["word"] * 200), delay=0.01)
    store, client = make(slow, auth="required", request_timeout_s=0.3)
    key, secret = add_key(store, "alice", tokens_per_day=1_000_000)
    r = await client(secret).post("/v1/chat/completions", json=chat(stream=True))
    streamed = sum('"content":"' in line and '"content":""' not in line for line in r.text.splitlines())
    assert "request_timeout" in r.text and streamed >= 5
    assert await counted(store, key.id, lambda n: n >= streamed)  # no Done came, yet the tokens count


async def test_pages_on_other_sites_cannot_call_a_loopback_server(make: Callable[..., Any]) -> None:
    _, client = make()
    r = await client().post("/v1/chat/completions", json=chat(), headers={"Origin": "https://evil.example"})
    assert assert_error(r, 403)["type"] == "permission_error"
    own = await client().post("/v1/chat/completions", json=chat(), headers={"Origin": "http://127.0.0.1:8000"})
    assert own.status_code == 200
    _, client = make(cors_origins=("https://app.example.org",))
    r = await client().post("/v1/chat/completions", json=chat(), headers={"Origin": "https://app.example.org"})
    assert r.status_code == 200


async def test_metrics_need_a_key_when_keys_are_required(make: Callable[..., Any]) -> None:
    store, client = make(auth="required")
    _, secret = add_key(store, "prometheus")
    assert_error(await client().get("/metrics"), 401)
    assert "ponder_requests_total" in (await client(secret).get("/metrics")).text


@pytest.mark.parametrize(
    ("server", "env", "match"),
    [
        ('max_queue = "10"', {}, "max_queue"),
        ("request_timeout_s = true", {}, "request_timeout_s"),
        ("", {"PONDER_MAX_QUEUE": "ten"}, "PONDER_MAX_QUEUE"),
    ],
)
def test_server_settings_of_the_wrong_type_are_refused(
    tmp_path: Path, server: str, env: dict[str, str], match: str
) -> None:
    from ponder.config import load_settings
    from ponder.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text(f"[server]\n{server}\n")
    with pytest.raises(ConfigError, match=match):
        load_settings(config, env=env)


BROKEN_PNG = "bm90IGFuIGltYWdl"  # "not an image": decoding it would be the other error
# a PNG's signature and nothing after it: what Ollama's wire reads of an image (its type, from the first
# bytes) passes, and decoding it would be the other error
TRUNCATED_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
LIMITED = {  # a request of each dialect: two messages, the second with a broken image
    "/v1/chat/completions": chat(messages=[{"role": "user", "content": "hi"}, {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{BROKEN_PNG}"}}]}]),
    "/v1/responses": {"model": "scripted", "input": [{"role": "user", "content": "hi"}, {"role": "user", "content": [
        {"type": "input_image", "image_url": f"data:image/png;base64,{BROKEN_PNG}"}]}]},
    "/v1/messages": {"model": "scripted", "max_tokens": 16, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": BROKEN_PNG}}]}]},
    "/api/chat": {"model": "scripted", "stream": False, "messages": [
        {"role": "user", "content": "hi"}, {"role": "user", "content": "this", "images": [TRUNCATED_PNG]}]},
}  # fmt: skip


@pytest.mark.parametrize("path", list(LIMITED))
async def test_limits_are_checked_before_any_media_work(make: Callable[..., Any], path: str) -> None:
    """In every dialect, a request past a limit is refused before its attachments are
    decoded or read (here a broken image would be the other error)."""
    _, client = make(max_messages=1)
    r = await client().post(path, json=LIMITED[path])
    assert r.status_code == 400 and "at most 1 messages" in r.text, r.text
    _, client = make()
    r = await client().post(path, json=LIMITED[path])
    assert r.status_code == 400 and "at most" not in r.text and "image" in r.text.lower(), r.text
