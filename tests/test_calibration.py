"""The calibrated confidence (`modes.calibration`): features per kind of evidence, the
fit, and no confidence where no model is fitted."""

from __future__ import annotations

import random

import pytest

from ponder.modes import calibration


def chain(window: float, forced: bool = False) -> dict[str, object]:
    return {"answer_window": window, "reasoning_window": 5.0, "forced": forced, "settled": True,
            "option_probability": None}  # fmt: skip


def test_each_kind_has_its_features_and_missing_figures_are_flagged() -> None:
    assert calibration.kind(chain(6.0)) == "chain"
    assert calibration.kind({"answer_window": 6.0, "option_probability": 0.7}) == "direct"
    assert calibration.kind({"method": "vote", "voters": 3, "agreeing": 2}) == "attempts"
    # answer and reasoning windows, no option, no stated conclusion, not forced, settled, no probes
    assert calibration.features(chain(6.0)) == [6.0, 0.0, 5.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    probed = calibration.features({**chain(6.0), "probes": 4, "probes_agreeing": 3, "stated_agrees": False})
    assert probed[6:8] == [0.0, 0.0] and probed[-2:] == [0.75, 0.0]
    program = {"code_window": 5.5, "code_tail": None, "repaired": True, "round_number": False}
    assert calibration.kind(program) == "program"
    assert calibration.features(program) == [5.5, 0.0, 0.0, 1.0, 1.0, 0.0]  # the code's windows, repaired, not round
    unknown = calibration.features({"answer_window": None, "option_probability": None})
    assert unknown == [0.0, 1.0, 0.0, 1.0]
    judged = {"method": "judge", "voters": 4, "agreeing": 1, "answers": 3, "program_agrees": None,
              "winner_confidence": 5.5, "option_probability": None}  # fmt: skip
    attempts = calibration.features(judged)
    assert attempts == [5.5, 0.0, 0.0, 1.0, 0.0, 1.0, 0.25, 3.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_the_fit_ranks_and_calibrates_what_separates_right_from_wrong() -> None:
    rng = random.Random(7)
    rows = []
    for _ in range(300):  # right answers were stated surely, wrong ones less so, with overlap
        right = rng.random() < 0.6
        rows.append((chain(rng.gauss(6.5 if right else 5.0, 0.6), forced=not right and rng.random() < 0.3), right))
    models = calibration.fit(rows)
    assert set(models) == {"chain"} and models["chain"]["rows"] == 300
    sure, unsure = calibration.confidence(chain(7.5), models), calibration.confidence(chain(4.0), models)
    assert sure is not None and unsure is not None and sure > 0.9 and unsure < 0.1
    # calibrated: among the rows it gives about 0.6-0.8, about that share is right
    middle = [(p, right) for e, right in rows if 0.6 <= (p := calibration.confidence(e, models) or 0) <= 0.8]
    assert len(middle) >= 15
    assert abs(sum(r for _, r in middle) / len(middle) - sum(p for p, _ in middle) / len(middle)) < 0.2


def test_the_fit_does_not_depend_on_the_rows_order() -> None:
    rng = random.Random(3)
    rows, items = [], []
    for i in range(60):  # each item answered twice, alike (as Auto's first chain is Thinking's)
        right = rng.random() < 0.6
        evidence = chain(rng.gauss(6.3 if right else 5.2, 0.8))
        rows += [(evidence, right)] * 2
        items += [f"gsm8k/{i}"] * 2
    shuffled = list(zip(rows, items, strict=True))
    rng.shuffle(shuffled)
    a = calibration.fit(rows, items)["chain"]
    b = calibration.fit([r for r, _ in shuffled], [i for _, i in shuffled])["chain"]
    assert a["l2"] == b["l2"] and a["weights"] == pytest.approx(b["weights"], abs=1e-9)


def test_no_model_no_confidence() -> None:
    assert calibration.confidence(chain(6.0), {}) is None
    assert calibration.fit([(chain(6.0), True)] * 20) == {}  # all right: nothing to tell apart


def test_an_answer_in_parts_is_as_sure_as_all_its_parts_together() -> None:
    rows = [(chain(6.5 + (i % 3) * 0.1), True) for i in range(12)] + [
        (chain(5.0 - (i % 3) * 0.1), False) for i in range(12)
    ]
    models = calibration.fit(rows)
    sure, unsure = calibration.confidence(chain(6.6), models), calibration.confidence(chain(5.0), models)
    assert sure is not None and unsure is not None
    parts = {"method": "written", "parts": [chain(6.6), chain(5.0)]}
    assert calibration.kind(parts) == "parts"
    assert calibration.confidence(parts, models) == pytest.approx(sure * unsure)
    failed = {"method": "written", "parts": [chain(6.6), {**chain(6.6), "failed": True}]}
    assert calibration.confidence(failed, models) is None  # no confidence rather than a made-up one
    assert "parts" not in calibration.fit([(parts, True)] * 10 + [(parts, False)] * 10)  # nothing to fit


def test_auroc_is_the_chance_a_right_answer_scores_above_a_wrong_one() -> None:
    assert calibration.auroc([(0.9, True), (0.8, True), (0.1, False)]) == 1.0
    assert calibration.auroc([(0.1, True), (0.9, False)]) == 0.0
    assert calibration.auroc([(0.5, True), (0.5, False), (0.7, True), (0.2, False)]) == 0.875  # the tie counts half
    assert calibration.auroc([(0.5, True)]) is None  # no wrong answers to rank against
