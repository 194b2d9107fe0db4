"""How well a first answer's confidence tells right from wrong: the data for Auto's bar.

    .venv/bin/python bench/confidence.py [--data gsm8k] [--start 0] [--limit 20]
        [--model qwen2.5-coder-1.5b] [--json bench/results/confidence-gsm8k.json]

Each item's message goes to the model two ways, each from an empty prompt cache,
with the top-5 log-probabilities of every token: alone, greedy, as Instant sends it
(the direct answer), and as one Thinking chain (compressed, greedy), as Auto starts
a question with numbers. Each answer is scored, and these figures taken
(`modes.confidence`): the direct answer's lowest 32-token window, tail and mean; the
chain's reasoning's lowest window, and its answer call's lowest window (what Auto
reads: `modes.auto._signal`). Printed: each item; for each figure the AUROC of right
against wrong; for Auto's figure of each kind, at each candidate bar, how many
answers it keeps, how many of those are right, and how many wrong ones it sends on
to Contemplating. Auto's bar (`[modes] auto_confidence`) is fitted on items 1-20.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from ponder.backends.embedded import EmbeddedBackend
from ponder.config import EFFORT_BUDGETS, load_settings
from ponder.evals import datasets
from ponder.models import ModelStore
from ponder.modes import calibration
from ponder.modes.confidence import TOP_K, measure
from ponder.modes.thinking import Trace, think
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
            chat = ChatRequest(args.model, (Message("user", item.question),), params)
            await backend.forget()
            done = await collect(backend.stream(chat))
            direct = measure(done.logprobs)
            await backend.forget()
            trace = Trace(measure=True)
            await collect(think(backend, chat, EFFORT_BUDGETS[settings.modes.effort], trace=trace))
            reasoning, answer = trace.watch.meter.signal(), measure(trace.answer_logprobs)
            rows.append({"id": item.id, "right": item.is_correct(done.text), "lowest": direct.lowest,
                         "tail": direct.tail, "mean": direct.mean, "tokens": done.usage.completion_tokens,
                         "chain_right": item.is_correct(trace.answer), "reasoning_lowest": reasoning.lowest,
                         "answer_lowest": answer.lowest, "chain_tokens": trace.usage.completion_tokens})  # fmt: skip
            print(f"[{n}/{len(items)}] {item.id} direct: right={rows[-1]['right']!s:5} lowest={direct.lowest:.2f} "
                  f"{done.usage.completion_tokens} tok; chain: right={rows[-1]['chain_right']!s:5} reasoning "
                  f"{reasoning.lowest:.2f} answer {answer.lowest:.2f} {trace.usage.completion_tokens} tok",
                  file=sys.stderr, flush=True)  # fmt: skip
    finally:
        await backend.close()
    print(f"right: direct {sum(r['right'] for r in rows)}/{len(rows)}, chain {sum(r['chain_right'] for r in rows)}"
          f"/{len(rows)}; mean tokens: direct {_mean(r['tokens'] for r in rows):.0f}, chain "
          f"{_mean(r['chain_tokens'] for r in rows):.0f}")  # fmt: skip
    for figure, right in [("lowest", "right"), ("tail", "right"), ("mean", "right"),
                          ("reasoning_lowest", "chain_right"), ("answer_lowest", "chain_right")]:  # fmt: skip
        print(f"AUROC {figure:<17} {auroc([r[figure] for r in rows], [r[right] for r in rows]):.2f}")
    for figure, right in [("lowest", "right"), ("answer_lowest", "chain_right")]:
        wrong = [r for r in rows if not r[right]]
        print(f"\n{figure}\n{'bar':>6}{'kept':>8}{'right of kept':>15}{'wrong sent on':>15}")
        for bar in (4.5, 4.8, 5.0, 5.2, 5.3, 5.4, 5.6, 5.8, 6.0):
            kept = [r for r in rows if r[figure] >= bar]
            caught = sum(r[figure] < bar for r in wrong)
            print(f"{bar:>6.1f}{len(kept):>5}/{len(rows):<3}{sum(r[right] for r in kept):>9}/{len(kept):<5}"
                  f"{caught:>9}/{len(wrong):<5}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "start": args.start, "rows": rows}, indent=2) + "\n")
    return 0


def auroc(scores: list[float], right: list[bool]) -> float:
    """`calibration.auroc`; 0.5 when one side is empty."""
    found = calibration.auroc(list(zip(scores, right, strict=True)))
    return 0.5 if found is None else found


def _mean(values: Iterable[float]) -> float:
    got = list(values)
    return sum(got) / len(got) if got else 0.0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
