"""Soak: a real server under a steady mix of every kind of request, for a long time.

    .venv/bin/python bench/soak.py [--minutes 30] [--workers 4] [--json bench/results/soak.json]

One `ponder serve` of the tiny model (SmolLM2-135M) with its voice, keys required,
and `--workers` clients that each loop over the mix until the time is up:

- chat: a Chat Completion (Instant), whole; its text a string, `finish_reason`
  "stop" or "length", its completion tokens within its `max_tokens`;
- stream: the same, streamed; deltas, then its usage, then [DONE];
- responses: a stored Response, retrieved by id (the same output), then a follow-up
  with `previous_response_id` (which reads more input tokens: the history);
- speech: a sentence spoken (`/v1/audio/speech`) and transcribed back
  (`/v1/audio/transcriptions`): at most half its words wrong;
- contemplating: two agents, small budgets; the answer names its mode;
- keys: a key of 6 requests a minute, asked until it is refused: a 429 with
  Retry-After is the right answer then; and a made-up key, which must get a 401.

Every answer is checked against its request; any 5xx, any exception and any failed
check is a failure. The server's resident memory is sampled every 5 s: growth is
the median of the last minute over the median of the minute after the warm-up (the
first fifth of the run), and must stay under 10%. Progress is printed each minute.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import TINY, free_port, ponder_env, stop, wait_healthy  # noqa: E402

from ponder.bench_audio import wer  # noqa: E402
from ponder.config import load_settings  # noqa: E402
from ponder.media import models as media_models  # noqa: E402
from ponder.models import ModelStore  # noqa: E402

BIN = Path(sys.executable).parent
SENTENCES = ["The soak test keeps running all day.", "Seven green apples fell from the tree.",
             "Please send the report before noon.", "The river is wide and very cold."]  # fmt: skip
MAX_GROWTH = 0.10
SAMPLE_S = 5.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Soak:
    def __init__(self, url: str, key: str, limited: str):
        self.url, self.key, self.limited = url, key, limited
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []
        self.server_errors = 0
        self._lock = threading.Lock()

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or self.key, max_retries=0, timeout=600)

    # --- the mix: each returns normally when its answer matched its request --------------

    def chat(self, c: openai.OpenAI, n: int) -> None:
        r = c.chat.completions.create(
            model=TINY,
            max_tokens=16,
            extra_body={"mode": "instant"},
            messages=[{"role": "user", "content": f"Say something about the number {n}."}],
        )
        choice = r.choices[0]
        _check(isinstance(choice.message.content, str), "no text")
        _check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason}")
        _check(r.usage is not None and 0 < r.usage.completion_tokens <= 16, f"usage {r.usage}")

    def stream(self, c: openai.OpenAI, n: int) -> None:
        ask: Any = [{"role": "user", "content": f"Count to {n % 9 + 2}."}]
        events = c.chat.completions.create(
            model=TINY,
            max_tokens=16,
            stream=True,
            messages=ask,
            stream_options={"include_usage": True},
            extra_body={"mode": "instant"},
        )
        chunks = list(events)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        usage = chunks[-1].usage
        _check(bool(text), "no streamed text")
        _check(usage is not None and 0 < usage.completion_tokens <= 16, f"usage {usage}")

    def responses(self, c: openai.OpenAI, n: int) -> None:
        first = c.responses.create(model=TINY, input=f"My lucky number is {n}.", max_output_tokens=16, store=True,
                                   extra_body={"mode": "instant"})  # fmt: skip
        again = c.responses.retrieve(first.id)
        _check(again.output_text == first.output_text, "retrieved another output")
        follow = c.responses.create(model=TINY, input="What is my lucky number?", previous_response_id=first.id,
                                    max_output_tokens=16, extra_body={"mode": "instant"})  # fmt: skip
        _check(follow.usage is not None and first.usage is not None
               and follow.usage.input_tokens > first.usage.input_tokens, "the follow-up lost its history")  # fmt: skip

    def speech(self, c: openai.OpenAI, n: int) -> None:
        said = SENTENCES[n % len(SENTENCES)]
        audio = c.audio.speech.create(model="tts-1", voice="alloy", input=said, response_format="wav").content
        heard = c.audio.transcriptions.create(model="whisper-1", file=("said.wav", audio, "audio/wav")).text
        _check(wer([said], [heard]) <= 0.5, f"said {said!r}, heard {heard!r}")

    def contemplating(self, c: openai.OpenAI, n: int) -> None:
        r = c.chat.completions.create(
            model=TINY, max_tokens=24, messages=[{"role": "user", "content": f"What is {n} plus {n}?"}],
            extra_body={"mode": "contemplating", "contemplation": {"agents": 2, "agent_budget": 24}})  # fmt: skip
        _check(isinstance(r.choices[0].message.content, str), "no text")
        ponder = (r.model_extra or {}).get("ponder") or {}
        _check(ponder.get("mode") == "contemplating", f"ponder field {ponder}")

    def keys(self, c: openai.OpenAI, n: int) -> None:
        limited = self.client(self.limited)
        for _ in range(8):  # 6 a minute: within 8 tries it is refused, unless a minute passed between
            try:
                limited.chat.completions.create(model=TINY, max_tokens=4, extra_body={"mode": "instant"},
                                                messages=[{"role": "user", "content": "hi"}])  # fmt: skip
            except openai.RateLimitError as e:
                retry = int(e.response.headers.get("retry-after", "0"))
                _check(1 <= retry <= 60, f"Retry-After {retry}")
                break
        else:
            raise Failed("a key of 6 requests a minute was never refused in 8 tries")
        try:
            self.client("pdr-not-a-key").models.list()
        except openai.AuthenticationError:
            return
        raise Failed("a made-up key was let in")

    # --- running it --------------------------------------------------------------------

    def worker(self, until: float, seed: int) -> None:
        rng = random.Random(seed)
        c = self.client()
        kinds: list[tuple[str, Callable[[openai.OpenAI, int], None]]] = [
            ("chat", self.chat), ("stream", self.stream), ("responses", self.responses), ("speech", self.speech),
            ("contemplating", self.contemplating), ("keys", self.keys)]  # fmt: skip
        weights = [4, 4, 2, 1, 1, 1]
        while time.monotonic() < until:
            name, run = rng.choices(kinds, weights)[0]
            n = rng.randrange(1000)
            try:
                run(c, n)
                outcome = "ok"
            except Failed as e:
                outcome = f"mismatch: {e}"
            except openai.APIStatusError as e:
                outcome = f"HTTP {e.status_code}: {e.message}"
                if e.status_code >= 500:
                    with self._lock:
                        self.server_errors += 1
            except (openai.APIError, httpx.HTTPError) as e:
                outcome = f"{type(e).__name__}: {e}"
            with self._lock:
                self.counts[name] += 1
                if outcome != "ok":
                    self.failures.append(f"{name}: {outcome}")


class Failed(Exception):
    pass


def _check(ok: bool, why: str) -> None:
    if not ok:
        raise Failed(why)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def growth(samples: list[tuple[float, int]], warm_s: float, total_s: float) -> tuple[float, float, float]:
    """(memory after warm-up, at the end, growth): medians over a minute each."""
    after = [m for t, m in samples if warm_s <= t < warm_s + 60] or [samples[0][1]]
    last = [m for t, m in samples if t >= total_s - 60] or [samples[-1][1]]
    base, end = statistics.median(after), statistics.median(last)
    return base, end, (end - base) / base


def prepare(home: Path) -> None:
    """The tiny model and the voice, pulled through Ponder's own pull paths into the models dir."""
    settings = load_settings(env={})
    home.mkdir(parents=True, exist_ok=True)
    for stale in home.glob("ponder.db*"):
        stale.unlink()
    (home / "no-config.toml").write_text("")
    models = home / "models"
    log("pulling the tiny model and the voice (cached after the first run)")
    ModelStore(models, settings.cache_dir).pull(TINY)
    for bundle in ("whisper-base", "joe"):
        media_models.pull(media_models.BUNDLES[bundle], models, settings.cache_dir)


