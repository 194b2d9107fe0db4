"""Aggregate decode rate of `BatchedEngine` with 1, 2, 4 and 8 concurrent sequences.

    .venv/bin/python bench/batching.py [--model qwen2.5-coder-1.5b] [--rounds 3] [--threads 2]
        [--configs default,no-fa,per-seq-kv,per-seq-kv-no-fa,ubatch128,threads1,no-repack]
        [--tiled-mm on|off|force]
        [--json OUT]

Every sequence shares a ~180-token prompt prefix (a system prompt with some code)
and asks for a different piece of code, so all of them run long; each is cut at
`--tokens` (128) greedy tokens, and the actual counts are reported. The rate
counted is the lockstep one: the tokens emitted while all N sequences were
decoding, over that time window, so prefill is left out. Rounds go 1, 2, 4, 8,
1, 2, 4, 8, ... so every N sees the same machine noise, and each ratio is the
median rate for N over the median rate for 1 sequence of the same engine
configuration, in the same run. `LlamaEngine` on the same prompt is measured
once per round as a reference for the single-sequence rate. Goal: 4 sequences
>= 1.6x one sequence. `--tiled-mm off` turns off ggml's tiled K-quant matmul, which
ggml takes from 8 rows on; on the 2-core EPYC it was slower there than the per-row
path until 16 rows. `--tiled-mm force` takes it at every row count, for the weights
ggml did not repack.

Prints progress as it goes and a table at the end.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import threading
import time
from itertools import chain
from pathlib import Path
from typing import Any

from ponder.config import load_settings
from ponder.engine.batched import BatchedEngine
from ponder.engine.llama import LlamaEngine
from ponder.models import ModelStore
from ponder.types import Done, Event, Message, SamplingParams, TextDelta
from quiet import log, measured

SYSTEM = """You are a senior Python engineer. You write complete, idiomatic, well tested code with
type hints and docstrings, and you never leave parts out. The project you work on uses this helper:

```python
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Record:
    key: str
    value: float
    created: datetime = field(default_factory=datetime.now)
    tags: list[str] = field(default_factory=list)

    def matches(self, tag: str) -> bool:
        return tag in self.tags

    def age_seconds(self) -> float:
        return (datetime.now() - self.created).total_seconds()
```

