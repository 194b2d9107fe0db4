"""Scale-out: what the replica pool costs per request, and what a second replica buys.

    .venv/bin/python bench/scaleout.py [--requests 200] [--workload 8] [--json bench/results/scaleout.json]

1. Routing overhead. One fast engine (a `ponder serve` of the scripted echo model,
   an OpenAI-compatible engine that costs almost nothing per request) behind two
   Ponders: one names it as a plain remote model (`base_url`), one as a pool of one
   replica (`base_urls`). The same small requests alternate between them, one at a
   time; the difference of the medians is what routing adds per request (health
   state, least-outstanding choice, affinity hash, failover bookkeeping). The pure
   `route()` call is timed in-process too.
2. Throughput. A fixed Contemplating workload (`--workload` requests, 4 attempts
   each, 2 at a time) through a Ponder whose pool has 1 replica, then 2: each replica
   a `python -m llama_cpp.server` on the tiny model with one thread. Reported as
   requests per minute and their ratio. Both runs use the same requests and seeds.

Prints progress as it goes, a table at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import free_port, llama_server, ponder_env, start, stop  # noqa: E402

from ponder.backends.pool import PoolBackend  # noqa: E402
from ponder.backends.scripted import ScriptedBackend  # noqa: E402
from ponder.config import load_settings  # noqa: E402
from ponder.types import ChatRequest, Message  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def ponder(home: Path, model: str, config: str, name: str) -> Iterator[str]:
    """A `ponder serve` of `model` with `config`; yields its root URL."""
    home.mkdir(parents=True, exist_ok=True)
    for stale in home.glob("ponder.db*"):
        stale.unlink()
    (home / "config.toml").write_text(config + '[media]\nspeech_to_text = ""\ntext_to_speech = ""\n')
    port = free_port()
    cmd = [sys.executable, "-m", "ponder.cli", "serve", "--model", model, "--port", str(port), "--log-level",
           "warning"]  # fmt: skip
    env = ponder_env(home, PONDER_CONFIG=str(home / "config.toml"), PONDER_MAX_QUEUE="256")
    proc = start(cmd, env, f"http://127.0.0.1:{port}/health", home / f"{name}.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextmanager
def llama_servers(model: Path, n: int, logs: Path) -> Iterator[list[str]]:
    procs, urls = [], []
    try:
        for i in range(n):
            port = free_port()
            procs.append(llama_server(model, port, logs / f"engine-{i}.log", threads=1, n_ctx=4096))
            urls.append(f"http://127.0.0.1:{port}/v1")
        yield urls
    finally:
        for p in procs:
            stop(p)


# --- 1. routing overhead ----------------------------------------------------------------


def routing_overhead(work: Path, requests: int) -> dict[str, Any]:
    body = {"model": "up", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 4, "mode": "instant"}
    with ponder(work / "engine", "echo", '[models.echo]\nbackend = "scripted"\n', "engine") as engine:
        plain = f'[models.up]\nbackend = "remote"\nbase_url = "{engine}/v1"\nmodel = "echo"\n'
        pooled = f'[models.up]\nbackend = "remote"\nbase_urls = ["{engine}/v1"]\nmodel = "echo"\n'
        with ponder(work / "plain", "up", plain, "plain") as a, ponder(work / "pooled", "up", pooled, "pooled") as b:
            times: dict[str, list[float]] = {"plain": [], "pooled": []}
            with httpx.Client(timeout=60) as http:
                for url in (a, b):  # warm both: connections, the engine's first request
                    for _ in range(5):
                        http.post(f"{url}/v1/chat/completions", json=body).raise_for_status()
                for i in range(requests):
                    for name, url in (("plain", a), ("pooled", b)) if i % 2 else (("pooled", b), ("plain", a)):
                        t0 = time.perf_counter()
                        http.post(f"{url}/v1/chat/completions", json=body).raise_for_status()
                        times[name].append(time.perf_counter() - t0)
                    if (i + 1) % max(1, requests // 5) == 0:
                        log(f"  routing: {i + 1}/{requests} request pairs")
    plain_ms = statistics.median(times["plain"]) * 1000
    pooled_ms = statistics.median(times["pooled"]) * 1000
    return {"requests": requests, "plain_median_ms": plain_ms, "pooled_median_ms": pooled_ms,
            "overhead_ms": pooled_ms - plain_ms, "route_call_us": _route_call_us()}  # fmt: skip


def _route_call_us() -> float:
    """The routing decision alone, in-process: 4 replicas, a 6-turn conversation."""
    pool = PoolBackend([ScriptedBackend() for _ in range(4)], health_interval_s=3600)
    turns = tuple(Message("user" if i % 2 == 0 else "assistant", f"turn {i} " * 40) for i in range(6))
    request = ChatRequest("m", turns)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        pool.route(request)
    return (time.perf_counter() - t0) / n * 1e6


# --- 2. throughput on 1 and 2 replicas ------------------------------------------------------


async def contemplate_workload(url: str, n: int) -> float:
    """Seconds for `n` Contemplating requests, 2 at a time."""
    limit = asyncio.Semaphore(2)
    done = 0

    async def one(http: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        body = {"model": "pool", "messages": [{"role": "user", "content": f"What is {i + 12} times {i + 3}?"}],
                "mode": "contemplating", "max_tokens": 48, "seed": i, "temperature": 0.7,
                "contemplation": {"agents": 4, "agent_budget": 48, "strategy": "attempts"}}  # fmt: skip
        async with limit:
            r = await http.post(f"{url}/v1/chat/completions", json=body)
            r.raise_for_status()
        done += 1
        log(f"  contemplating: {done}/{n}")

    async with httpx.AsyncClient(timeout=600) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(http, i) for i in range(n)))
        return time.perf_counter() - t0


def throughput(work: Path, workload: int) -> dict[str, Any]:
    model = load_settings(env={}).models_dir / "smollm2-135m-instruct-q4_1.gguf"
    out: dict[str, Any] = {"workload": workload}
    with llama_servers(model, 2, work) as engines:
        for n in (1, 2):
            urls = ", ".join(f'"{u}"' for u in engines[:n])
            config = f'[models.pool]\nbackend = "remote"\nbase_urls = [{urls}]\nmodel = "smollm2"\n'
            with ponder(work / f"pool{n}", "pool", config, f"pool{n}") as url:
                log(f"throughput: {n} replica(s)")
                seconds = asyncio.run(contemplate_workload(url, workload))
                status = httpx.get(f"{url}/health").json()["loaded"]["pool"]["replicas"]
            out[f"replicas_{n}"] = {"seconds": seconds, "requests_per_min": workload / seconds * 60,
                                    "served_per_replica": [r["served"] for r in status]}  # fmt: skip
    out["ratio_2_over_1"] = out["replicas_2"]["requests_per_min"] / out["replicas_1"]["requests_per_min"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=200, help="request pairs for the routing overhead")
    p.add_argument("--workload", type=int, default=8, help="Contemplating requests per replica count")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    settings = load_settings(env={})
    work = settings.cache_dir / "bench-scaleout"
    for sub in ("engine", "plain", "pooled", "pool1", "pool2"):
        (work / sub).mkdir(parents=True, exist_ok=True)
        if not (work / sub / "models").exists():
            (work / sub / "models").symlink_to(settings.models_dir)
    log("routing overhead: plain remote vs a pool of one, alternating")
    routing = routing_overhead(work, args.requests)
    result = {"routing": routing, "throughput": throughput(work, args.workload)}
    t = result["throughput"]
    print(
        f"routing: plain {routing['plain_median_ms']:.2f} ms, pooled {routing['pooled_median_ms']:.2f} ms, "
        f"overhead {routing['overhead_ms']:+.2f} ms per request; route() alone {routing['route_call_us']:.1f} µs"
    )
    for n in (1, 2):
        r = t[f"replicas_{n}"]
        print(
            f"contemplating x{args.workload} on {n} replica(s): {r['seconds']:.1f} s, "
            f"{r['requests_per_min']:.2f} req/min, served per replica {r['served_per_replica']}"
        )
    print(f"ratio 2 replicas / 1: {t['ratio_2_over_1']:.2f}x")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
