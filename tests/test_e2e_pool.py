"""A pool of two real engines behind one `ponder serve`: two llama-cpp-python servers
(`python -m llama_cpp.server`) on the tiny model, on loopback. Traffic spreads,
Contemplating's agents run on both, and a replica killed mid-run is routed around,
marked down, and rejoins when it is back."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BIN, child_pid, free_port, llama_server, ponder_env, private_home, start, stop

pytestmark = pytest.mark.e2e


@dataclass
class Pool:
    url: str  # Ponder's root
    ports: list[int]  # the two engines'
    engines: dict[int, subprocess.Popen[bytes]]  # by port
    logs: Path
    model: Path


@pytest.fixture(scope="module")
def pool(
    tiny_model: Path, data_dir: Path, voice_models: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pool]:
    logs = tmp_path_factory.mktemp("pool")
    ports = [free_port(), free_port()]
    engines = {p: llama_server(tiny_model, p, logs / f"engine-{p}.log", threads=1) for p in ports}
    urls = ", ".join(f'"http://127.0.0.1:{p}/v1"' for p in ports)
    config = logs / "config.toml"
    config.write_text(f'[models.tiny-pool]\nbackend = "remote"\nbase_urls = [{urls}]\nmodel = "smollm2"\n'
                      "health_interval_s = 0.5\n")  # fmt: skip
    home = private_home(data_dir, logs / "home")
    port = free_port()
    cmd = [str(BIN / "ponder"), "serve", "--model", "tiny-pool", "--port", str(port), "--log-level", "warning"]
    proc = start(cmd, ponder_env(home, PONDER_CONFIG=str(config)), f"http://127.0.0.1:{port}/health",
                 logs / "serve.log")  # fmt: skip
    yield Pool(f"http://127.0.0.1:{port}", ports, engines, logs, tiny_model)
    stop(proc)
    for e in engines.values():
        stop(e)


def replicas(url: str) -> dict[int, dict[str, Any]]:
    status = httpx.get(f"{url}/health").json()["loaded"]["tiny-pool"]["replicas"]
    return {int(r["url"].split(":")[2].split("/")[0]): r for r in status}


def ask(url: str, question: str, **extra: Any) -> httpx.Response:
    body = {"model": "tiny-pool", "messages": [{"role": "user", "content": question}], "max_tokens": 8,
            "temperature": 0, **extra}  # fmt: skip
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def test_traffic_spreads_across_the_replicas(pool: Pool) -> None:
    url, ports = pool.url, pool.ports
    before = replicas(url)
    with ThreadPoolExecutor(8) as workers:
        answers = list(workers.map(lambda i: ask(url, f"Name a colour, please ({i})."), range(8)))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    after = replicas(url)
    served = [after[p]["served"] - before[p]["served"] for p in ports]
    assert sum(served) == 8 and min(served) >= 2, served


def test_contemplating_agents_run_on_both_replicas(pool: Pool) -> None:
    url, ports = pool.url, pool.ports
    before = replicas(url)
    r = ask(url, "What is 6 times 7?", mode="contemplating", max_tokens=64,
            contemplation={"agents": 4, "agent_budget": 24, "strategy": "attempts"})  # fmt: skip
    assert r.status_code == 200, r.text
    after = replicas(url)
    served = [after[p]["served"] - before[p]["served"] for p in ports]
    # The first wave's two agents start at once, so each replica runs one; whether a
    # second wave follows is the model's doing (its agents may agree), not the pool's.
    assert sum(served) >= 2 and min(served) >= 1, served


def test_a_replica_killed_mid_run_is_routed_around_marked_down_and_rejoins(pool: Pool) -> None:
    url, engines = pool.url, pool.engines
    victim, survivor = pool.ports
    for i in range(3):
        assert ask(url, f"Warm up {i}.").status_code == 200
    while replicas(url)[victim]["outstanding"]:  # kill it between requests: none of its answers is cut
        time.sleep(0.05)
    os.kill(child_pid(engines[victim]), signal.SIGKILL)
    stop(engines[victim])
    with ThreadPoolExecutor(4) as workers:  # the run goes on: every request succeeds
        answers = list(workers.map(lambda i: ask(url, f"Name an animal ({i})."), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    deadline = time.monotonic() + 10
    while replicas(url)[victim]["up"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not replicas(url)[victim]["up"], "health marks it down"
    served = replicas(url)[survivor]["served"]
    assert ask(url, "One more?").status_code == 200
    assert replicas(url)[survivor]["served"] == served + 1

    engines[victim] = llama_server(pool.model, victim, pool.logs / "engine-restarted.log", threads=1)
    deadline = time.monotonic() + 15
    while not replicas(url)[victim]["up"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert replicas(url)[victim]["up"], "it rejoins after a restart"
    before = replicas(url)[victim]["served"]
    with ThreadPoolExecutor(4) as workers:
        list(workers.map(lambda i: ask(url, f"Name a fruit ({i})."), range(8)))
    assert replicas(url)[victim]["served"] > before
