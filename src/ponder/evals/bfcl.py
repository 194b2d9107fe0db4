"""BFCL v4 (Berkeley Function Calling Leaderboard) categories that ship in
`bfcl-eval==2026.3.23`, and an AST-match scorer for tool calls.

Fetched with pip into the cache and read out of the wheel. BFCL writes its tools
in its own dialect (`"type": "dict"`, `"float"`, `"tuple"`, `"any"`, and dotted
function names); `openai_tools` turns them into the JSON schemas and names the
OpenAI API takes, as BFCL's own OpenAI handler does (dots become underscores).

Scoring follows BFCL's AST checker: a call matches a ground-truth call when the
function is the same, every argument given is one of the allowed values for its
parameter, and every parameter left out is optional there ("" among its values).
Strings compare without case, spaces or punctuation; an int passes for a float.
Parallel calls match as a set, in any order. `irrelevance` is right when the model
calls nothing.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.errors import ModelSourceError
from ponder.wheels import Progress, download

PACKAGE = "bfcl-eval==2026.3.23"
CATEGORIES = ("simple_python", "multiple", "parallel", "irrelevance")
COUNTS = {"simple_python": 400, "multiple": 200, "parallel": 200, "irrelevance": 240}
_TYPES = {"dict": "object", "float": "number", "tuple": "array"}


@dataclass(frozen=True)
class Item:
    id: str
    category: str
    messages: list[dict[str, Any]]
    functions: list[dict[str, Any]]
    ground_truth: list[dict[str, dict[str, list[Any]]]]  # empty for irrelevance


def load(cache_dir: Path, progress: Progress, categories: tuple[str, ...] = CATEGORIES) -> list[Item]:
    (wheel,) = download([PACKAGE], cache_dir / "evals", progress, "the BFCL data")
    items = []
    with zipfile.ZipFile(wheel) as zf:
        for cat in categories:
            questions = _jsonl(zf, f"bfcl_eval/data/BFCL_v4_{cat}.json")
            answers = {} if cat == "irrelevance" else {
                d["id"]: d["ground_truth"] for d in _jsonl(zf, f"bfcl_eval/data/possible_answer/BFCL_v4_{cat}.json")
            }  # fmt: skip
            if len(questions) != COUNTS[cat]:
                raise ModelSourceError(f"{PACKAGE}: expected {COUNTS[cat]} {cat} items, found {len(questions)}")
            for q in questions:
                items.append(Item(q["id"], cat, q["question"][0], q["function"], answers.get(q["id"], [])))
    return items


def _jsonl(zf: zipfile.ZipFile, member: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in zf.read(member).decode().splitlines() if line.strip()]


# --- BFCL's dialect -> the OpenAI API -------------------------------------------------


def api_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]


def openai_tools(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": api_name(f["name"]), "description": f.get("description", ""),
                                              "parameters": _schema(f.get("parameters", {}))}}
            for f in functions]  # fmt: skip


def _schema(s: Any) -> Any:
    if isinstance(s, list):
        return [_schema(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {k: _schema(v) for k, v in s.items() if k != "type"}
    t = s.get("type")
    if isinstance(t, str) and t != "any":
        out["type"] = _TYPES.get(t, t)
    if out.get("type") == "object" and "properties" not in out:
        out["properties"] = {}
    return out


# --- scoring ------------------------------------------------------------------------


def score(item: Item, calls: list[tuple[str, dict[str, Any]]]) -> bool:
    """Whether the model's calls (API name, parsed arguments) answer the item."""
    if item.category == "irrelevance":
        return not calls
    if len(calls) != len(item.ground_truth):
        return False
    names = {api_name(f["name"]): f["name"] for f in item.functions}
    remaining = list(item.ground_truth)
    for name, args in calls:
        real = names.get(name)
        match = next((gt for gt in remaining if real in gt and _args_match(args, gt[real])), None)
        if match is None:
            return False
        remaining.remove(match)
    return True


def _args_match(args: dict[str, Any], allowed: dict[str, list[Any]]) -> bool:
    if set(args) - set(allowed):
        return False
    for param, values in allowed.items():
        if param not in args:
            if "" not in values:
                return False
        elif not any(_same(args[param], v) for v in values if v != ""):
            return False
    return True


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want or (got == want and type(got) is type(want))
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return float(got) == float(want)
    if isinstance(want, str) and isinstance(got, str):
        return _norm(got) == _norm(want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        # nested dicts hold lists of allowed values per key, as the top level does
        return all(k in want for k in got) and all(
            (k not in got and "" in (v if isinstance(v, list) else [v]))
            or (k in got and any(_same(got[k], x) for x in (v if isinstance(v, list) else [v]) if x != ""))
            for k, v in want.items()
        )
    return bool(got == want)


def _norm(s: str) -> str:
    return re.sub(r"[\s,./\-_*^'\"]", "", s).lower()
