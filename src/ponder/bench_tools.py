"""`ponder bench tools`: tool-calling accuracy on BFCL v4, through the server.

Each item goes through Ponder's own HTTP app (in-process, over an ASGI transport)
with the official openai SDK, as `tools` with `tool_choice: auto`, greedy, in
Instant mode: the path a user's agent framework takes. The calls that come back
are scored by AST match (`evals.bfcl.score`). Reports accuracy per category.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from ponder import results
from ponder.backends.registry import Registry
from ponder.evals import bfcl

MAX_TOKENS = 256


@dataclass
class Row:
    id: str
    category: str
    correct: bool
    calls: list[list[Any]]
    text: str
    latency_s: float


async def run(
    registry: Registry, model: str, categories: tuple[str, ...], limit: int | None, json_out: Path | None = None
) -> list[Row]:
    """Every item, in order. With `json_out`, the results so far are saved after each
    item, and items already in that file are not run again (resume)."""
    from ponder.server.app import create_app

    items = bfcl.load(registry.settings.cache_dir, lambda *a: None, categories)
    if limit is not None:  # the first `limit` of each category
        items = [it for c in categories for it in [x for x in items if x.category == c][:limit]]
    app = create_app(registry)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost/v1", timeout=600)
    client = openai.AsyncOpenAI(base_url="http://localhost/v1", api_key="unused", http_client=http,  # type: ignore[arg-type]
                                max_retries=0)  # fmt: skip
    rows = results.saved(json_out, Row)  # all of them, other categories too: the file keeps every result
    done = {r.id for r in rows}
    try:
        for n, item in enumerate(items, start=1):
            if item.id in done:
                continue
            t0 = time.perf_counter()
            try:
                r = await client.chat.completions.create(  # type: ignore[call-overload]
                    model=model, messages=item.messages, tools=bfcl.openai_tools(item.functions),
                    tool_choice="auto", temperature=0, max_tokens=MAX_TOKENS, extra_body={"mode": "instant"},
                )  # fmt: skip
            except openai.APIError as e:  # one failed item is a wrong answer, not the end of a long run
                print(f"[{item.category}] {item.id} failed: {e}", file=sys.stderr, flush=True)
                row = Row(item.id, item.category, False, [], f"error: {e}", time.perf_counter() - t0)
            else:
                message = r.choices[0].message
                calls = [(c.function.name, _args(c.function.arguments)) for c in message.tool_calls or []]  # type: ignore[union-attr]
                row = Row(item.id, item.category, bfcl.score(item, calls), [list(c) for c in calls],
                          message.content or "", time.perf_counter() - t0)  # fmt: skip
            rows.append(row)
            if json_out:
                results.save(json_out, rows, summarise(rows))
            mine = [x for x in rows if x.category == item.category]
            print(f"[{item.category}] {len(mine)}  {sum(x.correct for x in mine)}/{len(mine)} right  "
                  f"({n}/{len(items)} in all, last {row.latency_s:.1f}s)", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        await client.close()
    return rows


def _args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def summarise(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for cat in dict.fromkeys(r.category for r in rows):
        mine = [r for r in rows if r.category == cat]
        out.append({"category": cat, "items": len(mine), "accuracy": sum(r.correct for r in mine) / len(mine),
                    "mean_latency_s": statistics.mean(r.latency_s for r in mine)})  # fmt: skip
    return out


def table(summary: list[dict[str, Any]]) -> str:
    lines = [f"{'category':<16}{'items':>6}{'accuracy':>10}{'latency s':>11}"]
    lines += [f"{s['category']:<16}{s['items']:>6}{s['accuracy']:>10.1%}{s['mean_latency_s']:>11.1f}" for s in summary]
    return "\n".join(lines)


def write(rows: list[Row], summary: list[dict[str, Any]], json_out: Path | None) -> None:
    if json_out:
        results.save(json_out, rows, summary)
