"""Stateless servers: two real `ponder serve` processes, each with a data dir of its
own, share one PostgreSQL store (a private server, tests/conftest.py), as they
would behind a load balancer. What one stores, the other retrieves and continues;
a key made or revoked with `ponder keys` counts on both at once. (The scripted
echo model: what is checked here is the store, not what the model says.)"""

from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import psycopg
import pytest

from tests.conftest import BIN, free_port, ponder_env, postgres_database, start, stop

pytestmark = pytest.mark.e2e

CONFIG = '[models.echo]\nbackend = "scripted"\n[media]\nspeech_to_text = ""\ntext_to_speech = ""\n'


@dataclass
class Shared:
    url: str  # the store's
    servers: list[str]  # base URLs (…/v1)
    homes: list[Path]
    logs: list[Path]
    admin: Path  # where `ponder keys` runs: a third data dir


def keys(shared: Shared, *args: str) -> subprocess.CompletedProcess[str]:
    env = ponder_env(shared.admin, PONDER_STORE_URL=shared.url)
    return subprocess.run([str(BIN / "ponder"), "keys", *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


def new_key(shared: Shared, name: str) -> str:
    made = keys(shared, "create", name)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture(scope="module")
def shared(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """Two servers that require keys, on one PostgreSQL database."""
    url = postgres_database(postgres)
    admin = tmp_path_factory.mktemp("keys-home")
    (admin / "no-config.toml").write_text(CONFIG)
    shared = Shared(url, [], [], [], admin)
    procs = []
    try:
        for name in ("a", "b"):
            home = tmp_path_factory.mktemp(f"server-{name}-home")
            (home / "no-config.toml").write_text(CONFIG)
            port, log = free_port(), home / "serve.log"
            cmd = [str(BIN / "ponder"), "serve", "--model", "echo", "--port", str(port), "--log-level", "info"]
            env = ponder_env(home, PONDER_STORE_URL=url, PONDER_AUTH="required")
            procs.append(start(cmd, env, f"http://127.0.0.1:{port}/health", log))
            shared.servers.append(f"http://127.0.0.1:{port}/v1")
            shared.homes.append(home)
            shared.logs.append(log)
        yield shared
    finally:
        for proc in procs:
            stop(proc)


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0)


def test_a_response_stored_through_one_server_is_retrieved_and_continued_through_the_other(shared: Shared) -> None:
    key = new_key(shared, "ci")
    (a_url, b_url), auth = shared.servers, {"Authorization": f"Bearer {key}"}
    a, b = client(a_url, key), client(b_url, key)

    first = a.responses.create(model="echo", input="Remember: the plums are in the icebox.", store=True)
    through_a = httpx.get(f"{a_url}/responses/{first.id}", headers=auth)
    through_b = httpx.get(f"{b_url}/responses/{first.id}", headers=auth)
    assert through_a.status_code == through_b.status_code == 200
    assert through_b.json() == through_a.json() and through_b.json()["id"] == first.id
    assert b.responses.retrieve(first.id).output_text.startswith("Remember: the plums")

    second = b.responses.create(model="echo", input="Where are the plums?", previous_response_id=first.id)
    alone = b.responses.create(model="echo", input="Where are the plums?", store=False)
    assert second.usage is not None and alone.usage is not None
    assert second.usage.input_tokens > alone.usage.input_tokens  # B continued A's conversation, history and all
    again = a.responses.retrieve(second.id)
    assert again.previous_response_id == first.id and again.output_text == second.output_text
    assert [i.content[0].text for i in a.responses.input_items.list(second.id).data] == ["Where are the plums?"]  # type: ignore[union-attr]
    third = a.responses.create(model="echo", input="And the pears?", previous_response_id=second.id)
    assert third.usage is not None and third.usage.input_tokens > second.usage.input_tokens

    b.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(first.id)

    # Nothing was kept in either server's data dir; and no log, nor the start-up line, holds the password.
    password = shared.url.split("@")[0].rsplit(":", 1)[1]
    for home, log in zip(shared.homes, shared.logs):
        assert not (home / "ponder.db").exists()
        text = log.read_text()
        assert "store: postgresql://ponder:***@127.0.0.1" in text and password not in text


def test_a_chat_made_through_one_server_is_listed_changed_and_deleted_through_the_other(shared: Shared) -> None:
    auth = {"Authorization": f"Bearer {new_key(shared, 'web')}"}
    a_app, b_app = (s.removesuffix("/v1") + "/app/api/conversations" for s in shared.servers)
    body = {"title": "Plums", "messages": [{"role": "user", "content": "How do I prune a plum tree?"}]}
    made = httpx.post(a_app, json=body, headers=auth).json()
    assert [c["id"] for c in httpx.get(f"{b_app}?q=PRUNE", headers=auth).json()["data"]] == [made["id"]]
    r = httpx.put(f"{b_app}/{made['id']}", json={"title": "Pruning"}, headers=auth)
    assert r.status_code == 200
    got = httpx.get(f"{a_app}/{made['id']}", headers=auth).json()
    assert got["title"] == "Pruning" and got["messages"] == body["messages"]
    assert httpx.delete(f"{a_app}/{made['id']}", headers=auth).status_code == 200
    assert httpx.get(f"{b_app}/{made['id']}", headers=auth).status_code == 404
    assert httpx.put(f"{b_app}/{made['id']}", json={"title": "Back?"}, headers=auth).status_code == 404


def test_a_key_made_once_works_on_both_servers_and_once_revoked_on_neither(shared: Shared) -> None:
    secret = new_key(shared, "alice")
    ask = [{"role": "user", "content": "open sesame"}]
    for url in shared.servers:
        r = client(url, secret).chat.completions.create(model="echo", messages=ask)  # type: ignore[arg-type]
        assert (r.choices[0].message.content or "").startswith("open sesame")
    key_id = next(line.split()[0] for line in keys(shared, "list").stdout.splitlines() if " alice " in line)
    assert keys(shared, "revoke", key_id).returncode == 0
    for url in shared.servers:  # at once: no restart, no cache, on either server
        with pytest.raises(openai.AuthenticationError):
            client(url, secret).chat.completions.create(model="echo", messages=ask)  # type: ignore[arg-type]
        assert httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert not (shared.admin / "ponder.db").exists()


# --- key limits across both servers ------------------------------------------------------


def post_chat(url: str, key: str, content: str = "hello there", **body: object) -> httpx.Response:
    return httpx.post(f"{url}/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                      json={"model": "echo", "messages": [{"role": "user", "content": content}], **body})  # fmt: skip


def spent_today(shared: Shared, name: str) -> int:
    with psycopg.connect(shared.url) as conn:
        row = conn.execute("SELECT COALESCE(SUM(u.tokens), 0) FROM key_usage u JOIN api_keys k ON k.id = u.key_id "
                           "WHERE k.name = %s", (name,)).fetchone()  # fmt: skip
    return int(row[0]) if row else 0


def test_requests_per_minute_hold_across_both_servers(shared: Shared) -> None:
    made = keys(shared, "create", "rpm10", "--rpm", "10")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    with ThreadPoolExecutor(8) as pool:  # at once, half to each server
        replies = list(pool.map(lambda i: post_chat(shared.servers[i % 2], key), range(16)))
    codes = [r.status_code for r in replies]
    assert codes.count(200) == 10 and codes.count(429) == 6, codes
    for r in replies:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limit_exceeded" and 1 <= int(r.headers["retry-after"]) <= 60


def test_a_daily_token_limit_is_never_passed_by_concurrent_requests_on_both(shared: Shared) -> None:
    limit = 400  # a request holds its prompt's estimate (about 130 here) and more as it writes
    made = keys(shared, "create", "daily", "--tokens-per-day", str(limit))
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    words = " ".join(f"w{i}" for i in range(40))  # the echo answers with these 40 words
    # Instant: one model call a request. A mode's later calls (a program, its repair, a
    # chain) reread the work so far, and their prompts are counted when they report,
    # past the hold (server/admission.py); the store's holds are what is checked here.
    ask = {"max_tokens": 50, "mode": "instant"}
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: post_chat(shared.servers[i % 2], key, words, **ask), range(8)))
    codes = [r.status_code for r in replies]
    assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes
    assert 0 < spent_today(shared, "daily") <= limit
    # the key goes on until its day is spent, and never past it
    for i in range(20):
        if post_chat(shared.servers[i % 2], key, words, **ask).status_code == 429:
            break
    else:
        raise AssertionError("a key with a daily limit was never refused")
    assert spent_today(shared, "daily") <= limit


def test_a_lease_of_a_killed_process_frees_its_key_within_the_expiry(shared: Shared) -> None:
    made = keys(shared, "create", "single", "--concurrency", "1")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    ttl = 3.0
    holder = textwrap.dedent(f"""
        import sys, time
        from ponder.store.postgres import PostgresStore
        store = PostgresStore({shared.url!r})
        key = next(k for k in store.api_keys() if k.name == "single")
        assert store.admit(key, "lease_holder", time.time(), time.strftime("%Y-%m-%d", time.gmtime()), {ttl}) is None
        print("held", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([str(BIN / "python"), "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        r = post_chat(shared.servers[0], key)
        assert r.status_code == 429 and r.json()["error"]["code"] == "concurrency_limit_exceeded"
        proc.kill()  # it dies holding the lease, and never ends it
        proc.wait(30)
        died = time.monotonic()
        while (r := post_chat(shared.servers[1], key)).status_code == 429:
            assert time.monotonic() - died < ttl + 10, "the lease outlived its expiry"
            time.sleep(0.5)
        assert r.status_code == 200
    finally:
        proc.kill()
