"""Fit the confidence calibration on benchmark rows, and measure it on rows it never saw.

    .venv/bin/python bench/calibrate.py bench/results/truthfulqa-modes.json \\
        bench/results/hellaswag-modes.json bench/results/gsm8k-modes-100.json \\
        [--write src/ponder/modes/calibration.json] [--plot docs/calibration.png]
        [--json bench/results/calibration.json] [--set-aside RESULTS]

Reads the rows of `ponder bench modes` runs (each row's `evidence`, the figures its
answer rested on, and whether it was right) for the rows of Ponder's reasoning modes
(thinking, contemplating, auto). Fits on every TruthfulQA and HellaSwag row and on
the GSM8K items in even places of the sample (the first, third, ...), and measures
on the GSM8K items in odd places, per mode: the expected calibration error (10
equal-width bins, weighted by their rows) and the AUROC of the confidence for right
against wrong answers. The issue's goals: ECE <= 0.10 and AUROC >= 0.75, in
Thinking and in Contemplating. `--write` ships the fitted models; `--plot` draws the
reliability diagram of the held-out rows. `--set-aside` leaves a whole run out of
the fit (a data set of a kind it never saw, as the hidden sets are) and measures
the fit on it too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ponder.modes import calibration

MODES = ("thinking", "contemplating", "auto")


def load(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        data = json.loads(path.read_text())
        rows += [r for r in data["rows"] if r["config"] in MODES and r.get("evidence")]
    return rows


def split(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fitting rows (every multiple-choice row; GSM8K items in even places) and held-out ones."""
    gsm = list(dict.fromkeys(r["id"] for r in rows if r.get("data", "gsm8k") == "gsm8k"))  # in sample order
    held = {("gsm8k", i) for i in gsm[1::2]}

    def key(r: dict[str, Any]) -> tuple[str, str]:
        return r.get("data", "gsm8k"), r["id"]

    return [r for r in rows if key(r) not in held], [r for r in rows if key(r) in held]


def ece(pairs: list[tuple[float, bool]], bins: int = 10) -> float:
    total = 0.0
    for b in range(bins):
        inside = [(p, r) for p, r in pairs if b / bins <= p < (b + 1) / bins or (b == bins - 1 and p == 1.0)]
        if inside:
            gap = abs(sum(p for p, _ in inside) / len(inside) - sum(r for _, r in inside) / len(inside))
            total += gap * len(inside) / len(pairs)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--write", type=Path, help="write the fitted models here")
    ap.add_argument("--plot", type=Path, help="write the reliability diagram (held-out rows) here")
    ap.add_argument("--json", type=Path, help="write the held-out figures here")
    ap.add_argument("--set-aside", type=Path, action="append", default=[], metavar="RESULTS",
                    help="a run none of whose rows are fitted on, measured as a set of a kind the fit never "
                         "saw (repeatable); not with --write")  # fmt: skip
    args = ap.parse_args()
    if args.write and args.set_aside:
        ap.error("--set-aside measures a fit that is not the one to ship: leave out --write")
    rows = load(args.results)
    fitting, held = split(rows)
    models = calibration.fit([(r["evidence"], r["correct"]) for r in fitting],
                             [f"{r.get('data', 'gsm8k')}/{r['id']}" for r in fitting])  # fmt: skip
    print(f"fitted on {len(fitting)} rows: " + ", ".join(f"{k} {m['rows']}" for k, m in models.items()))
    report = measure(held, models, "held-out GSM8K rows")
    aside = {str(path): measure(load([path]), models, f"set-aside {path.stem} rows") for path in args.set_aside}
    if args.write:
        args.write.write_text(json.dumps({"fitted_on": [str(p) for p in args.results], "models": models},
                                         indent=2) + "\n")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"fitting_rows": len(fitting), "held_out": report,
                                         **({"set_aside": aside} if aside else {})}, indent=2) + "\n")  # fmt: skip
    if args.plot and report:
        plot(report, args.plot)
    return 0


def measure(rows: list[dict[str, Any]], models: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """Per mode, how the fitted `models` do on `rows`: ECE, AUROC, the share right and
    the mean confidence (printed, and returned with each row's pair)."""
    report = []
    for mode in MODES:
        pairs = [(p, r["correct"]) for r in rows if r["config"] == mode
                 if (p := calibration.confidence(r["evidence"], models)) is not None]  # fmt: skip
        if not pairs:
            continue
        e, a = ece(pairs), calibration.auroc(pairs)
        right, sure = sum(r for _, r in pairs) / len(pairs), sum(p for p, _ in pairs) / len(pairs)
        report.append({"mode": mode, "rows": len(pairs), "ece": round(e, 3),
                       "auroc": None if a is None else round(a, 3), "right": round(right, 3),
                       "mean_confidence": round(sure, 3), "pairs": [[round(p, 4), r] for p, r in pairs]})  # fmt: skip
        print(f"{mode:<14} {label} {len(pairs):>3}  right {right:.0%}  mean confidence {sure:.0%}  "
              f"ECE {e:.3f}  AUROC {'n/a' if a is None else f'{a:.3f}'}")  # fmt: skip
    return report


def plot(report: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    for r in report:
        xs, ys = [], []
        for b in range(10):
            inside = [(p, ok) for p, ok in r["pairs"] if b / 10 <= p < (b + 1) / 10 or (b == 9 and p == 1.0)]
            if inside:
                xs.append(sum(p for p, _ in inside) / len(inside))
                ys.append(sum(ok for _, ok in inside) / len(inside))
        ax.plot(xs, ys, marker="o", label=f"{r['mode']} (ECE {r['ece']}, AUROC {r['auroc']})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("share right")
    ax.set_title("Held-out GSM8K rows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
