"""Requests that ask in words for the code tool, in Thinking: is the tool called?

    .venv/bin/python bench/tool_asks.py [--model qwen2.5-coder-1.5b] [--mode thinking]
        [--json bench/results/tool-asks.json]

Twenty requests of three kinds (arithmetic, dates, string work), each asking in its
own words for Python to be used. Each runs once in the given mode with the code tool
on (the sandbox), greedy, on the embedded engine. Reported per request: whether the
tool was called, and whether the answer holds the right result, which this script
computes itself with Python. Goal: the tool is called in at least 19 of 20.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

from ponder import modes
from ponder.backends.embedded import EmbeddedBackend
from ponder.config import load_settings
from ponder.models import ModelStore
from ponder.tools import Toolbox, sandbox
from ponder.types import ChatRequest, Message, SamplingParams, collect

_D = datetime.date
REQUESTS: list[tuple[str, str, Any]] = [
    ("arithmetic", "Use Python to compute 987654321 * 123456789 exactly.", 987654321 * 123456789),
    ("arithmetic", "Using Python, what is 2 to the power of 100?", 2**100),
    ("arithmetic", "Run some code to find the sum of all integers from 1 to 12345.", sum(range(1, 12346))),
    (
        "arithmetic",
        "Calculate 17 factorial with Python.",
        1 * 2 * 3 * 4 * 5 * 6 * 7 * 8 * 9 * 10 * 11 * 12 * 13 * 14 * 15 * 16 * 17,
    ),
    ("arithmetic", "With code, find how many primes are below 1000.", 168),
    ("arithmetic", "Use the code interpreter to compute 355/113 to 8 decimal places.", f"{355 / 113:.8f}"),
    ("arithmetic", "Compute the greatest common divisor of 462 and 1071 in Python.", 21),
    (
        "dates",
        "Use Python to count the days between 2024-01-15 and 2024-11-02.",
        (_D(2024, 11, 2) - _D(2024, 1, 15)).days,
    ),
    ("dates", "Using code, tell me which weekday 2031-07-04 falls on.", _D(2031, 7, 4).strftime("%A")),
    ("dates", "Run Python to find the date 90 days after 2025-12-20.", str(_D(2025, 12, 20) + datetime.timedelta(90))),
    (
        "dates",
        "With Python, how many Fridays are there in the year 2027?",
        sum(1 for d in range(365) if (_D(2027, 1, 1) + datetime.timedelta(d)).weekday() == 4),
    ),
    ("dates", "Check with code whether 2100 is a leap year.", "not"),
    ("dates", "Use Python to find how many weeks and days are in 1000 days.", "142"),
    ("strings", "Use Python to count the vowels in 'onomatopoeia'.", sum(c in "aeiou" for c in "onomatopoeia")),
    ("strings", "Using code, reverse the string 'stressed desserts'.", "stressed desserts"[::-1]),
    ("strings", "Run a program that counts the words in 'the quick brown fox jumps over the lazy dog'.", 9),
    ("strings", "With Python, count how many times 's' appears in 'mississippi'.", "mississippi".count("s")),
    (
        "strings",
        "Use Python to check if 'Was it a car or a cat I saw' is a palindrome, ignoring case and spaces.",
        "True",
    ),
    (
        "strings",
        "Compute the SHA-256 of the string 'ponder' in Python and give the first 12 hex digits.",
        __import__("hashlib").sha256(b"ponder").hexdigest()[:12],
    ),
    ("strings", "Using Python, sort the letters of 'algorithm' alphabetically.", "".join(sorted("algorithm"))),
]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--mode", default="thinking")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    settings = load_settings()
    path = ModelStore(settings.data_dir / "models", settings.cache_dir).resolve(args.model)
    backend = EmbeddedBackend(path, settings.engine)
    box = Toolbox({sandbox.NAME: sandbox.hosted()}, settings.tools.max_steps)
    rows = []
    try:
        for n, (kind, text, expected) in enumerate(REQUESTS, 1):
            chat = ChatRequest(args.model, (Message("user", text),), SamplingParams(max_tokens=512, temperature=0.0),
                               tools=box.specs)  # fmt: skip
            req = modes.resolve(chat, settings.modes, mode=args.mode, toolbox=box)
            t0 = time.perf_counter()
            done = await collect(modes.run(backend, req))
            called = any(r.kind == "code_interpreter" for r in done.tool_runs)
            right = str(expected).lower().replace(",", "") in done.text.lower().replace(",", "")
            rows.append({"kind": kind, "request": text, "called": called, "right": right, "answer": done.text.strip(),
                         "tokens": done.usage.completion_tokens, "latency_s": time.perf_counter() - t0})  # fmt: skip
            print(f"[{n}/{len(REQUESTS)}] {kind:10} called={called!s:5} right={right!s:5} "
                  f"{done.usage.completion_tokens} tok  {text[:60]}", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        await backend.close()
    called, right = sum(r["called"] for r in rows), sum(r["right"] for r in rows)
    n = len(rows)
    print(f"{args.mode}: the tool was called in {called}/{n} requests; the answer was right in {right}/{n}")
    if args.json:
        args.json.write_text(json.dumps({"mode": args.mode, "called": called, "right": right, "items": len(rows),
                                         "rows": rows}, indent=2) + "\n")  # fmt: skip
    return 0 if called >= len(rows) - 1 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
