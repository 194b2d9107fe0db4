"""How well a direct answer's confidence tells right from wrong: the data for Auto's bar.

    .venv/bin/python bench/confidence.py [--data gsm8k] [--start 0] [--limit 20]
        [--model qwen2.5-coder-1.5b] [--json bench/results/confidence-gsm8k.json]

Each item's message goes to the model alone, greedy, as Instant sends it, with the
top-5 log-probabilities of every token; the answer is scored, and its confidence
taken as Auto takes it (`modes.confidence`: the lowest 32-token window). Printed:
each item, then for each candidate bar the share of answers at or above it (kept by
Auto) and how many of those were right, and the share of wrong answers below it
(sent on to Contemplating). Auto's bar (`[modes] auto_confidence`) is fitted on
items the mode benchmarks skip (`ponder bench modes --start`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from ponder.backends.embedded import EmbeddedBackend
from ponder.config import load_settings
from ponder.evals import datasets
from ponder.models import ModelStore
from ponder.modes.confidence import TOP_K, measure
from ponder.types import ChatRequest, Message, SamplingParams, collect


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--data", default="gsm8k")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    settings = load_settings()
    path = ModelStore(settings.data_dir / "models", settings.cache_dir).resolve(args.model)
    backend = EmbeddedBackend(path, settings.engine)
    items = datasets.load(args.data, settings.cache_dir, lambda *a: None)[args.start : args.start + args.limit]
    rows = []
    try:
        for n, item in enumerate(items, 1):
            params = SamplingParams(temperature=0.0, max_tokens=512, logprobs=TOP_K)
            done = await collect(backend.stream(ChatRequest(args.model, (Message("user", item.question),), params)))
            signal = measure(done.logprobs)
            rows.append({"id": item.id, "right": item.is_correct(done.text), "lowest": signal.lowest,
                         "tail": signal.tail, "mean": signal.mean, "tokens": done.usage.completion_tokens})  # fmt: skip
            print(f"[{n}/{len(items)}] {item.id} right={rows[-1]['right']!s:5} lowest={signal.lowest:.2f} "
                  f"tail={signal.tail:.2f} {done.usage.completion_tokens} tok",
                  file=sys.stderr, flush=True)  # fmt: skip
    finally:
        await backend.close()
    wrong = [r for r in rows if not r["right"]]
    print(f"{'bar':>6}{'kept':>8}{'right of kept':>15}{'wrong sent on':>15}")
    for bar in (4.5, 4.8, 5.0, 5.2, 5.3, 5.4, 5.6, 5.8, 6.0):
        kept = [r for r in rows if r["lowest"] >= bar]
        caught = sum(r["lowest"] < bar for r in wrong)
        print(f"{bar:>6.1f}{len(kept):>5}/{len(rows):<3}{sum(r['right'] for r in kept):>9}/{len(kept):<5}"
              f"{caught:>9}/{len(wrong):<5}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "start": args.start, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
