"""`ponder bench modes`: accuracy and cost of each mode on the GSM8K sample.

Each configuration runs every item in-process on one backend, in order, and reports
accuracy, mean reasoning tokens, mean other generated tokens (the answer, plus any
probes, plan or synthesis), and mean latency per item. Greedy decoding for the
single-chain modes; Contemplating's attempts sample at their own temperatures with
seeds derived from `--seed`, so a run can be repeated.

`--tools` adds, for each mode, the same mode with the code tool on ("instant+code"):
the model may run Python in the sandbox (`ponder.tools.sandbox`) and read what it
printed before it answers.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder import modes, results
from ponder.backends.base import Backend
from ponder.config import Settings
from ponder.errors import PonderError
from ponder.evals import gsm8k
from ponder.tools import Toolbox, sandbox
from ponder.types import NO_USAGE, ChatRequest, Completion, Message, SamplingParams, collect

ANSWER_TOKENS = 512  # a cap on each answer, so a looping model cannot stall the run

# name -> fields for modes.resolve
CONFIGS: dict[str, dict[str, Any]] = {
    "instant": {"mode": "instant"},
    "thinking": {"mode": "thinking", "compression": True},
    "thinking-nocompress": {"mode": "thinking", "compression": False},
    "contemplating": {"mode": "contemplating"},
}
CODE = "+code"  # a config name's suffix: the code tool on


def known(name: str) -> bool:
    return name.removesuffix(CODE) in CONFIGS


@dataclass
class Row:
    config: str
    id: str
    correct: bool
    expected: str
    answer: str
    reasoning_tokens: int
    completion_tokens: int
    latency_s: float
    tool_calls: int = 0


async def run(
    backend: Backend,
    model: str,
    settings: Settings,
    configs: list[str],
    limit: int,
    effort: str | None,
    agents: int | None,
    seed: int,
    json_out: Path | None = None,
) -> list[Row]:
    """Run every item in every config. With `json_out`, the results so far are saved
    after each item, and items already in that file are not run again (resume)."""
    items = gsm8k.load(settings.cache_dir, lambda *a: None)[:limit]
    rows = results.saved(json_out, Row)
    saved = {(r.config, r.id) for r in rows}
    for name in configs:
        right = sum(r.correct for r in rows if r.config == name)
        for n, item in enumerate(items, start=1):
            if (name, item.id) in saved:
                continue
            box = Toolbox({sandbox.NAME: sandbox.hosted()}, settings.tools.max_steps) if name.endswith(CODE) else None
            chat = ChatRequest(
                model,
                (Message("user", item.question),),
                SamplingParams(max_tokens=ANSWER_TOKENS, temperature=0.0, seed=seed),
                tools=box.specs if box else (),
            )
            fields = CONFIGS[name.removesuffix(CODE)]
            req = modes.resolve(chat, settings.modes, effort=effort, agents=agents, toolbox=box, **fields)
            t0 = time.perf_counter()
            try:
                done = await collect(modes.run(backend, req))
            except PonderError as e:  # one failed item is a wrong answer, not the end of a long run
                print(f"[{name}] {item.id} failed: {e.message}", file=sys.stderr, flush=True)
                done = Completion(f"error: {e.message}", "", "stop", NO_USAGE)
            row = Row(name, item.id, gsm8k.is_correct(done.text, item.expected), item.expected, done.text.strip(),
                      done.usage.reasoning_tokens, done.usage.completion_tokens, time.perf_counter() - t0,
                      done.usage.tool_calls)  # fmt: skip
            rows.append(row)
            right += row.correct
            if json_out:
                write(rows, summarise(rows), json_out, None)
            print(f"[{name}] {n}/{len(items)}  {right}/{n} right  (last: {'ok ' if row.correct else 'bad'} "
                  f"{row.reasoning_tokens}+{row.completion_tokens - row.reasoning_tokens} tok, {row.latency_s:.1f}s)",
                  file=sys.stderr, flush=True)  # fmt: skip
    return rows


def summarise(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for name in dict.fromkeys(r.config for r in rows):
        mine = [r for r in rows if r.config == name]
        out.append({
            "config": name,
            "items": len(mine),
            "accuracy": sum(r.correct for r in mine) / len(mine),
            "mean_reasoning_tokens": statistics.mean(r.reasoning_tokens for r in mine),
            "mean_other_tokens": statistics.mean(r.completion_tokens - r.reasoning_tokens for r in mine),
            "mean_latency_s": statistics.mean(r.latency_s for r in mine),
            "mean_tool_calls": statistics.mean(r.tool_calls for r in mine),
        })  # fmt: skip
    return out


def table(summary: list[dict[str, Any]]) -> str:
    head = f"{'mode':<22}{'items':>6}{'accuracy':>10}{'reasoning tok':>15}{'other tok':>11}{'latency s':>11}"
    lines = [head + f"{'tool calls':>12}"]
    for s in summary:
        lines.append(f"{s['config']:<22}{s['items']:>6}{s['accuracy']:>10.1%}{s['mean_reasoning_tokens']:>15.0f}"
                     f"{s['mean_other_tokens']:>11.0f}{s['mean_latency_s']:>11.1f}"
                     f"{s.get('mean_tool_calls', 0):>12.2f}")  # fmt: skip
    return "\n".join(lines)


def write(rows: list[Row], summary: list[dict[str, Any]], json_out: Path | None, plot_out: Path | None) -> None:
    if json_out:
        results.save(json_out, rows, summary)
    if plot_out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for i, s in enumerate(summary):
            tokens = s["mean_reasoning_tokens"] + s["mean_other_tokens"]
            ax.scatter(tokens, 100 * s["accuracy"], s=60)
            below = i % 2 == 1  # neighbours' labels alternate above and below their points
            ax.annotate(s["config"], (tokens, 100 * s["accuracy"]), textcoords="offset points",
                        xytext=(6, -14 if below else 6))  # fmt: skip
        ax.set_xlabel("mean generated tokens per item (all calls)")
        ax.set_ylabel("GSM8K accuracy, %")
        ax.set_title(f"Ponder modes on GSM8K ({summary[0]['items']} items)")
        ax.set_ylim(0, 100)
        ax.set_xlim(0, 1.3 * max(s["mean_reasoning_tokens"] + s["mean_other_tokens"] for s in summary))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        plot_out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot_out, dpi=120)
