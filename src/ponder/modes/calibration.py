"""A confidence in [0, 1] for an answer, from the evidence behind it (`modes.evidence`).

The evidence comes in four kinds (and one made of chains), each with its own features:

- `chain` (a Thinking run, or Auto's first chain): the answer's and the reasoning's
  lowest window, whether the budget cut it, whether a probe settled it, the share of
  answer probes that gave the final answer, whether the reasoning's own stated
  conclusion is the answer, and for a lettered question the chosen option's pooled probability;
- `program` (a Thinking or Auto answer a program computed: `modes.computed`): its
  code's lowest and last window, whether it needed a repair, whether the number is
  round;
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

import numpy as np

FITTED = Path(__file__).with_name("calibration.json")
METHODS = ("agreement", "pooled", "vote", "judge", "split")
PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0)  # the L2 strengths cross-validation chooses from


def kind(evidence: dict[str, Any]) -> str:
    if "parts" in evidence:
        return "parts"
    if "voters" in evidence:
        return "attempts"
    if "code_window" in evidence:
        return "program"
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
    elif k == "program":
        names = ("code_window", "code_tail")
        flags = [float(bool(evidence.get("repaired"))), float(bool(evidence.get("round_number")))]
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


def fit(rows: Sequence[tuple[dict[str, Any], bool]], items: Sequence[str] | None = None) -> dict[str, Any]:
    """A logistic model per kind, from (evidence, right) pairs: weights on standardised
    features, with an L2 penalty whose strength is chosen by 5-fold cross-validation
    on the rows themselves (the lowest held-out log loss; the strongest of equals).
    `items` names the question each row answered: the rows of one item share a fold
    (Auto's first chain is Thinking's, so an item would otherwise be judged on its
    own copy); without them, rows with the same features do. Folds follow the sorted
    names, so the rows' order does not change the fit. Kinds with fewer than 10
    rows, or with only right or only wrong answers, get no model."""
    models: dict[str, Any] = {}
    names = list(items) if items is not None else [repr(features(e)) for e, _ in rows]
    for k in ("chain", "program", "direct", "attempts"):
        mine = [(features(e), right, name) for (e, right), name in zip(rows, names, strict=True) if kind(e) == k]
        if len(mine) < 10 or len({right for _, right, _ in mine}) < 2:
            continue
        x = np.array([f for f, _, _ in mine], dtype=float)
        y = np.array([1.0 if right else 0.0 for _, right, _ in mine])
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0
        z = (x - mean) / std
        rank = {name: i for i, name in enumerate(sorted({name for _, _, name in mine}))}
        folds = np.array([rank[name] % 5 for _, _, name in mine])
        loss = {l2: sum(_log_loss(z[folds == f], y[folds == f], *_logistic(z[folds != f], y[folds != f], l2))
                        for f in range(5)) for l2 in PENALTIES}  # fmt: skip
        l2 = min(PENALTIES, key=lambda p: (round(loss[p], 6), -p))
        w, b = _logistic(z, y, l2)
        models[k] = {"mean": mean.tolist(), "std": std.tolist(), "weights": w.tolist(), "bias": b, "l2": l2,
                     "rows": len(mine)}  # fmt: skip
    return models


def auroc(pairs: Sequence[tuple[float, bool]]) -> float | None:
    """The area under the ROC curve of scores for right against wrong answers: the
    chance a right one scores above a wrong one (ties count half); None without both."""
    pos = [p for p, r in pairs if r]
    neg = [p for p, r in pairs if not r]
    if not pos or not neg:
        return None
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))


def _logistic(z: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weights and bias minimising the summed log loss plus l2 / 2 times the squared
    weights (the bias is not penalised), by Newton's method: the loss is convex, and
    the penalty keeps every step well defined."""
    x = np.hstack([z, np.ones((len(y), 1))])
    penalty = np.diag([l2] * z.shape[1] + [1e-6])
    theta = np.zeros(x.shape[1])
    for _ in range(100):
        p = _sigmoids(x @ theta)
        grad = x.T @ (p - y) + penalty @ theta
        step = np.linalg.solve(x.T @ (x * (p * (1 - p))[:, None]) + penalty, grad)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return theta[:-1], float(theta[-1])


def _log_loss(z: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    p = np.clip(_sigmoids(z @ w + b), 1e-6, 1 - 1e-6)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())


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


def _sigmoids(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
