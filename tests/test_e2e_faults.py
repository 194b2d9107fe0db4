"""Faults, on real servers on loopback: `ponder serve` killed with SIGKILL mid-stream
and restarted (nothing stored is lost or corrupt), stopped with SIGTERM (the stream
in flight finishes), its remote engine killed mid-stream (a clean error, the server
stays up), and clients that leave (every mode's generation stops, every
Contemplating agent's included)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BIN, TINY, child_pid, free_port, llama_server, ponder_env, private_home, start, stop

pytestmark = pytest.mark.e2e
LONG = "Write a very long story about a dragon."
# The tiny model writes on to any max_tokens with these: past its end (ignore_eos), and
# sampled, since greedy it soon repeats itself and the modes' loop guard ends the answer.
ON_AND_ON = {"ignore_eos": True, "temperature": 1.0, "seed": 1}


def serve_tiny(home: Path, log: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [str(BIN / "ponder"), "serve", "--model", TINY, "--port", str(port), "--log-level", "warning"]
    proc = start(cmd, ponder_env(home, PONDER_N_CTX="4096", **env), f"http://127.0.0.1:{port}/health", log)
    return proc, f"http://127.0.0.1:{port}"


def sse_data(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: {"):
            yield json.loads(line[len("data: ") :])


# --- SIGKILL mid-stream, then a restart ---------------------------------------------------


def test_sigkill_mid_stream_then_restart_loses_nothing(
    data_dir: Path, tiny_model: Path, voice_models: Any, tmp_path: Path
) -> None:
    home = private_home(data_dir, tmp_path / "home")
    proc, url = serve_tiny(home, tmp_path / "serve-1.log")
    try:
        # 1. Completed work: stored responses (one a follow-up of another) and a chat.
        stored = {}
        previous = None
        for i in range(3):
            body = {"model": TINY, "input": f"Say the number {i}.", "max_output_tokens": 8, "temperature": 0,
                    "store": True, "previous_response_id": previous}  # fmt: skip
            r = httpx.post(f"{url}/v1/responses", json=body, timeout=60).json()
            stored[r["id"]] = r
            previous = r["id"]
        conv = httpx.post(f"{url}/app/api/conversations", json={"title": "kept"}).json()

        # 2. Writes that keep coming while the server dies: each acknowledged one must survive.
        acked: list[int] = []
        stop_writing = threading.Event()

        def write() -> None:
            version = 0
            while not stop_writing.is_set():
                version += 1
                body = {"messages": [{"role": "user", "content": f"version {version}"}]}
                try:
                    r = httpx.put(f"{url}/app/api/conversations/{conv['id']}", json=body, timeout=5)
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    acked.append(version)

        writer = threading.Thread(target=write)
        writer.start()

        # 3. A long streamed answer, asked to be stored, killed mid-stream.
        body = {"model": TINY, "input": LONG, "max_output_tokens": 1500, "temperature": 0, "stream": True,
                "store": True}  # fmt: skip
        with httpx.stream("POST", f"{url}/v1/responses", json=body, timeout=60) as r:
            events = sse_data(r.iter_lines())
            in_flight = next(events)["response"]["id"]
            deltas = 0
            for event in events:
                deltas += event["type"] == "response.output_text.delta"
                if deltas == 20:
                    break
            assert deltas == 20, "killed mid-answer, not after it"
            assert acked, "the writer made progress before the kill"
            os.kill(child_pid(proc), signal.SIGKILL)
        writer.join(10)
        stop_writing.set()
        assert not writer.is_alive()
    finally:
        stop(proc)

    # 4. The file is whole, and a restarted server has everything that was acknowledged.
    with sqlite3.connect(home / "ponder.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    proc, url = serve_tiny(home, tmp_path / "serve-2.log")
    try:
        for rid, body in stored.items():
            assert httpx.get(f"{url}/v1/responses/{rid}").json() == body
        follow = {"model": TINY, "input": "And the next?", "max_output_tokens": 4, "previous_response_id": previous}
        assert httpx.post(f"{url}/v1/responses", json=follow, timeout=60).status_code == 200
        assert httpx.get(f"{url}/v1/responses/{in_flight}").status_code == 404  # never half-stored
        kept = httpx.get(f"{url}/app/api/conversations/{conv['id']}").json()
        version = int(kept["messages"][0]["content"].split()[-1])
        assert version >= acked[-1]  # the last acknowledged write, or one in flight that committed
    finally:
        stop(proc)


# --- SIGTERM: the stream in flight finishes ------------------------------------------------


def test_sigterm_drains_the_stream_in_flight(
    data_dir: Path, tiny_model: Path, voice_models: Any, tmp_path: Path
) -> None:
    home = private_home(data_dir, tmp_path / "home")
    proc, url = serve_tiny(home, tmp_path / "serve.log")
    try:
        body = {"model": TINY, "messages": [{"role": "user", "content": LONG}], "max_tokens": 200,
                **ON_AND_ON, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
        pid = child_pid(proc)
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            first = [next(lines) for _ in range(4)]
            os.kill(pid, signal.SIGTERM)
            rest = list(lines)
        chunks = list(sse_data(iter(first + rest)))
        assert rest[-2:] == ["data: [DONE]", ""] or rest[-1] == "data: [DONE]"
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1]
        assert (finish, chunks[-1]["usage"]["completion_tokens"]) == ("length", 200)  # the whole answer, not cut
        # The server then ends by the signal it was sent (uvicorn re-raises it after its
        # graceful shutdown), and `timeout`, which `start` wraps it in, does the same.
        assert proc.wait(30) == -signal.SIGTERM, (tmp_path / "serve.log").read_text()[-2000:]
        assert "Traceback" not in (tmp_path / "serve.log").read_text()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=2)
    finally:
        stop(proc)


# --- the remote engine killed mid-stream ------------------------------------------------------


def test_engine_killed_mid_stream_is_a_clean_error_and_the_server_stays_up(
    data_dir: Path, tiny_model: Path, voice_models: Any, tmp_path: Path
) -> None:
    port = free_port()
    engine = llama_server(tiny_model, port, tmp_path / "engine.log")
    config = tmp_path / "config.toml"
    config.write_text(f'[models.upstream]\nbackend = "remote"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
                      'model = "smollm2"\n')  # fmt: skip
    home = private_home(data_dir, tmp_path / "home")
    ponder_port = free_port()
    cmd = [str(BIN / "ponder"), "serve", "--model", TINY, "--port", str(ponder_port), "--log-level", "warning"]
    proc = start(cmd, ponder_env(home, PONDER_CONFIG=str(config)), f"http://127.0.0.1:{ponder_port}/health",
                 tmp_path / "serve.log")  # fmt: skip
    url = f"http://127.0.0.1:{ponder_port}"
    try:
        body = {"model": "upstream", "messages": [{"role": "user", "content": LONG}], "max_tokens": 1500,
                "stream": True}  # fmt: skip
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            got = [next(lines) for _ in range(8)]
            os.kill(child_pid(engine), signal.SIGKILL)
            got += list(lines)
        chunks = list(sse_data(iter(got)))
        assert any(c.get("choices") and c["choices"][0]["delta"].get("content") for c in chunks)
        error = chunks[-1]["error"]
        assert error["type"] == "upstream_error" and error["message"], error
        assert got[-1] == "data: [DONE]" or got[-2] == "data: [DONE]"

        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        r2 = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False}, timeout=30)
        assert r2.status_code == 502 and set(r2.json()["error"]) == {"message", "type", "param", "code"}
        ok = {"model": TINY, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        assert httpx.post(f"{url}/v1/chat/completions", json=ok, timeout=60).status_code == 200
    finally:
        stop(proc)
        stop(engine)


# --- clients that leave -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("mode", ["instant", "thinking", "contemplating"])
def test_a_client_that_leaves_stops_every_generation(ponder_server: str, mode: str, stream: bool) -> None:
    """The engine's running and queued jobs (`busy`: for Contemplating, every agent's)
    drop to none soon after the client goes, long before the work would have ended."""
    health = ponder_server.removesuffix("/v1") + "/health"
    body = {"model": TINY, "messages": [{"role": "user", "content": LONG}], "max_tokens": 2000, "stream": stream,
            **ON_AND_ON, "mode": mode, "thinking_budget": 1500, "thought_compression": False,
            "contemplation": {"agents": 3, "agent_budget": 1500}}  # fmt: skip
    if stream:
        with httpx.stream("POST", f"{ponder_server}/chat/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            for _ in range(6):
                next(lines)
            assert _busy(health) >= 1
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{ponder_server}/chat/completions", json=body, timeout=httpx.Timeout(60, read=2.0))
    left = time.monotonic()
    while _busy(health) and time.monotonic() - left < 15:  # the work itself would take minutes
        time.sleep(0.05)
    assert _busy(health) == 0, f"{mode}: the engine still works for a client that left"


def _busy(health: str) -> int:
    return int(httpx.get(health).json()["loaded"][TINY]["busy"])