def make_key(home: Path, *limits: str) -> str:
    made = subprocess.run([str(BIN / "ponder"), "keys", "create", "soak", *limits], env=ponder_env(home),
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return made.stdout.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args()
    home = Path(load_settings(env={}).cache_dir) / "bench-soak"
    prepare(home)
    key, limited = make_key(home), make_key(home, "--rpm", "6")
    port = free_port()
    serve_log = home / "serve.log"
    cmd = [str(BIN / "ponder"), "serve", "--model", TINY, "--port", str(port), "--log-level", "warning"]
    env = ponder_env(home, PONDER_AUTH="required", PONDER_N_CTX="2048")
    proc = subprocess.Popen(cmd, env=env, stdout=serve_log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, serve_log)
        soak = Soak(f"http://127.0.0.1:{port}", key, limited)
        total_s = args.minutes * 60
        t0 = time.monotonic()
        until = t0 + total_s
        threads = [threading.Thread(target=soak.worker, args=(until, i), daemon=True) for i in range(args.workers)]
        for t in threads:
            t.start()
        samples: list[tuple[float, int]] = []
        next_note = 60.0
        while any(t.is_alive() for t in threads):
            now = time.monotonic() - t0
            samples.append((now, rss_kib(proc.pid)))
            if now >= next_note:
                log(f"{now / 60:4.0f} min: {sum(soak.counts.values())} requests, {len(soak.failures)} failed, "
                    f"{soak.server_errors} 5xx, server {samples[-1][1] / 1024:.0f} MiB")  # fmt: skip
                next_note += 60
            time.sleep(SAMPLE_S)
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
    finally:
        stop(proc)  # type: ignore[arg-type]
    base, end, grew = growth(samples, 0.2 * elapsed, elapsed)
    report: dict[str, Any] = {
        "command": " ".join(["bench/soak.py", *sys.argv[1:]]), "minutes": round(elapsed / 60, 1),
        "workers": args.workers, "requests": dict(soak.counts), "total": sum(soak.counts.values()),
        "failures": len(soak.failures), "server_errors": soak.server_errors, "first_failures": soak.failures[:20],
        "rss_after_warmup_mib": round(base / 1024, 1), "rss_at_end_mib": round(end / 1024, 1),
        "growth": round(grew, 4), "memory_ok": grew < MAX_GROWTH,
        "rss_series_mib": [(round(t), round(m / 1024, 1)) for t, m in samples[:: max(1, len(samples) // 60)]],
    }  # fmt: skip
    print(json.dumps({k: v for k, v in report.items() if k != "rss_series_mib"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    ok = not soak.failures and not soak.server_errors and grew < MAX_GROWTH
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    raise SystemExit(main())