Answer with code only, starting with the imports."""
TASKS = [
    "a thread-safe LRU cache of Records with a maximum size and per-entry expiry",
    "a CSV importer that validates rows into Records and reports bad lines",
    "a command-line tool that prints statistics (mean, median, p95) of Record values per tag",
    "an SQLite repository for Records with insert, query by tag and delete",
    "an asyncio HTTP poller that turns JSON responses into Records",
    "a rate limiter (token bucket) that guards a function creating Records",
    "a pub/sub event bus that delivers new Records to subscribers by tag",
    "a report generator that renders Records grouped by day as a Markdown table",
]
CONFIGS: dict[str, dict[str, Any]] = {  # BatchedEngine keyword arguments over its defaults
    "default": {},
    "no-fa": {"flash_attn": False},
    "per-seq-kv": {"kv_unified": False},
    "per-seq-kv-no-fa": {"kv_unified": False, "flash_attn": False},
    "ubatch128": {"n_ubatch": 128},
    "threads1": {"n_threads": 1},
    "no-repack": {"repack": False},
}
COUNTS = (1, 2, 4, 8)


def prompt(engine: BatchedEngine | LlamaEngine, i: int) -> list[int]:
    ask = f"Write {TASKS[i % len(TASKS)]}."
    return engine.prompt_tokens([Message("system", SYSTEM), Message("user", ask)])


def lockstep_rate(times: list[list[float]]) -> tuple[float, int]:
    """Tokens per second while every sequence was decoding, and how many tokens that was."""
    start = max(t[0] for t in times)
    end = min(t[-1] for t in times)
    n = sum(start < x <= end for t in times for x in t)
    return (n / (end - start) if end > start else float("nan")), n


def run_many(engine: BatchedEngine, n: int, max_tokens: int) -> dict[str, Any]:
    """n concurrent greedy requests; per-token emission times and the Done usage of each."""
    times: list[list[float]] = [[] for _ in range(n)]
    done: list[Done | None] = [None] * n
    errors: list[BaseException] = []
    go = threading.Barrier(n)

    def work(i: int) -> None:
        def emit(event: Event) -> None:
            if isinstance(event, TextDelta):
                times[i].append(time.perf_counter())
            elif isinstance(event, Done):
                done[i] = event

        tokens = prompt(engine, i)
        go.wait()
        try:
            engine.generate(tokens, SamplingParams(max_tokens=max_tokens, temperature=0), threading.Event(), emit)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    rate, counted = lockstep_rate(times)
    tokens = [d.usage.completion_tokens if d else 0 for d in done]
    cached = [d.usage.cached_tokens if d else 0 for d in done]
    return {"tok_s": rate, "counted": counted, "tokens": tokens, "cached": cached}


def run_single(engine: LlamaEngine, max_tokens: int) -> dict[str, Any]:
    """One request on LlamaEngine, the engine this one replaces: the single-sequence reference."""
    times: list[float] = []
    engine.generate(prompt(engine, 0), SamplingParams(max_tokens=max_tokens, temperature=0), threading.Event(),
                    lambda e: times.append(time.perf_counter()) if isinstance(e, TextDelta) else None)  # fmt: skip
    rate, counted = lockstep_rate([times])
    return {"tok_s": rate, "counted": counted, "tokens": [len(times)]}


class BareContext:
    """llama_decode alone: the model in a context set up as `BatchedEngine` sets it up
    from `kwargs`, fed by hand, with no sampling and no scheduler. `cb_eval` (a
    `ggml_backend_sched_eval_callback`) sees every op, as bench/ops.py uses it."""

    def __init__(self, path: Path, kwargs: dict[str, Any], n_seq: int, cb_eval: Any = None):
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        self.llama_cpp = llama_cpp
        defaults = {k: v.default for k, v in inspect.signature(BatchedEngine.__init__).parameters.items()}
        mp = llama_cpp.llama_model_default_params()
        mp.use_extra_bufts = kwargs.get("repack", defaults["repack"])
        self.model = LlamaModel(path_model=str(path), params=mp, verbose=False)
        p = llama_cpp.llama_context_default_params()
        p.n_ctx, p.n_seq_max, p.n_batch = kwargs["n_ctx"] * n_seq, n_seq, 512
        p.n_ubatch = kwargs.get("n_ubatch", defaults["n_ubatch"])
        p.n_threads = p.n_threads_batch = kwargs["n_threads"]
        p.kv_unified = kwargs.get("kv_unified", defaults["kv_unified"])
        fa = kwargs.get("flash_attn", defaults["flash_attn"])
        p.flash_attn_type = -1 if fa is None else int(fa)
        if cb_eval is not None:
            p.cb_eval = cb_eval
        self.n_seq = n_seq
        self.ctx = llama_cpp.llama_init_from_model(self.model.model, p)
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence id, logits) rows."""
        b = self.batch
        for i, (token, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
            b.seq_id[i][0] = seq
        b.n_tokens = len(items)
        assert self.llama_cpp.llama_decode(self.ctx, b) == 0

    def prefill_shared(self, prompt_len: int) -> None:
        """Sequence 0 prefills `prompt_len` tokens; every other sequence copies them."""
        self.decode([(100 + i, i, 0, i == prompt_len - 1) for i in range(prompt_len)])
        for s in range(1, self.n_seq):
            self.llama_cpp.llama_memory_seq_cp(self.mem, 0, s, -1, -1)

    def step(self, n: int, k: int, prompt_len: int) -> None:
        """Decode step `k` after the prompt: one token for each of sequences 0..n-1, logits on."""
        self.decode([(500 + k, prompt_len + k, s, True) for s in range(n)])

    def rewind(self, prompt_len: int) -> None:
        for s in range(self.n_seq):
            self.llama_cpp.llama_memory_seq_rm(self.mem, s, prompt_len, -1)

    def close(self) -> None:
        self.llama_cpp.llama_batch_free(self.batch)
        self.llama_cpp.llama_free(self.ctx)
        self.model.close()


def raw_decode(path: Path, kwargs: dict[str, Any], prompt_len: int, steps: int) -> dict[int, float]:
    """The ceiling: lockstep llama_decode alone, same context settings as the engine.

    One sequence prefills `prompt_len` tokens, the others copy it, then each N decodes
    `steps` steps of one token per sequence with logits on, as the engine does."""
    bare = BareContext(path, kwargs, max(COUNTS))
    try:
        bare.prefill_shared(prompt_len)
        rates = {}
        for n in COUNTS:
            t0 = time.perf_counter()
            for k in range(steps):
                bare.step(n, k, prompt_len)
            rates[n] = n * steps / (time.perf_counter() - t0)
            bare.rewind(prompt_len)
        return rates
    finally:
        bare.close()


def bench_config(name: str, path: Path, args: argparse.Namespace, single: LlamaEngine) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"n_ctx": 1024, "n_threads": args.threads, "n_seq_max": max(COUNTS), **CONFIGS[name]}
    log(f"[{name}] loading {path.name} with {kwargs}")
    engine = BatchedEngine(path, **kwargs)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in COUNTS}
    refs: list[dict[str, Any]] = []
    raws: list[dict[str, Any]] = []
    try:
        run_many(engine, 2, 8)  # warm up: page the weights in, prefill the shared prefix
        for r in range(args.rounds):
            tag = f"[{name}] round {r + 1}/{args.rounds}"
            for n in COUNTS:
                res = measured(lambda n=n: run_many(engine, n, args.tokens))  # type: ignore[misc]
                runs[n].append(res)
                log(f"{tag} N={n}: {res['tok_s']:.1f} tok/s ({res['counted']} lockstep tokens; completion "
                    f"{res['tokens']}; cached {res['cached']}; other processes {res['foreign_cpu']:.0%})")  # fmt: skip
            refs.append(measured(lambda: run_single(single, args.tokens)))
            log(f"{tag} LlamaEngine, 1 sequence: {refs[-1]['tok_s']:.1f} tok/s")
            if args.raw_steps:
                n_prompt = len(prompt(engine, 0))
                raws.append(measured(lambda k=n_prompt: {"tok_s": raw_decode(path, kwargs, k, args.raw_steps)}))  # type: ignore[misc]
                log(f"{tag} raw llama_decode: " + ", ".join(f"N={n} {v:.1f}" for n, v in raws[-1]["tok_s"].items()))
    finally:
        engine.close()
    med = {n: statistics.median(r["tok_s"] for r in rs) for n, rs in runs.items()}
    return {
        "kwargs": kwargs,
        "median_tok_s": med,
        "ratio_vs_1": {n: med[n] / med[1] for n in COUNTS},
        "llama_engine_tok_s": statistics.median(r["tok_s"] for r in refs),
        "raw_decode_tok_s": {n: statistics.median(r["tok_s"][n] for r in raws) for n in COUNTS} if raws else {},
        "contended_measurements": sum(r.get("contended", False) for r in [*refs, *raws, *chain(*runs.values())]),
        "runs": runs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--configs", default="default", help=f"comma-separated, from: {', '.join(CONFIGS)}")
    ap.add_argument("--raw-steps", type=int, default=32, help="steps of the raw llama_decode ceiling (0: skip)")
    ap.add_argument("--tiled-mm", default="on", choices=("on", "off", "force"),
                    help="tiled K-quant matmul from 8 rows, never, always (GGML_CPU_TILED_MM*, read once)")  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    os.environ["GGML_CPU_TILED_MM"] = "0" if args.tiled_mm == "off" else "1"  # before the first matmul
    os.environ["GGML_CPU_TILED_MM_FORCE"] = "1" if args.tiled_mm == "force" else "0"
    names = [c for c in args.configs.split(",") if c]
    if unknown := [c for c in names if c not in CONFIGS]:
        ap.error(f"unknown config(s): {', '.join(unknown)}")

    settings = load_settings()
    path = ModelStore(settings.models_dir, settings.cache_dir).pull(args.model, lambda stage, done, total: None)
    log(f"loading LlamaEngine on {path.name} as the single-sequence reference")
    single = LlamaEngine(path, n_ctx=1024, n_threads=args.threads)
    log(f"shared prompt: {len(prompt(single, 0))} tokens; {args.tokens} tokens per sequence")

    results = {name: bench_config(name, path, args, single) for name in names}

    print(f"\n{'config':<18}" + "".join(f"{f'N={n} tok/s':>12}{'ratio':>7}" for n in COUNTS) + f"{'LlamaEngine':>13}")
    for name, res in results.items():
        cells = "".join(f"{res['median_tok_s'][n]:>12.1f}{res['ratio_vs_1'][n]:>6.2f}x" for n in COUNTS)
        print(f"{name:<18}{cells}{res['llama_engine_tok_s']:>13.1f}")
        if raw := res["raw_decode_tok_s"]:
            cells = "".join(f"{raw[n]:>12.1f}{raw[n] / raw[1]:>6.2f}x" for n in COUNTS)
            print(f"{'  raw':<18}{cells}")
    print("goal: N=4 ratio >= 1.6x (medians of the rounds; ratios within one config). "
          "raw: llama_decode alone, the ceiling for the engine's loop")  # fmt: skip
    if contended := {name: r["contended_measurements"] for name, r in results.items() if r["contended_measurements"]}:
        print(f"WARNING: measurements taken while other processes used the CPUs: {contended}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "threads": args.threads, "tokens": args.tokens,
                                         "tiled_mm": args.tiled_mm, "results": results}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
