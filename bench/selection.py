"""How far choosing among the answers a run already has could go: the ceiling of a vote.

    .venv/bin/python bench/selection.py bench/results/gsm8k-modes-100.json [more runs on the same items]

Reads `ponder bench modes` results (GSM8K's answers are numbers; TruthfulQA's and
HellaSwag's, an option's letter) and treats
every answer they hold as a source: each row's answer (bare, thinking, ...) and, for
Contemplating and Auto, each agent's vote by method and place
("contemplating/program#2"). Prints, over the items every file holds, each
source's accuracy, the oracle (an item counts when any source has its answer
right), and a plain majority vote over the sources that are not themselves a
choice among others (all but the Contemplating and Auto rows), and over the agents
alone; ties go to the source first in name order. A judge or a weighting can only
pick among answers that are there: the oracle bounds it, and the votes show what
counting does. Then, per file, how its Contemplating and Auto rows settled (`routes`),
and what a higher Auto bar would have done (`bars`).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

DERIVED = ("contemplating", "auto")  # rows that chose among answers of their own
Answer = float | str | None
Rows = list[dict[str, Any]]


def value(text: Any) -> Answer:
    """An answer as it compares: a number, or an option's letter (lower case)."""
    try:
        return round(float(text), 6)
    except (TypeError, ValueError):
        return text.lower() if isinstance(text, str) and len(text) == 1 and text.isalpha() else None


def sources(tag: str, rows: Rows) -> tuple[dict[str, dict[str, Answer]], dict[str, Answer]]:
    """Per item, each source's answer; and each item's expected answer."""
    answers: dict[str, dict[str, Answer]] = defaultdict(dict)
    expected: dict[str, Answer] = {}
    for row in rows:
        expected[row["id"]] = value(row["expected"])
        answers[row["id"]][f"{tag}:{row['config']}"] = value(row["got"])
        seen: Counter[str] = Counter()
        for agent in row.get("agents") or []:
            method = agent["method"]
            seen[method] += 1
            answers[row["id"]][f"{tag}:{row['config']}/{method}#{seen[method]}"] = value(agent["vote"])
    return answers, expected


def vote(answers: list[Answer]) -> Answer:
    counted = Counter(a for a in answers if a is not None)
    if not counted:
        return None
    top = max(counted.values())
    return next(a for a in answers if a is not None and counted[a] == top)


def main(paths: list[Path]) -> int:
    merged: dict[str, dict[str, Answer]] = defaultdict(dict)
    expected: dict[str, Answer] = {}
    holds: list[set[str]] = []
    runs = {path.stem: json.loads(path.read_text())["rows"] for path in paths}  # each file read once
    for tag, rows in runs.items():
        answers, exp = sources(tag, rows)
        holds.append(set(answers))
        expected.update(exp)
        for item, got in answers.items():
            merged[item].update(got)
    items = sorted(i for i in set.intersection(*holds) if expected[i] is not None)  # answers that compare
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
    paired(runs, expected, items)
    for tag, rows in runs.items():
        routes(tag, rows)
        bars(rows)
        disagreed(rows)
    return 0


def paired(runs: dict[str, Rows], expected: dict[str, Answer], items: list[str]) -> None:
    """For a row two files both hold, item by item: right in one and wrong in the other."""
    tags = list(runs)
    for n, a in enumerate(tags):
        for b in tags[n + 1 :]:
            right = {t: {(r["config"], r["id"]): bool(r["correct"]) for r in runs[t]} for t in (a, b)}
            for config in sorted({c for c, _ in right[a]} & {c for c, _ in right[b]}):
                both = [i for i in items if (config, i) in right[a] and (config, i) in right[b]]
                gained = sum(right[a][config, i] and not right[b][config, i] for i in both)
                lost = sum(right[b][config, i] and not right[a][config, i] for i in both)
                print(f"  {config:<14} {a} against {b}, on {len(both)} items: right only in {a} on {gained}, "
                      f"only in {b} on {lost}")  # fmt: skip


