"""Can the model tell its right answers from its wrong ones when asked? A verifier's AUROC.

    .venv/bin/python bench/verifier.py bench/results/gsm8k-modes-100.json [--config bare] [--limit 100]

For each row of a `ponder bench modes` run (the `--config` rows: by default the bare
model's answers), shows the default model the question and that row's answer, asks
whether the answer is correct, and reads the log-probabilities of replying "Yes" and
"No" (scored by the embedded engine: no tokens are written). Prints the AUROC of
log P(Yes) - log P(No) for right against wrong answers: 0.5 is a coin. This is the
judge a Contemplating split could use for free; it is worth using only well above 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from ponder.backends.embedded import EmbeddedBackend
from ponder.config import load_settings
from ponder.evals import datasets
from ponder.models import ModelStore
from ponder.modes import calibration
from ponder.types import ChatRequest, Message

ASK = (
    "Here is a question and a proposed solution.\n\nQuestion:\n{question}\n\nProposed solution:\n{answer}\n\n"
    "Check the solution step by step against the question. Is its final answer correct? Reply Yes or No."
)


async def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    path = ModelStore(settings.data_dir / "models", settings.cache_dir).resolve(settings.default_model)
    backend = EmbeddedBackend(path, settings.engine)
    rows = [r for r in json.loads(args.results.read_text())["rows"] if r["config"] == args.config][: args.limit]
    questions: dict[tuple[str, str], str] = {}
    for data in {r.get("data", "gsm8k") for r in rows}:
        questions |= {(data, i.id): i.question for i in datasets.load(data, settings.cache_dir, lambda *a: None)}
    pairs: list[tuple[float, bool]] = []
    t0 = time.perf_counter()
    try:
        for n, row in enumerate(rows, start=1):
            ask = ASK.format(question=questions[(row.get("data", "gsm8k"), row["id"])], answer=row["answer"])
            base = ChatRequest(model="verifier", messages=(Message("user", ask),))
            yes, no = await asyncio.gather(backend.score(replace(base, prefill="Yes")),
                                           backend.score(replace(base, prefill="No")))  # fmt: skip
            pairs.append((sum(yes) - sum(no), row["correct"]))
            print(f"{n}/{len(rows)}  {'right' if row['correct'] else 'wrong'}  yes-no {pairs[-1][0]:+.2f}  "
                  f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        await backend.close()
    a = calibration.auroc(pairs)
    print(f"{len(pairs)} {args.config} rows, {sum(r for _, r in pairs)} right: "
          f"AUROC of the verifier {'n/a' if a is None else f'{a:.3f}'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--config", default="bare", help="whose answers to judge (default: bare)")
    ap.add_argument("--limit", type=int, default=100)
    sys.exit(asyncio.run(main(ap.parse_args())))
