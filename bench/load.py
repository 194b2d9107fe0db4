"""Load: many concurrent streaming clients against a real server on loopback.

    .venv/bin/python bench/load.py [--json bench/results/load.json] [--phases all]

Each phase starts a server, fires its clients at once (each a streamed chat
completion over its own connection) and checks every answer against its request:
- tiny: the real SmolLM2-135M (4 sequences batched), 16 clients;
- tiny-overload: the same 16 with a queue of 4: the rest get 429 with Retry-After,
  wait as told, and try again;
- scripted: the scripted backend (it echoes the question, one word per token,
  5 ms a word), 200 clients, a queue big enough for all;
- scripted-overload: the same 200 clients at an engine that takes 16 at a time and
  queues 32.

A response matches its request when
- scripted: its text is the client's own question (which carries the client's
  number and a random nonce), whole and alone;
- tiny: its usage is the request's own: client i's question is longer than client
  i-1's, so prompt_tokens must rise with i (a swapped answer breaks the order), and
  completion_tokens stays within client i's own max_tokens (24 + 2i), "length"
  exactly when it reaches it; every stream ends with its usage and [DONE].
Time to first token is from a client's first try (queue waits and retries
included) to its first text delta. Prints progress as it goes, a table at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import TINY, free_port, ponder_env, start, stop  # noqa: E402

from ponder.config import load_settings  # noqa: E402

FILLER = " ".join(f"w{i}" for i in range(60))  # 60 more words: each scripted answer streams for ~0.3 s


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Phase:
    name: str
    model: str  # "echo" (scripted) or the tiny model
    clients: int
    running: int  # the engine's places (scripted: max_running; tiny: n_seq_max)
    queue: int


PHASES = [
    Phase("tiny", TINY, 16, 4, 32),
    Phase("tiny-overload", TINY, 16, 4, 4),
    Phase("scripted", "echo", 200, 64, 256),
    Phase("scripted-overload", "echo", 200, 16, 32),
]


@dataclass
class Outcome:
    ok: bool
    why: str = ""
    ttft_s: float = math.nan
    total_s: float = math.nan
    tokens: int = 0
    refused: int = 0  # 429s before it got in
    prompt_tokens: int = 0
    reconnects: int = 0  # tries that got no answer at all (a closed kept-alive connection)


@dataclass
class Report:
    phase: str
    clients: int
    running: int
    queue: int
    matched: int
    lost_or_mixed: int
    refused_429: int
    clients_refused: int
    reconnects: int
    ttft_p50_s: float
    ttft_p99_s: float
    wall_s: float
    tokens_per_s: float
    failures: list[str] = field(default_factory=list)


# --- one client ---------------------------------------------------------------------


def _request(phase: Phase, i: int, nonce: str) -> tuple[dict[str, Any], Any]:
    """The request of client `i`, and what its answer must be."""
    if phase.model == "echo":
        question = f"client {i} nonce {nonce} {FILLER}"
        body = {"model": "echo", "messages": [{"role": "user", "content": question}], "stream": True,
                "mode": "instant", "stream_options": {"include_usage": True}}  # fmt: skip
        return body, question
    # A question of its own length and its own max_tokens: (prompt, completion) tokens are a signature.
    question = "Tell me a long story about " + "a dragon and " * (i + 1) + "a knight."
    body = {
        "model": TINY,
        "messages": [{"role": "user", "content": question}],
        "stream": True,
        "mode": "instant",
        "temperature": 0.8,
        "seed": i,
        "max_tokens": 24 + 2 * i,
        "stream_options": {"include_usage": True},
    }
    return body, 24 + 2 * i


def _events(lines: list[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: {"):
            yield json.loads(line[len("data: ") :])


async def one_client(http: httpx.AsyncClient, url: str, phase: Phase, i: int, nonce: str) -> Outcome:
    body, expected = _request(phase, i, nonce)
    t0 = time.perf_counter()
    refused = reconnects = 0
    while True:
        try:
            r = await http.send(http.build_request("POST", f"{url}/v1/chat/completions", json=body), stream=True)
        except (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as e:
            # No answer at all: a kept-alive connection the server closed as it went idle (its
            # keep-alive timeout) while this client slept on a Retry-After. Clients retry that
            # (the OpenAI SDK does); it is counted, and the answer is still checked.
            reconnects += 1
            if reconnects > 3:
                return Outcome(False, f"client {i}: {type(e).__name__} {reconnects} times", refused=refused)
            continue
        try:
            if r.status_code == 429:
                refused += 1
                await r.aread()
                await asyncio.sleep(float(r.headers["retry-after"]))
                continue
            if r.status_code != 200:
                return Outcome(False, f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
            lines: list[str] = []
            ttft = math.nan
            async for line in r.aiter_lines():
                if math.isnan(ttft) and '"content":"' in line:
                    ttft = time.perf_counter() - t0
                lines.append(line)
        finally:
            await r.aclose()
        break
    total = time.perf_counter() - t0
    if "data: [DONE]" not in lines:
        return Outcome(False, "the stream ended without [DONE]", refused=refused)
    chunks = list(_events(lines))
    if any("error" in c for c in chunks):
        return Outcome(False, f"in-band error: {chunks[-1]}", refused=refused)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    usage = chunks[-1].get("usage") or {}
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1]
    tokens = int(usage.get("completion_tokens", 0))
    out = Outcome(True, ttft_s=ttft, total_s=total, tokens=tokens, refused=refused,
                  prompt_tokens=int(usage.get("prompt_tokens", 0)), reconnects=reconnects)  # fmt: skip
    if phase.model == "echo":
        if not text.startswith(str(expected)) or text.count("nonce") != 1:
            return Outcome(False, f"client {i} got someone else's answer: {text[:60]!r}", refused=refused)
        return out
    if not 0 < tokens <= expected or (finish == "length") != (tokens == expected) or not text.strip():
        return Outcome(False, f"client {i}: {tokens} tokens, finish {finish}, max {expected}", refused=refused)
    return out


# --- a phase --------------------------------------------------------------------------


def serve(phase: Phase, home: Path, log_path: Path) -> tuple[Any, str]:
    port = free_port()
    env = {"PONDER_MAX_QUEUE": str(phase.queue)}
    if phase.model == "echo":
        (home / "config.toml").write_text('[models.echo]\nbackend = "scripted"\ndelay_s = 0.005\n'
                                          '[media]\nspeech_to_text = ""\ntext_to_speech = ""\n')  # fmt: skip
        env |= {"PONDER_CONFIG": str(home / "config.toml"), "PONDER_MAX_RUNNING": str(phase.running)}
    else:
        env |= {"PONDER_N_SEQ": str(phase.running), "PONDER_N_CTX": str(1024 * phase.running)}
    cmd = [sys.executable, "-m", "ponder.cli", "serve", "--model", phase.model, "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    proc = start(cmd, ponder_env(home, **env), f"http://127.0.0.1:{port}/health", log_path)
    return proc, f"http://127.0.0.1:{port}"


async def run_phase(phase: Phase, url: str) -> Report:
    nonce = secrets.token_hex(4)
    limits = httpx.Limits(max_connections=phase.clients + 8, max_keepalive_connections=phase.clients + 8)
    done = 0

    async def tracked(http: httpx.AsyncClient, i: int) -> Outcome:
        nonlocal done
        try:
            result = await one_client(http, url, phase, i, nonce)
        except httpx.HTTPError as e:
            result = Outcome(False, f"client {i}: {type(e).__name__}: {e}")
        done += 1
        if done % max(1, phase.clients // 10) == 0 or done == phase.clients:
            log(f"  {phase.name}: {done}/{phase.clients} clients done")
        return result

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600, connect=60)) as http:
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(*(tracked(http, i) for i in range(phase.clients)))
        wall = time.perf_counter() - t0
    failures = [o.why for o in outcomes if not o.ok]
    if phase.model != "echo":  # prompt_tokens must rise with the client's number
        for i in range(1, len(outcomes)):
            if outcomes[i].ok and outcomes[i - 1].ok and outcomes[i].prompt_tokens <= outcomes[i - 1].prompt_tokens:
                outcomes[i].ok = outcomes[i - 1].ok = False
                failures.append(f"clients {i - 1} and {i}: prompt_tokens out of order (a swapped answer)")
    good = [o for o in outcomes if o.ok]
    ttfts = sorted(o.ttft_s for o in good)
    return Report(
        phase.name, phase.clients, phase.running, phase.queue, matched=len(good),
        lost_or_mixed=phase.clients - len(good),
        refused_429=sum(o.refused for o in outcomes),
        clients_refused=sum(1 for o in outcomes if o.refused),
        reconnects=sum(o.reconnects for o in outcomes),
        ttft_p50_s=_pct(ttfts, 50), ttft_p99_s=_pct(ttfts, 99), wall_s=wall,
        tokens_per_s=sum(o.tokens for o in good) / wall, failures=failures[:10],
    )  # fmt: skip


def _pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--phases", default="all", help="comma-separated: " + ", ".join(x.name for x in PHASES))
    p.add_argument("--json", type=Path, help="write the reports here")
    args = p.parse_args()
    phases = PHASES if args.phases == "all" else [x for x in PHASES if x.name in args.phases.split(",")]
    settings = load_settings(env={})
    work = Path(settings.cache_dir) / "bench-load"
    reports = []
    for phase in phases:
        home = work / phase.name
        home.mkdir(parents=True, exist_ok=True)
        for stale in home.glob("ponder.db*"):
            stale.unlink()
        if not (home / "models").exists():
            (home / "models").symlink_to(settings.models_dir)
        log(f"{phase.name}: starting the server ({phase.model}, {phase.running} at a time, queue {phase.queue})")
        proc, url = serve(phase, home, home / "serve.log")
        try:
            log(f"{phase.name}: {phase.clients} streaming clients at once")
            reports.append(asyncio.run(run_phase(phase, url)))
        finally:
            stop(proc)
    _table(reports)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    return 0 if all(r.lost_or_mixed == 0 and not r.failures for r in reports) else 1


def _table(reports: list[Report]) -> None:
    head = ("phase", "clients", "places", "queue", "matched", "lost/mixed", "429s", "refused", "reconnects",
            "TTFT p50", "TTFT p99", "wall", "tok/s")  # fmt: skip
    rows = [head] + [(r.phase, str(r.clients), str(r.running), str(r.queue), str(r.matched), str(r.lost_or_mixed),
                      str(r.refused_429), str(r.clients_refused), str(r.reconnects), f"{r.ttft_p50_s:.2f} s",
                      f"{r.ttft_p99_s:.2f} s", f"{r.wall_s:.1f} s", f"{r.tokens_per_s:.0f}")
                     for r in reports]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))))
    for r in reports:
        for f in r.failures:
            print(f"{r.phase}: {f}")


if __name__ == "__main__":
    sys.exit(main())
