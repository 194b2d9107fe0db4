"""Controls on a running request (`server/controls.py`, `modes/steer.py`) on the
scripted backend: answer now, think longer and stop one agent, through the server,
and only for the key that made the request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from ponder.backends.registry import Registry
from ponder.backends.scripted import Script, ScriptedBackend
from ponder.config import ServerSettings, Settings
from ponder.models import ModelStore
from ponder.modes.prompts import load
from ponder.modes.thinking import BRIEF_TOKENS
from ponder.server.app import create_app
from ponder.store import ApiKey, SqliteStore
from tests.conftest import QUEUED, live

THINK = load("thinking")
LONG = " ".join(f"step{i}" for i in range(2000))  # reasoning that would run on for 20 s and more


def thinker(reasoning: str = LONG, answer: str = "The answer is 42.") -> Callable[[Any], Script]:
    """Reasoning (a prefilled turn) of `reasoning`'s words, one token each; any other call gets `answer`."""
    return lambda req: reasoning if req.prefill.startswith(THINK["open"]) else answer


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """server(backend, auth=...) -> (client factory: client(secret) -> AsyncClient, secrets of keys a and b,
    each allowed one request at a time). A real server on loopback, so streams arrive as they are written."""
    with ExitStack() as servers:
        opened: list[httpx.AsyncClient] = []

        def build(backend: ScriptedBackend, auth: str = "off") -> tuple[Callable[..., httpx.AsyncClient], list[str]]:
            settings = Settings(
                data_dir=tmp_path, default_model="scripted", server=ServerSettings(auth=auth), modes=QUEUED
            )
            registry = Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), {"scripted": backend})
            store = SqliteStore(tmp_path / "ponder.db")
            secrets = []
            for name in ("a", "b"):
                secret = f"pdr-secret-{name}-" + "x" * 20
                store.add_key(ApiKey(f"key_{name}", name, secret[:8], time.time(), None, concurrency=1), secret)
                secrets.append(secret)
            url = servers.enter_context(live(create_app(registry, store=store)))

            def client(secret: str | None = None) -> httpx.AsyncClient:
                headers = {"Authorization": f"Bearer {secret}"} if secret else {}
                c = httpx.AsyncClient(base_url=url, headers=headers, timeout=30)
                opened.append(c)
                return c

            return client, secrets

        yield build
        for c in opened:
            await c.aclose()


async def started(backend: ScriptedBackend, calls: int = 1) -> None:
    """Wait until the backend has been asked for `calls` generations and one is running."""
    for _ in range(500):
        if len(backend.requests) >= calls and backend.active:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the run never started")


def ask(mode: str, **extra: Any) -> dict[str, Any]:
    return {"model": "scripted", "messages": [{"role": "user", "content": "What is 6 * 7?"}], "mode": mode, **extra}


