"""Contemplating's sub-agent phase against one Thinking run, on the batched engine.

    .venv/bin/python bench/contemplate.py [--model qwen2.5-coder-1.5b] [--rounds 3]
        [--agents 4] [--budget 256] [--threads 2] [--compression off|on|both]
        [--request one|parts|both] [--json OUT]

One process, one `EmbeddedBackend` with `n_seq_max = agents`, so the agents decode
in one batch. Each round runs, on the same request:

  - one Thinking run with budget B;
  - one Contemplating run, each agent a Thinking run with budget B.

The request is one GSM8K question (`one`: `agents` independent attempts, no planner
call, a vote) or two of them as a numbered list (`parts`: the model plans the
sub-tasks, the agents run them, and a written synthesis answers), or both.

With thought compression off, every chain runs to the budget, so the work is the
same in both runs and not the luck of an early stop; with it on (the default), the
runs are as a user gets them. `--compression both` measures both, in the same
rounds. Answers are capped at `--answer-tokens`. The sub-agent phase is timed
from the plan to the last agent's finish; the planner, the synthesis and the full
Contemplating wall time are reported beside it. Rounds alternate, each
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

# A multi-step question whose reasoning runs past small budgets on the default model;
# the two-part request adds the next one.
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
    backend: EmbeddedBackend, chat: ChatRequest, budget: int, compression: bool, agents: int, strategy: str
) -> dict[str, Any]:
    req = modes.resolve(chat, load_settings().modes, mode="contemplating", compression=compression, agents=agents)
    req = replace(req, agent_budget=budget, strategy=strategy)
    t0 = time.perf_counter()
    plan_at = agents_done_at = synthesis_at = planned_as = None
    planned, finished = 0, 0
    usage = None
    async for event in modes.run(backend, req):
        if isinstance(event, AgentEvent):
            if event.kind == "plan":
                plan_at, planned, planned_as = time.perf_counter(), len(event.data["agents"]), event.data["strategy"]
            elif event.kind == "agent.done":
                finished += 1
                if finished == planned:
                    agents_done_at = time.perf_counter()
            elif event.kind == "synthesis.start":
                synthesis_at = time.perf_counter()
        elif isinstance(event, Done):
            usage = event.usage
    end = time.perf_counter()
    assert plan_at is not None and agents_done_at is not None and synthesis_at is not None and usage is not None
    return {"wall_s": end - t0, "plan_s": plan_at - t0, "phase_s": agents_done_at - plan_at,
            "synthesis_s": end - synthesis_at, "agents": planned, "strategy": planned_as,
            "reasoning_tokens": usage.reasoning_tokens,
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
    ap.add_argument("--request", choices=("one", "parts", "both"), default="one",
                    help="one question (attempts, a vote); two in a list (planner, sub-tasks, synthesis)")  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    settings = load_settings()
    path = ModelStore(settings.models_dir, settings.cache_dir).pull(args.model, lambda stage, done, total: None)
    engine = replace(settings.engine, n_seq_max=args.agents, n_threads=args.threads, n_ctx=2048)
    items = gsm8k.load(settings.cache_dir, lambda *a: None)
    texts = {"one": items[QUESTION_INDEX].question,
             "parts": f"1. {items[QUESTION_INDEX].question}\n2. {items[QUESTION_INDEX + 1].question}"}  # fmt: skip
    params = SamplingParams(max_tokens=args.answer_tokens, temperature=0.0, seed=7)
    requests = {"one": ["one"], "parts": ["parts"], "both": ["one", "parts"]}[args.request]
    log(f"{path.name}: BatchedEngine with {args.agents} sequences, {args.threads} threads; budget {args.budget}")

    budget = args.budget
    settings_list = {"off": [False], "on": [True], "both": [False, True]}[args.compression]
    cases = [(r, c) for r in requests for c in settings_list]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        _name(r, c): {"thinking": [], "contemplating": []} for r, c in cases
    }

    async def session() -> None:
        backend = EmbeddedBackend(path, engine)
        loop = asyncio.get_running_loop()
        try:
            warm = ChatRequest(args.model, (Message("user", texts["one"]),), params)
            await thinking_run(backend, warm, 16, False)  # load the model and warm up
            for r in range(args.rounds):
                for request, c in cases:
                    name, chat = _name(request, c), ChatRequest(args.model, (Message("user", texts[request]),), params)
                    strategy = "attempts" if request == "one" else "auto"
                    mine = results[name]
                    res = await loop.run_in_executor(
                        None, measured, lambda c=c, chat=chat: _sync(thinking_run(backend, chat, budget, c))
                    )
                    mine["thinking"].append(res)
                    log(f"round {r + 1}/{args.rounds} {name}: thinking {res['wall_s']:.1f}s "
                        f"({res['reasoning_tokens']} reasoning tok)")  # fmt: skip
                    res = await loop.run_in_executor(
                        None, measured, lambda c=c, chat=chat, s=strategy: _sync(
                            contemplating_run(backend, chat, budget, c, args.agents, s))
                    )  # fmt: skip
                    mine["contemplating"].append(res)
                    log(f"round {r + 1}/{args.rounds} {name}: contemplating plan {res['plan_s']:.1f}s, "
                        f"{res['agents']} {res['strategy']} {res['phase_s']:.1f}s, "
                        f"synthesis {res['synthesis_s']:.1f}s, "
                        f"whole {res['wall_s']:.1f}s ({res['reasoning_tokens']} reasoning tok)")  # fmt: skip
        finally:
            await backend.close()

    def _sync(coro: Any) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(coro, main_loop).result()

    main_loop = asyncio.new_event_loop()
    main_loop.run_until_complete(session())
    return report(args, results)


def _name(request: str, compression: bool) -> str:
    return f"{request}, compression {'on' if compression else 'off'}"


def report(args: argparse.Namespace, results: dict[str, dict[str, list[dict[str, Any]]]]) -> int:
    print(f"\n{args.agents} agents, budget {args.budget} reasoning tokens per chain; medians of {args.rounds} rounds")
    print(f"{'':<24}{'thinking s':>11}{'plan s':>8}{'agents s':>10}{'ratio':>8}{'synthesis s':>13}"
          f"{'whole s':>9}{'ratio':>8}")  # fmt: skip
    summary = {}
    for name, r in results.items():
        t = statistics.median(x["wall_s"] for x in r["thinking"])
        plan, phase, synthesis, whole = (statistics.median(x[k] for x in r["contemplating"])
                                         for k in ("plan_s", "phase_s", "synthesis_s", "wall_s"))  # fmt: skip
        print(f"{name:<24}{t:>11.1f}{plan:>8.1f}{phase:>10.1f}{phase / t:>7.2f}x{synthesis:>13.1f}"
              f"{whole:>9.1f}{whole / t:>7.2f}x")  # fmt: skip
        if len(plans := {(x["strategy"], x["agents"]) for x in r["contemplating"]}) > 1:
            print(f"  WARNING: the rounds of {name} were planned differently: {sorted(plans)}")
        summary[name] = {"thinking_s": t, "plan_s": plan, "phase_s": phase, "synthesis_s": synthesis,
                         "whole_s": whole, "phase_ratio": phase / t, "whole_ratio": whole / t}  # fmt: skip
    print("goal: the agents' phase <= 2.5x one Thinking run")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "agents": args.agents, "budget": args.budget,
                                         "threads": args.threads, "summary": summary, "rounds": results},
                                        indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