def bars(rows: Rows) -> None:
    """What Auto would have scored and spent with a higher bar (`auto_confidence`), read
    from the rows the run has: an item Auto kept whose first answer's confidence is
    under the bar would have escalated, and is counted as Contemplating's row on it
    (its right and its tokens) plus the tokens Auto had spent on the first answer.
    That is a replay, not a run: an escalation starts from Auto's first answer where
    Contemplating starts afresh, so it is only as good as their agreement on the items
    Auto did escalate, which the first line prints."""
    by_id: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_id[r["id"]][r["config"]] = r
    items = [x for x in by_id.values() if "auto" in x and "contemplating" in x]
    if not items:
        return
    escalated = [x for x in items if x["auto"]["route"].startswith("escalated")]
    kept = sorted((x for x in items if x["auto"]["route"] == "direct" and x["auto"]["confidence"] is not None),
                  key=lambda x: x["auto"]["confidence"])  # fmt: skip
    if escalated:
        print(f"  auto bar: on the {len(escalated)} items Auto escalated, Auto was right on "
              f"{sum(x['auto']['correct'] for x in escalated)} and Contemplating on "
              f"{sum(x['contemplating']['correct'] for x in escalated)}, at "
              f"{_mean(x['auto'] for x in escalated):.0f} and {_mean(x['contemplating'] for x in escalated):.0f} "
              "tokens an item")  # fmt: skip
        alone = [
            x["thinking"] for x in escalated if "thinking" in x and isinstance(value(x["thinking"]["expected"]), float)
        ]
        if alone:  # on a question with numbers, Thinking's answer is the program Auto starts from
            print(f"  auto bar: Thinking, the first answer alone, was right on {sum(r['correct'] for r in alone)} "
                  f"of those {len(alone)}, at {_mean(alone):.0f} tokens an item")  # fmt: skip
    for label, group in (("kept", kept), ("escalated", escalated)):
        sure = sorted(x["auto"]["confidence"] for x in group if x["auto"]["confidence"] is not None)
        if sure:
            print(f"  auto bar: the first answer's confidence on the {label} items, {sure[0]:.2f} to {sure[-1]:.2f}")
    wrong = [x for x in kept if not x["auto"]["correct"]]
    if wrong:
        saved = [x for x in wrong if x["contemplating"]["correct"]]
        split = sum(len({value(a["vote"]) for a in x["contemplating"]["agents"] if a["method"] == "program"}) > 1
                    for x in saved)  # fmt: skip
        print(f"  auto bar: of the {len(wrong)} kept answers that were wrong, Contemplating was right on {len(saved)}; "
              f"its programs disagreed on {split} of those")  # fmt: skip
    spent = _mean(x["contemplating"] for x in items)
    for n in sorted({*range(0, len(kept), max(1, len(kept) // 8)), len(kept)}):  # a bar that escalates n more
        more, stay = kept[:n], kept[n:]
        moved = {x["auto"]["id"] for x in more}
        right = sum(x["contemplating" if x["auto"]["id"] in moved else "auto"]["correct"] for x in items)
        tokens = (sum(x["auto"]["completion_tokens"] for x in items)
                  + sum(x["contemplating"]["completion_tokens"] for x in more)) / len(items)  # fmt: skip
        bar = f"{stay[0]['auto']['confidence']:.2f}" if stay else "inf"
        print(
            f"  auto bar up to {bar:>5}: {n:>3} more escalated, {right:>3} right of {len(items)}, "
            f"{tokens:>4.0f} tokens an item ({tokens / spent:.2f}x Contemplating's)"
        )


def disagreed(rows: Rows) -> None:
    """On a lettered set, the items where Contemplating's first wave split (the letter
    the model named against the option its words favour): how often each source was
    right there, the chains that decided between them included."""
    answers, expected = sources("", rows)
    split = [i for i, got in answers.items() if (d := got.get(":contemplating/direct#1")) is not None
             and (o := got.get(":contemplating/options#1")) is not None and d != o]  # fmt: skip
    if not split:
        return
    thinking = [r for r in rows if r["config"] == "thinking"]
    plain = [r for r in thinking if not r["reasoning_tokens"]]
    if plain:
        print(f"  thinking wrote no chain on {len(plain)} of {len(thinking)} items ({sum(r['correct'] for r in plain)} "
              f"right)")  # fmt: skip
    names = sorted({n for i in split for n in answers[i]})
    right = ", ".join(f"{n.lstrip(':')} {sum(answers[i].get(n) == expected[i] for i in split)}" for n in names)
    print(f"  where Contemplating's letter and the options' words disagreed ({len(split)} items), right: {right}")


def _mean(rows: Any) -> float:
    return statistics.mean(r["completion_tokens"] for r in rows)


def routes(tag: str, rows: Rows) -> None:
    """How each Contemplating and Auto row of one file (`tag`) settled its answer: per route,
    rows, right and tokens an item; on the routes that choose among differing
    answers (judge, split), how often the answer was the direct agent's; why agents
    stopped early; and, where a direct answer and a chain both voted, how often the
    chain's confidence was the lower; and on agreement reached without the direct
    answer (stopped unfinished), whether the `bare` row, the same request run to its
    end alone, agreed: the check that waiting for the direct answer would have made."""
    bare = {r["id"]: value(r["got"]) for r in rows if r["config"] == "bare"}
    rows = [r for r in rows if r["config"] in DERIVED]
    print(f"{tag}:")
    for config in DERIVED:
        mine = [r for r in rows if r["config"] == config]
        by: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in mine:
            by[r["route"] or "(as Instant)"].append(r)
        for route, group in sorted(by.items()):
            right = sum(r["correct"] for r in group)
            tokens = sum(r["completion_tokens"] for r in group) / len(group)
            line = f"  {config:<14} {route:<22} {len(group):>3} rows {right:>3} right {tokens:>5.0f} tokens an item"
            if route.endswith(("judge", "split")):
                direct = [r for r in group if value(r["got"]) == _direct_vote(r)]
                line += f"; the direct answer's on {len(direct)} ({sum(r['correct'] for r in direct)} right)"
                line += f", the direct answer right on {sum(_direct_vote(r) == value(r['expected']) for r in group)}"
            print(line)
            unchecked = [r for r in group if route == "agreement" and r["id"] in bare and _direct_vote(r) is None]
            if unchecked:
                agree = [r for r in unchecked if bare[r["id"]] == value(r["got"])]
                differ = [r for r in unchecked if r not in agree]
                print(f"  {config:<14} agreement without the direct answer ({len(unchecked)}): bare agreed on "
                      f"{len(agree)} ({sum(r['correct'] for r in agree)} right), differed on {len(differ)} "
                      f"({sum(r['correct'] for r in differ)} right)")  # fmt: skip
        unvoted = Counter((a["method"], a.get("stopped") or "?") for r in mine for a in r.get("agents") or []
                          if not a["ok"])  # fmt: skip
        if unvoted:  # "?": a run from before rows said why
            stops = ", ".join(f"{m} ({why}) {n}" for (m, why), n in sorted(unvoted.items()))
            print(f"  {config:<14} agents with no vote: {stops}")
        both = [(d, c) for r in mine if (d := _confidence(r, "direct")) is not None
                and (c := _confidence(r, "chain")) is not None]  # fmt: skip
        if both:
            lower = sum(c < d for d, c in both)
            print(f"  {config:<14} where a chain and the direct answer both voted ({len(both)}), the chain was "
                  f"less sure on {lower}")  # fmt: skip


def _direct_vote(row: dict[str, Any]) -> Answer:
    return next((value(a["vote"]) for a in row.get("agents") or [] if a["method"] == "direct"), None)


def _confidence(row: dict[str, Any], method: str) -> float | None:
    """The confidence of the first agent of `method` that voted."""
    return next((a["confidence"] for a in row.get("agents") or [] if a["method"] == method and a["vote"] is not None),
                None)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main([Path(p) for p in sys.argv[1:]]))
