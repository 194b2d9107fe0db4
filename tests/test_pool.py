"""The replica pool's routing, failover and health, on scripted replicas (the real
engines are in test_e2e_pool)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from ponder.backends.pool import PoolBackend
from ponder.backends.scripted import ScriptedBackend
from ponder.config import load_settings
from ponder.errors import ConfigError, InvalidRequest, UpstreamError
from ponder.types import ChatRequest, Event, Message, collect


def ask(first: str, *later: str) -> ChatRequest:
    turns = [Message("user", first)]
    for text in later:
        turns += [Message("assistant", "ok"), Message("user", text)]
    return ChatRequest("m", tuple(turns))


class Flaky(ScriptedBackend):
    """Answers, but can be made to fail its health check, or to break mid-answer."""

    def __init__(self, *replies: object, up: bool = True, break_after: int | None = None, delay: float = 0.0):
        super().__init__(*replies, delay=delay)  # type: ignore[arg-type]
        self.up = up
        self.break_after = break_after

    async def healthy(self, timeout: float = 5.0) -> bool:
        return self.up

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        n = 0
        async for event in super().stream(request):
            if self.break_after is not None and n == self.break_after:
                raise UpstreamError("the engine went away mid-answer")
            n += 1
            yield event


async def test_concurrent_requests_spread_across_replicas() -> None:
    a, b = ScriptedBackend(delay=0.02), ScriptedBackend(delay=0.02)
    pool = PoolBackend([a, b], health_interval_s=3600)
    texts = await asyncio.gather(*(collect(pool.stream(ask("same question, words to stream"))) for _ in range(4)))
    assert all(t.text.startswith("same question") for t in texts)
    assert (len(a.requests), len(b.requests)) == (2, 2)  # the same conversation, yet spread: affinity breaks ties
    assert [r["served"] for r in pool.status()] == [2, 2]
    await pool.close()


async def test_a_conversation_stays_on_its_replica_and_others_spread() -> None:
    replicas = [ScriptedBackend(), ScriptedBackend(), ScriptedBackend()]
    pool = PoolBackend(replicas, health_interval_s=3600)
    for turn in range(4):  # one after another: each follow-up finds its prefix where it was
        await collect(pool.stream(ask("plan a trip", *["and then?"] * turn)))
    assert sorted(len(r.requests) for r in replicas) == [0, 0, 4]
    for i in range(30):
        await collect(pool.stream(ask(f"conversation {i}")))
    assert all(len(r.requests) >= 5 for r in replicas)  # different conversations land all over
    await pool.close()


async def test_a_replica_that_fails_before_answering_is_skipped_and_marked_down() -> None:
    pool = PoolBackend([Flaky(), Flaky()], health_interval_s=3600)
    request = ask("hello")
    broken = pool.route(request)  # the conversation's own replica
    assert broken is not None
    broken.backend.enqueue(UpstreamError("connection refused"))  # type: ignore[attr-defined]
    other = next(r for r in pool.replicas if r is not broken)
    assert (await collect(pool.stream(request))).text.startswith("hello")
    assert (broken.up, broken.failures, other.up, other.served) == (False, 1, True, 1)
    await collect(pool.stream(request))
    assert other.served == 2  # the down replica gets nothing while another is up
    await pool.close()


async def test_every_replica_failing_is_one_clean_error() -> None:
    pool = PoolBackend([Flaky(UpstreamError("refused")), Flaky(UpstreamError("refused"))], health_interval_s=3600)
    with pytest.raises(UpstreamError, match="every replica failed"):
        await collect(pool.stream(ask("hello")))
    assert pool.busy == 0
    await pool.close()


async def test_after_the_first_token_a_failure_is_the_clients_and_never_retried() -> None:
    a, b = Flaky(break_after=2), Flaky(break_after=2)
    pool = PoolBackend([a, b], health_interval_s=3600)
    got: list[Event] = []
    with pytest.raises(UpstreamError, match="mid-answer"):
        async for event in pool.stream(ask("one two three four five")):
            got.append(event)
    assert len(got) == 2 and len(a.requests) + len(b.requests) == 1
    assert pool.busy == 0
    await pool.close()


async def test_a_request_error_is_not_retried() -> None:
    a, b = Flaky(InvalidRequest("bad")), Flaky(InvalidRequest("bad"))
    pool = PoolBackend([a, b], health_interval_s=3600)
    with pytest.raises(InvalidRequest):
        await collect(pool.stream(ask("hello")))
    assert len(a.requests) + len(b.requests) == 1 and all(r.up for r in pool.replicas)
    await pool.close()


async def test_health_checks_take_a_replica_out_and_bring_it_back() -> None:
    a, b = Flaky(), Flaky()
    pool = PoolBackend([a, b], health_interval_s=0.02)
    await pool.load()
    a.up = False
    await asyncio.sleep(0.1)
    assert [r.up for r in pool.replicas] == [False, True]
    for i in range(6):
        await collect(pool.stream(ask(f"question {i}")))
    assert len(a.requests) == 0 and len(b.requests) == 6
    a.up = True
    await asyncio.sleep(0.1)
    assert all(r.up for r in pool.replicas)
    for i in range(20):
        await collect(pool.stream(ask(f"other question {i}")))
    assert len(a.requests) > 0  # rejoined
    await pool.close()


async def test_when_every_replica_is_down_one_is_still_tried() -> None:
    a = Flaky(up=False)
    pool = PoolBackend([a], health_interval_s=3600)
    pool.replicas[0].up = False
    assert (await collect(pool.stream(ask("anyone?")))).text.startswith("anyone?")
    assert pool.replicas[0].up  # it answered: up again before the next health check
    await pool.close()


def test_replica_urls_are_shown_without_credentials() -> None:
    from ponder.backends.remote import RemoteBackend

    pool = PoolBackend([RemoteBackend("http://user:secret@10.0.0.5:8000/v1"), RemoteBackend("http://h:8000/v1")], 3600)
    assert [r["url"] for r in pool.status()] == ["http://10.0.0.5:8000/v1", "http://h:8000/v1"]
    assert pool.replicas[0].backend.where == "http://10.0.0.5:8000/v1"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [
        'base_urls = "http://a:8000/v1"',
        "base_urls = []",
        'base_urls = ["http://a/v1"]\nhealth_interval_s = 0',
        'base_url = "http://a/v1"\ntimeout_s = -1',
        'base_url = "http://a/v1"\nmax_concurrency = 0',
    ],
)
def test_pool_settings_are_checked(tmp_path: Path, body: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[models.p]\nbackend = "remote"\n{body}\n')
    with pytest.raises(ConfigError, match=r"\[models\.p\]"):
        load_settings(config, env={})


async def test_a_health_check_that_raises_marks_the_replica_down_and_the_loop_goes_on() -> None:
    class Broken(Flaky):
        async def healthy(self, timeout: float = 5.0) -> bool:
            raise RuntimeError("bad URL")

    pool = PoolBackend([Broken(), Flaky()], health_interval_s=0.02)
    await pool.load()
    await asyncio.sleep(0.1)
    assert [r.up for r in pool.replicas] == [False, True] and pool._health is not None and not pool._health.done()
    await pool.close()
