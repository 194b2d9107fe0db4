"""Where one decode step's time goes, op by op, with 1 sequence and with N.

    .venv/bin/python bench/ops.py [--model qwen2.5-coder-1.5b] [--counts 1,4] [--steps 16]
        [--rounds 3] [--threads 2] [--json OUT]

The model runs in a bare llama.cpp context set up as `BatchedEngine` sets it up
(bench/batching.py's `BareContext`), with an eval callback that asks to see every
node of the graph. llama.cpp then computes the graph one node at a time and calls
back after each, so the time between two callbacks is that node's time. Nodes are
grouped by op and, for matrix products, by the weight they multiply: its role
(`ffn_gate`, `output`, ...), its type, and whether ggml repacked it for its
interleaved kernels. Each group's time per step is the median over the rounds,
which alternate between the counts so that each sees the same machine.

What it answers: when N sequences decode together, which ops cost N times what
one costs (compute-bound: batching gains nothing there) and which cost little
more (bound by reading the weights, which batching shares). Stopping after every
node adds synchronisation, so the total is higher than in bench/batching.py;
compare shares and the N / 1 column, not absolute rates.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import llama_cpp

from batching import BareContext
from ponder.config import load_settings
from ponder.models import ModelStore
from quiet import log, measured

PROMPT_LEN = 182  # as bench/batching.py's shared prompt


class GgmlTensor(ctypes.Structure):
    """The head of ggml.h's `struct ggml_tensor`, as far as `src` and `name` (GGML_MAX_SRC 10)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
        ("extra", ctypes.c_void_p),
    ]


def _ggml() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    for fn, args in (("ggml_op_desc", [ctypes.c_void_p]), ("ggml_type_name", [ctypes.c_int]),
                     ("ggml_get_name", [ctypes.c_void_p])):  # fmt: skip
        getattr(lib, fn).restype, getattr(lib, fn).argtypes = ctypes.c_char_p, args
    return lib


class OpTimer:
    """The eval callback: time since the previous node, added to this node's group."""

    def __init__(self) -> None:
        self.lib = _ggml()
        self.on = False
        self.last = 0.0
        self.ms: dict[str, float] = defaultdict(float)
        self.nodes: dict[str, int] = defaultdict(int)
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._called)

    def _called(self, t: int, ask: bool, _user: Any) -> bool:
        if ask:
            return True  # see every node: each is then computed on its own
        now = time.perf_counter()
        if self.on:
            key = self.group(t)
            self.ms[key] += (now - self.last) * 1000
            self.nodes[key] += 1
        self.last = time.perf_counter()
        return True

    def group(self, t: int) -> str:
        node = GgmlTensor.from_address(t)
        op = self.lib.ggml_op_desc(t).decode()
        if op != "MUL_MAT" or not node.src[0]:
            return op
        weight = GgmlTensor.from_address(node.src[0])
        role = re.sub(r"^blk\.\d+\.|\.weight$", "", self.lib.ggml_get_name(node.src[0]).decode()) or "activations"
        kind = self.lib.ggml_type_name(weight.type).decode() + (" repacked" if weight.extra else "")
        return f"MUL_MAT {role} ({kind})"

    def start(self) -> None:
        self.ms.clear()
        self.nodes.clear()
        self.on, self.last = True, time.perf_counter()

    def stop(self) -> dict[str, Any]:
        self.on = False
        return {"ms": dict(self.ms), "nodes": dict(self.nodes)}


def profile(bare: BareContext, timer: OpTimer, n: int, steps: int) -> dict[str, Any]:
    """`steps` lockstep steps of `n` sequences; per-group milliseconds per step."""
    timer.start()
    t0 = time.perf_counter()
    for k in range(steps):
        timer.last = time.perf_counter()  # not the time between two llama_decode calls
        bare.step(n, k, PROMPT_LEN)
    wall = time.perf_counter() - t0
    got = timer.stop()
    bare.rewind(PROMPT_LEN)
    return {"step_ms": wall * 1000 / steps, "ms": {k: v / steps for k, v in got["ms"].items()},
            "nodes": {k: v // steps for k, v in got["nodes"].items()}}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--counts", default="1,4", help="sequence counts to compare; the first is the reference")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=12, help="groups to print")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    settings = load_settings()
    path = ModelStore(settings.models_dir, settings.cache_dir).pull(args.model, lambda stage, done, total: None)
    timer = OpTimer()
    bare = BareContext(path, {"n_ctx": 1024, "n_threads": args.threads}, max(counts), timer.callback)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    try:
        bare.prefill_shared(PROMPT_LEN)
        profile(bare, timer, max(counts), 2)  # warm up
        for r in range(args.rounds):
            for n in counts:
                runs[n].append(measured(lambda n=n: profile(bare, timer, n, args.steps)))  # type: ignore[misc]
                log(f"round {r + 1}/{args.rounds} N={n}: {runs[n][-1]['step_ms']:.1f} ms per step")
    finally:
        bare.close()

    groups = sorted({g for rs in runs.values() for r in rs for g in r["ms"]})
    med = {n: {g: statistics.median(r["ms"].get(g, 0.0) for r in rs) for g in groups} for n, rs in runs.items()}
    step = {n: statistics.median(r["step_ms"] for r in rs) for n, rs in runs.items()}
    ref, top = counts[0], max(counts)
    print(f"\n{args.model}, {args.threads} threads; ms per decode step, medians of {args.rounds} rounds "
          f"of {args.steps} steps")  # fmt: skip
    print(f"{'group':<44}{'nodes':>6}" + "".join(f"{f'N={n} ms':>10}" for n in counts) + f"{f'{top}/{ref}':>8}"
          + f"{'share N=' + str(top):>12}")  # fmt: skip
    for g in sorted(groups, key=lambda g: -med[top][g])[: args.top]:
        cells = "".join(f"{med[n][g]:>10.2f}" for n in counts)
        ratio = med[top][g] / med[ref][g] if med[ref][g] else float("nan")
        print(f"{g:<44}{runs[top][0]['nodes'].get(g, 0):>6}{cells}{ratio:>7.2f}x{med[top][g] / step[top]:>11.0%}")
    rest = {n: step[n] - sum(med[n].values()) for n in counts}  # graph build before the first node, logits after
    print(f"{'not in any node':<50}" + "".join(f"{rest[n]:>10.2f}" for n in counts))
    print(f"{'whole step (wall)':<50}" + "".join(f"{step[n]:>10.1f}" for n in counts)
          + f"{step[top] / step[ref]:>7.2f}x")  # fmt: skip
    print("aggregate tok/s under the profiler: " + ", ".join(f"N={n} {n * 1000 / step[n]:.1f}" for n in counts))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "threads": args.threads, "steps": args.steps,
                                         "median_ms": med, "step_ms": step, "runs": runs}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
