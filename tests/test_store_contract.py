"""The store's contract, run against both databases: a SQLite file and a private
PostgreSQL server (tests/conftest.py). Each `place` opens stores on one file or
database as often as asked; two stores on one place stand for two servers."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from ponder.config import Settings, load_settings
from ponder.errors import ConfigError, StoreUnavailable
from ponder.store import ApiKey, Conversation, SqliteStore, Store, StoredResponse, open_store
from ponder.store.postgres import PostgresStore, redacted
from tests.conftest import postgres_database

Place = Callable[[], Store]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.e2e)])  # postgres: not a unit test
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    opened: list[Store] = []
    if request.param == "sqlite":
        path = tmp_path / "ponder.db"
        opener: Place = lambda: SqliteStore(path)  # noqa: E731
    else:
        url = postgres_database(request.getfixturevalue("postgres"))
        opener = lambda: PostgresStore(url)  # noqa: E731

    def open_one() -> Store:
        opened.append(opener())
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(place: Place) -> Store:
    return place()


def response(rid: str, text: str) -> StoredResponse:
    body = {"id": rid, "object": "response", "created_at": 1700000000.25, "output_text": text, "n": [1, 2.5, None]}
    return StoredResponse(rid, body, [{"role": "user", "content": text}], [{"role": "assistant", "content": text}])


def password_of(url: str) -> str:
    return url.split("@")[0].rsplit(":", 1)[1]


def chat(cid: str, title: str, text: str = "", at: float = 1.0) -> Conversation:
    return Conversation(cid, title, at, at, [{"role": "user", "content": text}] if text else [])


def test_a_stored_response_comes_back_whole_to_its_owner_only(store: Store) -> None:
    r = response("resp_1", 'héllo 🌍 \\ "quoted"')
    store.put(StoredResponse(r.id, r.body, r.input_items, r.history, "key_a"))
    got = store.get("resp_1", "key_a")
    assert got == StoredResponse(r.id, r.body, r.input_items, r.history, "key_a")
    assert store.get("resp_1") is None and store.get("resp_1", "key_b") is None
    assert not store.delete("resp_1", "key_b")
    assert store.get("resp_1", "key_a") is not None
    assert store.delete("resp_1", "key_a") and store.get("resp_1", "key_a") is None
    assert not store.delete("resp_1", "key_a")


def test_putting_a_response_again_replaces_it(store: Store) -> None:
    store.put(response("resp_1", "first"))
    store.put(response("resp_1", "second"))
    got = store.get("resp_1")
    assert got is not None and got.body["output_text"] == "second" and got.history[0]["content"] == "second"


def test_a_conversation_id_is_taken_once(store: Store) -> None:
    store.save_conversation(chat("conv_1", "First", "kept"))
    with pytest.raises((psycopg.IntegrityError, sqlite3.IntegrityError)):
        store.save_conversation(chat("conv_1", "Second"))
    got = store.conversation("conv_1")
    assert got is not None and got.title == "First" and got.messages == [{"role": "user", "content": "kept"}]
    store.save_conversation(chat("conv_2", "Third"))  # the store still works after the refused write


def test_an_update_changes_what_it_names_and_a_deleted_chat_stays_deleted(store: Store) -> None:
    store.save_conversation(chat("conv_1", "Plums", "How do I prune a plum tree?"), "key_a")
    renamed = store.update_conversation("conv_1", "Pruning", None, 5.0, "key_a")
    assert renamed == Conversation(
        "conv_1", "Pruning", 1.0, 5.0, [{"role": "user", "content": "How do I prune a plum tree?"}]
    )
    assert store.conversation("conv_1", "key_a") == renamed
    talked = store.update_conversation("conv_1", None, [{"role": "assistant", "content": "In spring."}], 6.0, "key_a")
    assert talked is not None and talked.title == "Pruning" and talked.updated_at == 6.0
    assert [c.id for c in store.conversations("SPRING", owner="key_a")] == ["conv_1"]
    assert store.conversations("plum tree", owner="key_a") == []  # the old messages are gone from search too
    assert store.update_conversation("conv_1", "Mine now", None, 7.0, "key_b") is None
    assert store.conversation("conv_1", "key_b") is None and not store.delete_conversation("conv_1", "key_b")
    assert store.delete_conversation("conv_1", "key_a")
    assert store.update_conversation("conv_1", "Back?", [], 8.0, "key_a") is None
    assert store.conversation("conv_1", "key_a") is None and store.conversations(owner="key_a") == []


def test_search_is_a_case_insensitive_substring_where_wildcards_are_characters(store: Store) -> None:
    store.save_conversation(chat("conv_a", "Pears", "100% ripe"))
    store.save_conversation(chat("conv_b", "Plums", "snake_case and C:\\path"))
    store.save_conversation(chat("conv_c", "ÉTÉ", "Straße"))
    store.save_conversation(chat("conv_d", "x", "hidden"), "key_other")
    found = lambda q: sorted(c.id for c in store.conversations(q))  # noqa: E731
    assert found("") == ["conv_a", "conv_b", "conv_c"]
    assert found("PEARS") == ["conv_a"] and found("e_c") == ["conv_b"] and found("ripe") == ["conv_a"]
    assert found("%") == ["conv_a"] and found("_") == ["conv_b"] and found("0% r") == ["conv_a"]
    assert found("e%c") == [] and found("p_ars") == [] and found("c:\\p") == ["conv_b"] and found("\\") == ["conv_b"]
    assert found("été") == ["conv_c"] and found("STRASSE") == [] and found("straße") == ["conv_c"]
    assert found("hidden") == []


def test_conversations_come_newest_first_up_to_the_limit(store: Store) -> None:
    for i in range(5):
        store.save_conversation(chat(f"conv_{i}", f"Chat {i}", at=float(10 - i)))
    store.update_conversation("conv_4", None, None, 100.0)
    listed = store.conversations()
    assert [c.id for c in listed] == ["conv_4", "conv_0", "conv_1", "conv_2", "conv_3"]
    assert listed[0] == Conversation("conv_4", "Chat 4", 6.0, 100.0, [])  # a summary: no messages
    assert [c.id for c in store.conversations(limit=2)] == ["conv_4", "conv_0"]


def test_keys_are_found_by_secret_and_a_revoked_one_at_once_by_every_server(place: Place) -> None:
    a, b = place(), place()
    alice = ApiKey("key_alice", "alice", "pdr-abcd", 1.5, None, 60, 3_000_000_000, 2)
    a.add_key(alice, "pdr-abcdefg")
    a.add_key(ApiKey("key_bob", "bob", "pdr-bob0", 2.5), "pdr-bob0secret")
    assert b.key_for("pdr-abcdefg") == alice and b.key_for("pdr-abcdefh") is None
    with pytest.raises((psycopg.IntegrityError, sqlite3.IntegrityError)):
        b.add_key(ApiKey("key_eve", "eve", "pdr-abcd", 3.5), "pdr-abcdefg")  # a secret is one key's
    assert b.revoke_key("key_alice", 9.0) and not a.revoke_key("key_alice", 10.0)
    assert a.key_for("pdr-abcdefg") is None and b.key_for("pdr-abcdefg") is None
    assert [(k.id, k.revoked_at) for k in a.api_keys()] == [("key_alice", 9.0), ("key_bob", None)]
    assert not a.revoke_key("key_nobody", 11.0)


def test_spend_adds_up_across_threads_and_servers(place: Place) -> None:
    stores = [place(), place()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: stores[i % 2].spend("key_a", "2025-01-01", 7), range(80)))
    stores[0].spend("key_a", "2025-01-02", 1)
    assert stores[1].spent("key_a", "2025-01-01") == 560 and stores[0].spent("key_a", "2025-01-02") == 1
    assert stores[0].spent("key_a", "2025-01-03") == 0 and stores[0].spent("key_b", "2025-01-01") == 0


def test_concurrent_updates_of_one_chat_lose_nothing(place: Place) -> None:
    """Half the writers rename, half replace the messages: in the end the title is a
    renamer's and the messages a writer's, from any server."""
    stores = [place(), place()]
    stores[0].save_conversation(chat("conv_1", "Start", "start"))

    def write(i: int) -> None:
        if i % 2:
            stores[i % 2].update_conversation("conv_1", f"title {i}", None, float(i))
        else:
            stores[i % 2].update_conversation("conv_1", None, [{"role": "user", "content": f"text {i}"}], float(i))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(40)))
    got = stores[1].conversation("conv_1")
    assert got is not None and got.title.startswith("title ") and got.messages[0]["content"].startswith("text ")
    assert [c.id for c in stores[0].conversations(got.messages[0]["content"])] == ["conv_1"]


def test_text_either_database_refuses_is_stored_cleanly(store: Store) -> None:
    store.save_conversation(chat("conv_1", "nul\x00here", "lone \ud83d and nul \x00"))
    got = store.conversation("conv_1")
    assert got is not None and got.title == "nul\ufffdhere"
    assert got.messages == [{"role": "user", "content": "lone \ud83d and nul \x00"}]  # JSON keeps them escaped
    assert store.update_conversation("conv_1", "t\x00", None, 2.0) == Conversation(
        "conv_1", "t\ufffd", 1.0, 2.0, got.messages
    )
    assert store.get("resp_\x00") is None and store.get("resp_\ud800") is None
    assert store.conversation("conv_\x00") is None
    assert [c.id for c in store.conversations("\x00")] == ["conv_1"]  # stored, and looked for, as U+FFFD


def test_stores_opened_at_once_on_a_new_database_all_work(place: Place) -> None:
    """Servers starting together each make the tables (if not there) without tripping on each other."""
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: place(), range(4)))
    stores[0].put(response("resp_1", "hi"))
    assert all(s.get("resp_1") is not None for s in stores)


# --- PostgreSQL only -------------------------------------------------------------------


def test_a_database_that_cannot_be_reached_is_named_without_its_password(postgres: str) -> None:
    good_password = password_of(postgres)
    wrong = postgres.replace(good_password, "Wr0ng-p%40ss")
    with pytest.raises(StoreUnavailable) as e:
        PostgresStore(wrong)
    assert (
        "Wr0ng" not in e.value.message and "p@ss" not in e.value.message and "ponder:***@127.0.0.1" in e.value.message
    )
    assert "password authentication failed" in e.value.message
    for url in [postgres.replace("@127.0.0.1:", "@[::1:"), postgres + "?sslmode=bogus&password=s3cr3t-x"]:
        with pytest.raises(StoreUnavailable) as e:
            PostgresStore(url)
        assert good_password not in e.value.message and "s3cr3t" not in e.value.message, e.value.message
        assert "***" in e.value.message
    assert redacted("postgresql://u:p%3Aw@h:5432/db?password=x&sslmode=require") == (
        "postgresql://u:***@h:5432/db?password=***&sslmode=require"
    )
    assert redacted("postgresql://h/db") == "postgresql://h/db" and redacted("postgres://u@h") == "postgres://u@h"


def test_a_lost_connection_is_a_503_once_and_then_a_new_one_is_made(postgres: str) -> None:
    url = postgres_database(postgres)
    store = PostgresStore(url)
    try:
        store.put(response("resp_1", "hi"))
        with psycopg.connect(postgres, autocommit=True) as admin:  # as if the database restarted
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                          (url.rsplit("/", 1)[1],))  # fmt: skip
        with pytest.raises(StoreUnavailable) as e:
            store.get("resp_1")
        assert e.value.status == 503 and "unavailable" in e.value.message
        assert store.get("resp_1") is not None
    finally:
        store.close()


def test_the_store_url_comes_from_config_or_the_environment_and_is_never_echoed(tmp_path: Path, postgres: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[store]\nurl = "postgresql://ponder:hunter22@db.example:5432/ponder"\n')
    settings = load_settings(config, env={})
    assert settings.store.url == "postgresql://ponder:hunter22@db.example:5432/ponder"
    assert "hunter22" not in repr(settings)
    assert load_settings(config, env={"PONDER_STORE_URL": postgres}).store.url == postgres
    assert load_settings(tmp_path / "none.toml", env={}).store.url == ""
    for text in ['[store]\nurl = "mysql://root:hunter22@db/x"\n', "[store]\nurl = 5\n", '[store]\nhost = "db"\n']:
        config.write_text(text)
        with pytest.raises(ConfigError, match=r"config \[store\]") as e:
            load_settings(config, env={})
        assert "hunter22" not in e.value.message

    store = open_store(Settings(data_dir=tmp_path))
    assert isinstance(store, SqliteStore) and store.where == str(tmp_path / "ponder.db")
    store.close()
    store = open_store(load_settings(tmp_path / "none.toml", env={"PONDER_STORE_URL": postgres}))
    assert isinstance(store, PostgresStore) and "***" in store.where and password_of(postgres) not in store.where
    store.close()


def test_many_calls_at_once_share_a_few_connections(postgres: str) -> None:
    url = postgres_database(postgres)
    store = PostgresStore(url)
    try:
        store.put(response("resp_1", "hi"))
        seen: set[int] = set()
        lock = threading.Lock()

        def read(_: int) -> None:
            assert store.get("resp_1") is not None
            with lock:
                seen.add(threading.get_ident())

        start = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(read, range(500)))
        assert time.monotonic() - start < 30 and len(seen) > 1
        with psycopg.connect(postgres, autocommit=True) as admin:
            count = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                  (url.rsplit("/", 1)[1],)).fetchone()  # fmt: skip
        assert count is not None and 1 <= count[0] <= 8
    finally:
        store.close()


# --- key limits: leases shared by every store on one place ----------------------------------

DAY = "2026-12-05"


def test_a_keys_rate_and_concurrency_are_counted_across_stores(place: Place) -> None:
    a, b = place(), place()
    key = ApiKey("key_lim", "lim", "pdr-lim0", 1.0, rpm=3, concurrency=2)
    a.add_key(key, "pdr-lim0secret")
    t = 1000.0
    assert a.admit(key, "l1", t, DAY, 30) is None and b.admit(key, "l2", t + 1, DAY, 30) is None
    refused = b.admit(key, "l3", t + 2, DAY, 30)
    assert refused is not None and refused.limit == "concurrency"  # two run, on two servers
    a.end("l1", t + 32)
    assert b.admit(key, "l3", t + 3, DAY, 30) is None  # one ended: a place is free
    b.end("l2", t + 33)
    refused = a.admit(key, "l4", t + 4, DAY, 30)
    assert refused is not None and refused.limit == "rpm" and refused.retry_after == pytest.approx(56.0)
    assert a.admit(key, "l4", t + 60.5, DAY, 30) is None  # the first left the minute


def test_a_lease_not_renewed_expires_and_one_renewed_does_not(place: Place) -> None:
    a, b = place(), place()
    key = ApiKey("key_one", "one", "pdr-one0", 1.0, concurrency=1)
    a.add_key(key, "pdr-one0secret")
    assert a.admit(key, "dies", 100.0, DAY, 5) is None
    assert b.admit(key, "waits", 104.0, DAY, 5) is not None  # held until 105
    assert b.admit(key, "waits", 105.5, DAY, 5) is None  # its process stopped renewing it
    a.renew(["waits"], 200.0)
    assert a.admit(key, "third", 150.0, DAY, 5) is not None  # renewed past its first expiry
    b.end("waits", 155.0)
    a.renew(["waits"], 300.0)  # an ended lease is not renewed, and runs no more
    assert a.admit(key, "third", 151.0, DAY, 5) is None


def test_tokens_are_held_for_running_requests_and_settled_once(place: Place) -> None:
    a, b = place(), place()
    key = ApiKey("key_tok", "tok", "pdr-tok0", 1.0, tokens_per_day=100)
    a.add_key(key, "pdr-tok0secret")
    assert a.admit(key, "x", 10.0, DAY, 30) is None and b.admit(key, "y", 10.0, DAY, 30) is None
    assert a.reserve(key, "x", 11.0, DAY, 70) == 70
    assert b.reserve(key, "y", 11.0, DAY, 70) == 30  # what x does not hold
    assert a.admit(key, "z", 12.0, DAY, 30) is not None  # all 100 held: nothing left to start with
    a.end("x", 40.0)  # ended, not yet settled: still held
    assert b.admit(key, "z", 12.5, DAY, 30) is not None
    a.settle("key_tok", "x", DAY, 20)  # it spent 20 of its 70
    assert b.spent("key_tok", DAY) == 20
    assert b.admit(key, "z", 13.0, DAY, 30) is None and b.reserve(key, "z", 13.0, DAY, 500) == 50
    b.settle("key_tok", "y", DAY, 30)
    b.settle("key_tok", "z", DAY, 50)
    refused = a.admit(key, "w", 14.0, DAY, 30)
    assert refused is not None and refused.limit == "tokens" and refused.retry_after is None  # none left today
    assert a.reserve(ApiKey("key_free", "free", "p", 1.0), "any", 14.0, DAY, 500) == 500  # no limit: all of it


def test_a_hold_never_settled_goes_when_its_lease_expires(place: Place) -> None:
    a, b = place(), place()
    key = ApiKey("key_lost", "lost", "pdr-lost", 1.0, tokens_per_day=100)
    a.add_key(key, "pdr-lostsecret")
    assert a.admit(key, "p", 0.0, DAY, 30) is None and a.reserve(key, "p", 0.0, DAY, 100) == 100
    a.end("p", 10.0)  # its settlement never comes (its process died after the request ended)
    assert b.admit(key, "q", 5.0, DAY, 30) is not None
    assert b.admit(key, "q", 11.0, DAY, 30) is None and b.reserve(key, "q", 11.0, DAY, 100) == 100


def test_a_spoken_answer_is_known_to_every_store_on_a_place_until_it_expires(place: Place) -> None:
    a, b = place(), place()
    a.remember_spoken("audio_1", "key_a", "On Thursday.", expires_at=200.0, now=100.0)
    assert b.spoken("audio_1", "key_a", 150.0) == "On Thursday."
    assert b.spoken("audio_1", "key_b", 150.0) is None  # only the key that made it may name it
    assert b.spoken("audio_1", "key_a", 201.0) is None  # expired
    b.remember_spoken("audio_2", "key_a", "At noon.", expires_at=400.0, now=300.0)  # and the expired ones go
    assert a.spoken("audio_1", "key_a", 150.0) is None and a.spoken("audio_2", "key_a", 300.0) == "At noon."
