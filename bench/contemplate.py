"""Contemplating's sub-agent phase against one Thinking run, on the batched engine.

    .venv/bin/python bench/contemplate.py [--model qwen2.5-coder-1.5b] [--rounds 3]
        [--agents 4] [--budget 256] [--threads 2] [--compression off|on|both] [--json OUT]

One process, one `EmbeddedBackend` with `n_seq_max = agents`, so the agents decode
in one batch. Each round runs, on the same GSM8K question:

  - one Thinking run with budget B;
  - one Contemplating run with `agents` attempts, each a Thinking run with budget B.

With thought compression off, every chain runs to the budget, so the work is the
same in both runs and not the luck of an early stop; with it on (the default), the
runs are as a user gets them. `--compression both` measures both, in the same
rounds. Answers are capped at `--answer-tokens`. The sub-agent phase is timed
from the plan to the last agent's finish; the full Contemplating wall time (plan,
agents, vote or written synthesis) is reported beside it. Rounds alternate, each
timing is taken on a quiet machine (`quiet.measured`), and the ratio is of medians.
Goal: sub-agent phase <= 2.5x the Thinking run (one after another it would be
over 4x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ponder import modes
from ponder.backends.embedded import EmbeddedBackend
from ponder.config import load_settings
from ponder.evals import gsm8k
from ponder.models import ModelStore
from ponder.types import AgentEvent, ChatRequest, Done, Message, SamplingParams
from quiet import log, measured

# A multi-step question whose reasoning runs past small budgets on the default model.
QUESTION_INDEX = 0


async def thinking_run(backend: EmbeddedBackend, chat: ChatRequest, budget: int, compression: bool) -> dict[str, Any]:
    req = modes.resolve(chat, load_settings().modes, mode="thinking", budget=budget, compression=compression)
    t0 = time.perf_counter()
    usage = None
    async for event in modes.run(backend, req):
        if isinstance(event, Done):
            usage = event.usage
    assert usage is not None
    return {"wall_s": time.perf_counter() - t0, "reasoning_tokens": usage.reasoning_tokens,
            "completion_tokens": usage.completion_tokens}  # fmt: skip


async def contemplating_run(
    backend: EmbeddedBackend, chat: ChatRequest, budget: int, compression: bool, agents: int
) -> dict[str, Any]:
    req = modes.resolve(chat, load_settings().modes, mode="contemplating", compression=compression, agents=agents)
    req = replace(req, agent_budget=budget, strategy="attempts")
    t0 = time.perf_counter()
    plan_at = agents_done_at = None
    finished = 0
    usage = None
    async for event in modes.run(backend, req):
        if isinstance(event, AgentEvent):
            if event.kind == "plan":
                plan_at = time.perf_counter()
            elif event.kind == "agent.done":
                finished += 1
                if finished == agents:
                    agents_done_at = time.perf_counter()
        elif isinstance(event, Done):
            usage = event.usage
    end = time.perf_counter()
    assert plan_at is not None and agents_done_at is not None and usage is not None
    return {"wall_s": end - t0, "phase_s": agents_done_at - plan_at, "reasoning_tokens": usage.reasoning_tokens,
            "completion_tokens": usage.completion_tokens}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--budget", type=int, default=256, help="reasoning tokens per chain (Thinking and each agent)")
    ap.add_argument("--answer-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compression", choices=("off", "on", "both"), default="both",
                    help="thought compression in both runs (off: every chain runs to the budget)")  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    settings = load_settings()
    path = ModelStore(settings.models_dir, settings.cache_dir).pull(args.model, lambda stage, done, total: None)
    engine = replace(settings.engine, n_seq_max=args.agents, n_threads=args.threads, n_ctx=2048)
    item = gsm8k.load(settings.cache_dir, lambda *a: None)[QUESTION_INDEX]
    chat = ChatRequest(args.model, (Message("user", item.question),),
                       SamplingParams(max_tokens=args.answer_tokens, temperature=0.0, seed=7))  # fmt: skip
    log(f"{path.name}: BatchedEngine with {args.agents} sequences, {args.threads} threads; budget {args.budget}")

    budget = args.budget
    settings_list = {"off": [False], "on": [True], "both": [False, True]}[args.compression]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        _name(c): {"thinking": [], "contemplating": []} for c in settings_list
    }

    async def session() -> None:
        backend = EmbeddedBackend(path, engine)
        loop = asyncio.get_running_loop()
        try:
            await thinking_run(backend, chat, 16, False)  # load the model and warm up
            for r in range(args.rounds):
                for c in settings_list:
                    mine = results[_name(c)]
                    res = await loop.run_in_executor(
                        None, measured, lambda c=c: _sync(thinking_run(backend, chat, budget, c))
                    )
                    mine["thinking"].append(res)
                    log(f"round {r + 1}/{args.rounds} {_name(c)}: thinking {res['wall_s']:.1f}s "
                        f"({res['reasoning_tokens']} reasoning tok)")  # fmt: skip
                    res = await loop.run_in_executor(
                        None, measured, lambda c=c: _sync(contemplating_run(backend, chat, budget, c, args.agents))
                    )
                    mine["contemplating"].append(res)
                    log(f"round {r + 1}/{args.rounds} {_name(c)}: contemplating agents {res['phase_s']:.1f}s, "
                        f"whole {res['wall_s']:.1f}s ({res['reasoning_tokens']} reasoning tok)")  # fmt: skip
        finally:
            await backend.close()

    def _sync(coro: Any) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(coro, main_loop).result()

    main_loop = asyncio.new_event_loop()
    main_loop.run_until_complete(session())
    return report(args, results)


def _name(compression: bool) -> str:
    return "compression on" if compression else "compression off"


def report(args: argparse.Namespace, results: dict[str, dict[str, list[dict[str, Any]]]]) -> int:
    print(f"\n{args.agents} agents, budget {args.budget} reasoning tokens per chain; medians of {args.rounds} rounds")
    print(f"{'':<17}{'thinking s':>11}{'agents s':>10}{'ratio':>8}{'whole s':>10}{'ratio':>8}")
    summary = {}
    for name, r in results.items():
        t = statistics.median(x["wall_s"] for x in r["thinking"])
        phase = statistics.median(x["phase_s"] for x in r["contemplating"])
        whole = statistics.median(x["wall_s"] for x in r["contemplating"])
        print(f"{name:<17}{t:>11.1f}{phase:>10.1f}{phase / t:>7.2f}x{whole:>10.1f}{whole / t:>7.2f}x")
        summary[name] = {"thinking_s": t, "phase_s": phase, "whole_s": whole, "phase_ratio": phase / t,
                         "whole_ratio": whole / t}  # fmt: skip
    print("goal: the agents' phase <= 2.5x one Thinking run")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "agents": args.agents, "budget": args.budget,
                                         "threads": args.threads, "summary": summary, "rounds": results},
                                        indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