async def test_answer_now_ends_the_reasoning_and_the_answer_follows(server: Callable[..., Any]) -> None:
    backend = ScriptedBackend(respond=thinker(), delay=0.01)
    client, _ = server(backend)
    c = client()
    run = asyncio.ensure_future(c.post("/v1/chat/completions", json=ask("thinking"),
                                       headers={"X-Request-Id": "req_answer_now"}))  # fmt: skip
    await started(backend)
    r = await c.post("/v1/control", json={"id": "req_answer_now", "action": "answer_now"})
    assert r.status_code == 200 and r.json() == {"success": True}
    done = (await run).json()
    message = done["choices"][0]["message"]
    assert message["content"] == "The answer is 42."  # answered from what it had
    asked = backend.requests[-1]  # briefly: the client is waiting
    assert asked.messages[-1].content == THINK["answer_brief"] and asked.params.max_tokens == BRIEF_TOKENS
    assert len(message["reasoning_content"].split()) < 1000  # cut long before its 2,000 steps
    assert done["usage"]["completion_tokens_details"]["reasoning_tokens"] < 1000
    r = await c.post("/v1/control", json={"id": "req_answer_now", "action": "answer_now"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"  # it has ended


async def test_llama_servers_reasoning_end_by_the_completion_id_in_the_stream(server: Callable[..., Any]) -> None:
    backend = ScriptedBackend(respond=thinker(), delay=0.01)
    client, _ = server(backend)
    c = client()
    async with c.stream("POST", "/v1/chat/completions", json=ask("thinking", stream=True)) as r:
        lines = r.aiter_lines()
        first = await anext(line async for line in lines if line.startswith("data: {"))
        completion_id = first.split('"id":"', 1)[1].split('"', 1)[0]
        assert completion_id.startswith("chatcmpl-")
        await started(backend)
        end = {"id": completion_id, "action": "reasoning_end", "model": "scripted"}  # llama-server's shape
        control = await client().post("/v1/chat/completions/control", json=end)
        assert control.json() == {"success": True}
        rest = [line async for line in lines]
    text = "".join(rest)
    assert "The answer is 42." in text and text.rstrip().endswith("data: [DONE]")


async def test_think_longer_lets_a_budget_cut_reasoning_go_on(server: Callable[..., Any]) -> None:
    backend = ScriptedBackend(respond=thinker(answer="Still thinking; say 42."), delay=0.1)  # 8 tokens: 0.8 s
    client, _ = server(backend)
    c = client()
    body = ask("thinking", thinking_budget=8, thought_compression=False)
    alone = (await c.post("/v1/chat/completions", json=body)).json()
    assert alone["usage"]["completion_tokens_details"]["reasoning_tokens"] == 8  # cut at its budget
    backend.requests.clear()
    run = asyncio.ensure_future(c.post("/v1/chat/completions", json=body, headers={"X-Request-Id": "req_longer"}))
    await started(backend)
    r = await c.post("/v1/control", json={"id": "req_longer", "action": "think_longer", "tokens": 16})
    assert r.json() == {"success": True}
    longer = (await run).json()
    assert longer["usage"]["completion_tokens_details"]["reasoning_tokens"] == 24  # 8 + 16


async def test_only_the_key_that_made_a_request_may_steer_it(server: Callable[..., Any]) -> None:
    """...even when the key may run only one request at a time: a control is no second request."""
    backend = ScriptedBackend(respond=thinker(), delay=0.01)
    client, (a, b) = server(backend, auth="required")
    run = asyncio.ensure_future(client(a).post("/v1/chat/completions", json=ask("thinking"),
                                               headers={"X-Request-Id": "req_theirs"}))  # fmt: skip
    await started(backend)
    other = await client(b).post("/v1/control", json={"id": "req_theirs", "action": "answer_now"})
    assert other.status_code == 404 and other.json()["error"]["param"] == "id"  # as if it did not exist
    unknown = await client(a).post("/v1/control", json={"id": "req_nothing", "action": "answer_now"})
    assert unknown.status_code == 404
    bad = [({"id": "req_theirs", "action": "dance"}, "action"), ({"id": "req_theirs", "action": "think_longer"},
           "tokens"), ({"id": "req_theirs", "action": "stop_agent", "agent": 1}, "agent")]  # fmt: skip
    for body, param in bad:
        r = await client(a).post("/v1/control", json=body)
        assert r.status_code == 400 and param in str(r.json()["error"]["param"]), r.text
    assert (await client(a).post("/v1/control", json={"id": "req_theirs", "action": "answer_now"})).status_code == 200
    assert (await run).json()["choices"][0]["message"]["content"] == "The answer is 42."


def chains(answers: dict[str, str]) -> Callable[[Any], Script]:
    """Contemplating on a question with no numbers: every agent a chain; each reasons
    at length, and answers as `answers` says for its style (the direct answer: "direct")."""
    styles = {s["name"]: s["note"] for s in load("contemplating")["styles"]}

    def respond(req: Any) -> Script:
        if req.prefill.startswith(THINK["open"]):
            return LONG
        asked = next(m.content for m in req.messages if m.role == "user")
        who = next((name for name, note in styles.items() if note in asked), "direct")
        return f"The answer is {answers[who]}."

    return respond


QUESTION = {"model": "scripted", "messages": [{"role": "user", "content": "Which planet is the largest?"}],
            "mode": "contemplating", "contemplation": {"agents": 3}}  # fmt: skip


async def test_answer_now_in_contemplating_ends_every_agent_and_decides(server: Callable[..., Any]) -> None:
    backend = ScriptedBackend(respond=chains({"direct": "Jupiter", "equations": "Jupiter", "verify": "Jupiter"}),
                              delay=0.01)  # fmt: skip
    client, _ = server(backend)
    c = client()
    run = asyncio.ensure_future(c.post("/v1/chat/completions", json=QUESTION, headers={"X-Request-Id": "req_all"}))
    await started(backend, calls=2)  # the direct answer and the first chain
    assert (await c.post("/v1/control", json={"id": "req_all", "action": "answer_now"})).status_code == 200
    done = (await run).json()
    assert "Jupiter" in done["choices"][0]["message"]["content"]
    assert done["usage"]["completion_tokens_details"]["reasoning_tokens"] < 3 * 1000  # each cut long before 2,000
    agents = [p for p in done["ponder"]["progress"] if p["type"] == "agent.done"]
    assert agents and all(a["stopped"] in ("answer_now", "") for a in agents)


async def test_answer_now_cuts_a_long_direct_answer_and_a_short_one_follows(server: Callable[..., Any]) -> None:
    # a small model's direct answer is a worked solution: answer_now does not wait for it
    voted = chains({"direct": "Jupiter", "equations": "Jupiter", "verify": "Jupiter"})

    def respond(req: Any) -> Script:
        last = req.messages[-1].content
        if not req.prefill and last == QUESTION["messages"][0]["content"]:  # the direct answer, written at length
            return LONG
        return voted(req)

    backend = ScriptedBackend(respond=respond, delay=0.01)
    client, _ = server(backend)
    c = client()
    run = asyncio.ensure_future(c.post("/v1/chat/completions", json=QUESTION, headers={"X-Request-Id": "req_d"}))
    await started(backend, calls=2)
    assert (await c.post("/v1/control", json={"id": "req_d", "action": "answer_now"})).status_code == 200
    done = (await run).json()
    assert done["choices"][0]["message"]["content"] == "The answer is Jupiter."
    agents = {p["agent"]: p for p in done["ponder"]["progress"] if p["type"] == "agent.done"}
    assert agents[0]["method"] == "direct" and agents[0]["stopped"] == "answer_now" and agents[0]["forced"]
    assert agents[0]["answer"] == "The answer is Jupiter."
    followed = [r.messages[-2].content for r in backend.requests if r.messages[-1].content == THINK["answer_brief"]]
    direct = [w for w in followed if not w.startswith(THINK["open"])]  # (a chain's working opens with <think>)
    assert len(direct) == 1 and direct[0].startswith("step0") and len(direct[0].split()) < 1000  # after its start


async def test_stop_agent_ends_one_agent_which_has_no_vote(server: Callable[..., Any]) -> None:
    backend = ScriptedBackend(respond=chains({"direct": "Jupiter", "equations": "Saturn", "verify": "Jupiter"}),
                              delay=0.005)  # fmt: skip
    client, _ = server(backend)
    c = client()
    run = asyncio.ensure_future(c.post("/v1/chat/completions", json=QUESTION, headers={"X-Request-Id": "req_one"}))
    await started(backend, calls=2)
    r = await c.post("/v1/control", json={"id": "req_one", "action": "stop_agent", "agent": 1})
    assert r.json() == {"success": True}
    done = (await run).json()
    agents = {p["agent"]: p for p in done["ponder"]["progress"] if p["type"] == "agent.done"}
    assert agents[1]["stopped"] == "stopped" and not agents[1]["ok"] and agents[1]["vote"] is None
    assert "Jupiter" in done["choices"][0]["message"]["content"]


async def test_a_responses_or_messages_stream_is_steered_by_the_id_it_carries(server: Callable[..., Any]) -> None:
    backend = ScriptedBackend(respond=thinker(), delay=0.01)
    client, _ = server(backend)
    c = client()
    question = [{"role": "user", "content": "What is 6 * 7?"}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    asks = [("/v1/responses", {"model": "scripted", "input": "What is 6 * 7?", "mode": "thinking", "stream": True},
             '"id":"resp_'),
            ("/v1/messages", {"model": "scripted", "max_tokens": 64, "stream": True, "thinking": thinking,
                              "messages": question}, '"id":"msg_')]  # fmt: skip
    for path, body, marker in asks:
        backend.requests.clear()
        async with c.stream("POST", path, json=body) as r:
            lines = r.aiter_lines()
            first = await anext(line async for line in lines if marker in line)
            run_id = marker.split('"')[-1] + first.split(marker, 1)[1].split('"', 1)[0]
            await started(backend)
            assert (await client().post("/v1/control", json={"id": run_id, "action": "answer_now"})).status_code == 200
            text = "".join([line async for line in lines])
        assert "The answer is 42." in text, (path, text[-300:])


@pytest.fixture
def keyboard(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A terminal as stdin; yields the fd its keys are typed into, and checks the
    terminal is left as it was."""
    import os
    import pty
    import termios

    master, slave = pty.openpty()
    stdin = os.fdopen(slave, "r")
    monkeypatch.setattr("sys.stdin", stdin)
    before = termios.tcgetattr(slave)
    yield master
    assert termios.tcgetattr(slave) == before  # the terminal is as it was
    stdin.close()
    os.close(master)


async def test_ponder_chat_steers_by_keys_on_a_terminal(keyboard: int) -> None:
    """`ponder chat` (the terminal Answerer, local modes): the key "a" on a terminal
    answers now; keys are read only while the answer runs, and the terminal is restored."""
    import io
    import os

    from ponder.config import ModeSettings
    from ponder.terminal import Answerer, ModeChoice
    from ponder.types import Message, SamplingParams

    backend = ScriptedBackend(respond=thinker(), delay=0.01)
    out, err = io.StringIO(), io.StringIO()
    answerer = Answerer(backend, "scripted", SamplingParams(), ModeSettings(), ModeChoice(mode="thinking"),
                        out=out, err=err)  # fmt: skip

    async def press() -> None:
        await started(backend)
        os.write(keyboard, b"a")

    pressing = asyncio.ensure_future(press())
    text = await answerer.answer([Message("user", "What is 6 * 7?")], keys=True)
    await pressing
    assert text == "The answer is 42." and len(err.getvalue().split()) < 1000  # its 2,000 reasoning steps were cut
    assert "[answering now]" in err.getvalue() and "keys while it reasons" in err.getvalue()


async def test_ponder_chat_url_steers_the_servers_run_by_keys(server: Callable[..., Any], keyboard: int) -> None:
    """`ponder chat --url`: the keys reach the server's control endpoint, naming the run
    by the id its stream began with."""
    import io
    import os

    from ponder.backends.remote import RemoteBackend
    from ponder.config import ModeSettings
    from ponder.terminal import Answerer, ModeChoice
    from ponder.types import Message, SamplingParams

    backend = ScriptedBackend(respond=thinker(), delay=0.01)
    client, _ = server(backend)
    url = str(client().base_url)
    choice = ModeChoice(mode="thinking")
    remote = RemoteBackend(url, "scripted", extra_body=choice.wire_fields(), progress=True)
    out, err = io.StringIO(), io.StringIO()
    answerer = Answerer(remote, "scripted", SamplingParams(), ModeSettings(), choice, local_modes=False,
                        out=out, err=err)  # fmt: skip

    async def press() -> None:  # (the id may not have reached the terminal yet: the key waits for it)
        await started(backend)
        os.write(keyboard, b"a")

    pressing = asyncio.ensure_future(press())
    try:
        text = await answerer.answer([Message("user", "What is 6 * 7?")], keys=True)
    finally:
        await remote.close()
    await pressing
    assert text == "The answer is 42.", err.getvalue()[-300:]
    assert "[answering now]" in err.getvalue() and "not taken" not in err.getvalue()
    assert len(err.getvalue().split()) < 1000  # the server's 2,000 reasoning steps were cut


async def test_a_control_for_a_run_that_ended_is_reported_not_raised(server: Callable[..., Any]) -> None:
    """A key pressed before the stream named its run waits for the name; pressed as the
    run ends, the server answers 404 and the terminal says so. One never named (not a
    Ponder server) is reported at the end."""
    import io

    from ponder.backends.remote import RemoteBackend
    from ponder.terminal import RemoteSteer

    client, _ = server(ScriptedBackend(respond=thinker()))
    remote = RemoteBackend(str(client().base_url), "scripted", progress=True)
    err = io.StringIO()
    steer = RemoteSteer(remote, err)
    steer.answer_now()  # before the name
    steer.named("chatcmpl-gone")
    await steer.sent()
    said = err.getvalue()
    assert "[answer_now not taken: " in said and "No running request 'chatcmpl-gone'" in said
    unsaid = io.StringIO()
    unnamed = RemoteSteer(remote, unsaid)
    unnamed.think_longer(512)
    await unnamed.sent()
    await remote.close()
    assert "[think_longer not taken: the server named no run to steer" in unsaid.getvalue()
