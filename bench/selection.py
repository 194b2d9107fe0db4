"""How far choosing among the answers a run already has could go: the ceiling of a vote.

    .venv/bin/python bench/selection.py bench/results/gsm8k-modes-100.json [more runs on the same items]

Reads `ponder bench modes` results on GSM8K (answers that are numbers) and treats
every answer they hold as a source: each row's answer (bare, thinking, ...) and, for
Contemplating and Auto, each agent's vote by method and place
("contemplating/program#2"). Prints, over the items every file holds, each
source's accuracy, the oracle (an item counts when any source has its answer
right), and a plain majority vote over the sources that are not themselves a
choice among others (all but the Contemplating and Auto rows), and over the agents
alone; ties go to the source first in name order. A judge or a weighting can only
pick among answers that are there: the oracle bounds it, and the votes show what
counting does.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

DERIVED = ("contemplating", "auto")  # rows that chose among answers of their own


def value(text: Any) -> float | None:
    try:
        return round(float(text), 6)
    except (TypeError, ValueError):
        return None


def sources(path: Path) -> tuple[dict[str, dict[str, float | None]], dict[str, float | None]]:
    """Per item, each source's answer; and each item's expected answer."""
    answers: dict[str, dict[str, float | None]] = defaultdict(dict)
    expected: dict[str, float | None] = {}
    tag = path.stem
    for row in json.loads(path.read_text())["rows"]:
        expected[row["id"]] = value(row["expected"])
        answers[row["id"]][f"{tag}:{row['config']}"] = value(row["got"])
        seen: Counter[str] = Counter()
        for agent in row.get("agents") or []:
            method = agent["method"]
            seen[method] += 1
            answers[row["id"]][f"{tag}:{row['config']}/{method}#{seen[method]}"] = value(agent["vote"])
    return answers, expected


def vote(answers: list[float | None]) -> float | None:
    counted = Counter(a for a in answers if a is not None)
    if not counted:
        return None
    top = max(counted.values())
    return next(a for a in answers if a is not None and counted[a] == top)


def main(paths: list[Path]) -> int:
    merged: dict[str, dict[str, float | None]] = defaultdict(dict)
    expected: dict[str, float | None] = {}
    holds: list[set[str]] = []
    for path in paths:
        answers, exp = sources(path)
        holds.append(set(answers))
        expected.update(exp)
        for item, got in answers.items():
            merged[item].update(got)
    items = sorted(i for i in set.intersection(*holds) if expected[i] is not None)  # answers that are numbers
    names = sorted({s for i in items for s in merged[i]})
    print(f"{len(items)} items held by every file")
    for name in names:
        have = [i for i in items if merged[i].get(name) is not None]
        right = sum(merged[i][name] == expected[i] for i in have)
        print(f"  {name:<48} {right:>3} right of {len(have):>3} answered")
    agents = [n for n in names if "/" in n]
    plain = [n for n in names if "/" in n or n.rpartition(":")[2].removesuffix("+code") not in DERIVED]
    oracle = sum(any(merged[i].get(n) == expected[i] for n in names) for i in items)
    print(f"oracle (any source right)                          {oracle:>3}")
    for label, chosen in (("the plain sources", plain), ("the agents alone", agents)):
        right = sum(vote([merged[i].get(n) for n in chosen]) == expected[i] for i in items)
        print(f"majority vote over {label:<31} {right:>3}")
    return 0


if __name__ == "__main__":
    sys.exit(main([Path(p) for p in sys.argv[1:]]))
