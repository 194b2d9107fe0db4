"""A confidence in [0, 1] for an answer, from the evidence behind it (`modes.evidence`).

The evidence comes in three kinds, each with its own features:

- `chain` (a Thinking run, or Auto's first chain): the answer's and the reasoning's
  lowest window, whether the budget cut it, whether a probe settled it, the share of
  answer probes that gave the final answer, whether the reasoning's own stated
  conclusion is the answer, and for a lettered question the chosen option's pooled
  probability;
- `direct` (Auto's first answer to a lettered question): the answer's window, the
  option's probability;
- `attempts` (Contemplating, or Auto once it escalated): the share of voters that
  reached the answer, how many answers there were, whether a program agreed, the
  quoted attempt's confidence, the option's probability, and how it was decided;
- `parts` (Contemplating's sub-tasks, written up as one answer): no model of its own.
  The answer is right when every part is, so its confidence is the product of the
  parts' (each a chain), and None when any part has none (it failed, or no model).

A figure that is missing (no log-probabilities, no program) counts as 0 with a flag
that says so. Each kind has a logistic model over its standardised features, fitted
once on benchmark rows (`bench/calibrate.py`) and shipped in `calibration.json`
beside this file. Without a fitted model for its kind an answer has no confidence
(None), never a made-up one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

FITTED = Path(__file__).with_name("calibration.json")
METHODS = ("agreement", "pooled", "vote", "judge")


def kind(evidence: dict[str, Any]) -> str:
    if "parts" in evidence:
        return "parts"
    if "voters" in evidence:
        return "attempts"
    return "chain" if "reasoning_window" in evidence else "direct"


def features(evidence: dict[str, Any]) -> list[float]:
    """The feature vector of `evidence`, for its kind."""
    k = kind(evidence)
    names: tuple[str, ...]
    if k == "chain":
        names = ("answer_window", "reasoning_window", "option_probability", "stated_agrees")
        probes = evidence.get("probes") or 0
        flags = [float(bool(evidence.get("forced"))), float(bool(evidence.get("settled"))),
                 (evidence.get("probes_agreeing") or 0) / probes if probes else 0.0, float(probes == 0)]  # fmt: skip
    elif k == "direct":
        names, flags = ("answer_window", "option_probability"), []
    else:
        names = ("winner_confidence", "option_probability", "program_agrees")
        voters = evidence.get("voters") or 0
        share = (evidence.get("agreeing") or 0) / voters if voters else 0.0
        flags = [share, float(evidence.get("answers") or 0)]
        flags += [float(evidence.get("method") == m) for m in METHODS]
    out: list[float] = []
    for name in names:
        value = evidence.get(name)
        out += [0.0, 1.0] if value is None else [float(value), 0.0]
    return out + flags


def fit(rows: Sequence[tuple[dict[str, Any], bool]], l2: float = 1.0, steps: int = 3000) -> dict[str, Any]:
    """A logistic model per kind, from (evidence, right) pairs: weights on standardised
    features, by gradient descent with an L2 penalty. Kinds with fewer than 10 rows,
    or with only right or only wrong answers, get no model."""
    models: dict[str, Any] = {}
    for k in ("chain", "direct", "attempts"):
        mine = [(features(e), right) for e, right in rows if kind(e) == k]
        if len(mine) < 10 or len({right for _, right in mine}) < 2:
            continue
        x = [f for f, _ in mine]
        y = [1.0 if right else 0.0 for _, right in mine]
        dims = len(x[0])
        mean = [sum(row[j] for row in x) / len(x) for j in range(dims)]
        std = [math.sqrt(sum((row[j] - mean[j]) ** 2 for row in x) / len(x)) or 1.0 for j in range(dims)]
        z = [[(row[j] - mean[j]) / std[j] for j in range(dims)] for row in x]
        w, b = [0.0] * dims, 0.0
        rate = 0.1
        for _ in range(steps):
            grad_w, grad_b = [l2 * wj / len(z) for wj in w], 0.0
            for row, target in zip(z, y):
                err = _sigmoid(b + sum(wj * v for wj, v in zip(w, row))) - target
                grad_b += err / len(z)
                for j, v in enumerate(row):
                    grad_w[j] += err * v / len(z)
            w = [wj - rate * g for wj, g in zip(w, grad_w)]
            b -= rate * grad_b
        models[k] = {"mean": mean, "std": std, "weights": w, "bias": b, "rows": len(mine)}
    return models


def confidence(evidence: dict[str, Any], models: dict[str, Any] | None = None) -> float | None:
    """How likely the answer is right, by the fitted model of its kind; None without one."""
    models = fitted() if models is None else models
    if kind(evidence) == "parts":
        each = [None if p.get("failed") else confidence(p, models) for p in evidence["parts"]]
        return None if not each or None in each else math.prod(p for p in each if p is not None)
    model = models.get(kind(evidence))
    if model is None:
        return None
    x = features(evidence)
    if len(x) != len(model["weights"]):
        return None
    z = (model["bias"] + sum(w * (v - m) / s for w, v, m, s in
                             zip(model["weights"], x, model["mean"], model["std"])))  # fmt: skip
    return _sigmoid(z)


@cache
def fitted() -> dict[str, Any]:
    """The shipped models (`calibration.json`), or none."""
    if not FITTED.exists():
        return {}
    data: dict[str, Any] = json.loads(FITTED.read_text())
    return data.get("models", {})


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
