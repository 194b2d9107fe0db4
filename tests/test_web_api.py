"""The web app's conversation API over a real store (a SQLite file, and a PostgreSQL
database), through the ASGI app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ponder.backends.registry import Registry
from ponder.backends.scripted import ScriptedBackend
from ponder.config import Settings
from ponder.models import ModelStore
from ponder.server.app import create_app
from ponder.store import SqliteStore, Store
from ponder.store.postgres import PostgresStore
from tests.conftest import postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.e2e)])  # postgres: not a unit test
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Opens a store on one SQLite file or one PostgreSQL database, each time it is called."""
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "ponder.db")
    url = postgres_database(request.getfixturevalue("postgres"))
    return lambda: PostgresStore(url)


def _client(tmp_path: Path, store: Store) -> httpx.AsyncClient:
    settings = Settings(data_dir=tmp_path, default_model="scripted")
    app = create_app(Registry(settings, ModelStore(settings.models_dir, settings.cache_dir),
                              {"scripted": ScriptedBackend()}), store=store)  # fmt: skip
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


@pytest.fixture
async def client(tmp_path: Path, open_store: Callable[[], Store]) -> AsyncIterator[httpx.AsyncClient]:
    store = open_store()
    async with _client(tmp_path, store) as c:
        yield c
    store.close()


async def test_create_save_list_search_and_delete(client: httpx.AsyncClient) -> None:
    first = (await client.post("/app/api/conversations", json={"title": "Pears"})).json()
    second = (await client.post("/app/api/conversations", json={})).json()
    assert first["title"] == "Pears" and second["title"] == "New chat" and first["messages"] == []
    messages = [
        {"role": "user", "content": "How do I prune a plum tree?"},
        {"role": "assistant", "content": "In spring."},
    ]
    r = await client.put(f"/app/api/conversations/{second['id']}", json={"messages": messages})
    assert r.status_code == 200 and r.json()["title"] == "New chat"
    listed = (await client.get("/app/api/conversations")).json()["data"]
    assert [c["id"] for c in listed] == [second["id"], first["id"]]  # the one saved last comes first
    assert [c["id"] for c in (await client.get("/app/api/conversations?q=PLUM")).json()["data"]] == [second["id"]]
    assert [c["id"] for c in (await client.get("/app/api/conversations?q=pears")).json()["data"]] == [first["id"]]
    assert (await client.get("/app/api/conversations?q=%25")).json()["data"] == []  # % is a character, not a wildcard
    got = (await client.get(f"/app/api/conversations/{second['id']}")).json()
    assert got["messages"] == messages
    assert (await client.delete(f"/app/api/conversations/{first['id']}")).json() == {"id": first["id"], "deleted": True}
    assert [c["id"] for c in (await client.get("/app/api/conversations")).json()["data"]] == [second["id"]]


async def test_conversations_come_back_after_a_restart(tmp_path: Path, open_store: Callable[[], Store]) -> None:
    async with _client(tmp_path, open_store()) as c:
        body = {"title": "Kept", "messages": [{"role": "user", "content": "hi"}]}
        made = (await c.post("/app/api/conversations", json=body)).json()
    async with _client(tmp_path, open_store()) as c:
        assert (await c.get(f"/app/api/conversations/{made['id']}")).json()["messages"] == [
            {"role": "user", "content": "hi"}
        ]


async def test_bad_requests_are_openai_shaped(client: httpx.AsyncClient) -> None:
    for method, path, body, status in [
        ("GET", "/app/api/conversations/conv_missing", None, 404),
        ("PUT", "/app/api/conversations/conv_missing", {"title": "x"}, 404),
        ("DELETE", "/app/api/conversations/conv_missing", None, 404),
        ("POST", "/app/api/conversations", {"title": 5}, 400),
        ("POST", "/app/api/conversations", {"title": "x" * 201}, 400),
        ("POST", "/app/api/conversations", {"messages": "not a list"}, 400),
        ("POST", "/app/api/conversations", {"colour": "blue"}, 400),
    ]:
        r = await client.request(method, path, json=body)
        assert r.status_code == status, (path, body, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


async def test_a_rename_keeps_the_messages_and_a_deleted_chat_stays_deleted(client: httpx.AsyncClient) -> None:
    messages = [{"role": "user", "content": "Keep me \ud83d"}]  # a lone surrogate, as a cut emoji leaves
    raw = json.dumps({"title": "Old", "messages": messages})  # ASCII, with the surrogate escaped, as browsers send it
    made = (
        await client.post("/app/api/conversations", content=raw, headers={"content-type": "application/json"})
    ).json()
    r = await client.put(f"/app/api/conversations/{made['id']}", json={"title": "New"})
    assert r.status_code == 200 and r.json()["title"] == "New"
    assert (await client.get(f"/app/api/conversations/{made['id']}")).json()["messages"] == [
        {"role": "user", "content": "Keep me ?"}
    ]
    await client.delete(f"/app/api/conversations/{made['id']}")
    r = await client.put(f"/app/api/conversations/{made['id']}", json={"messages": []})
    assert r.status_code == 404
    assert (await client.get("/app/api/conversations")).json()["data"] == []


async def test_a_conversation_past_the_size_limit_is_a_413(client: httpx.AsyncClient, monkeypatch: Any) -> None:
    from ponder.server import web

    monkeypatch.setattr(web, "MAX_CONVERSATION_BYTES", 1000)
    r = await client.post("/app/api/conversations", json={"messages": [{"role": "user", "content": "x" * 2000}]})
    assert r.status_code == 413 and r.json()["error"]["param"] == "messages"
