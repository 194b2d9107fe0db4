"""The evidence behind an answer: the figures a mode had when it settled it.

Every Thinking, Contemplating and Auto answer ends with one `evidence` progress event
(before its Done): `confidence`, how likely the answer is right by the fitted
calibration (`modes.calibration`), and the figures behind it, where they apply:

- `answer_window`: the lowest 32-token window of the answer as stated (a chain's
  answer call, or a direct answer's whole text): how sure the model was as it
  committed (`modes.confidence`);
- `reasoning_window`: the lowest window of the chain's reasoning;
- `forced`: the budget (or the client) ended the reasoning before it finished;
- `settled`: an answer probe confirmed the conclusion the reasoning had stated;
- `probes`, `probes_agreeing`: how many answer probes ran during the reasoning, and
  how many of them gave the final answer (a conclusion reached early and kept);
- `stated_agrees`: the answer is the conclusion the reasoning stated itself (None
  when the reasoning stated none);
- `option_probability`: for a lettered question, the chosen option's share of the
  pooled distribution (`modes.choices`);
- for a program's answer (`modes.computed`): `code_window` and `code_tail`, the
  lowest and the last window of the code it wrote; `repaired`, whether its first
  program failed and it had to fix it; `round_number`, whether what it printed is a
  whole number or has two decimals at most (a long fraction where a count or an
  amount was asked for often means a misread problem);
- for Contemplating: `method` (agreement, pooled, vote, judge, split), `voters`, `agreeing`
  (voters that reached the answer), `answers` (distinct answers among the voters),
  `program_agrees` (a program's answer was the answer; None without a program),
  `methods` (how many methods reached it: the direct answer, a chain, a program),
  `winner_confidence` (the trace confidence of the attempt quoted);
- for a Contemplating answer written from sub-tasks: `method` "written" and `parts`,
  each sub-task's chain evidence with its own confidence.

Figures that are unknown (an engine that returns no log-probabilities) are None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ponder.modes import answers, calibration
from ponder.modes.confidence import measure
from ponder.types import AgentEvent

if TYPE_CHECKING:
    from ponder.modes.contemplating.attempts import Decision
    from ponder.modes.contemplating.synthesis import AgentResult
    from ponder.modes.thinking import Trace


def event(fields: dict[str, Any]) -> AgentEvent:
    """The evidence, and the confidence in [0, 1] the fitted calibration gives it
    (`modes.calibration`; None where no model is fitted for its kind)."""
    chance = calibration.confidence(fields)
    return AgentEvent("evidence", None, {"confidence": _round(chance), **_rounded(fields)})


def _rounded(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: [_rounded(p) for p in v] if k == "parts" else _round(v) for k, v in fields.items()}


def of_chain(trace: Trace) -> dict[str, Any]:
    answer = measure(trace.answer_logprobs)
    reasoning = trace.watch.meter.signal()
    final = answers.extract(trace.answer)
    stated = answers.stated(trace.reasoning)
    return {
        "answer_window": answer.lowest if answer.known else None,
        "reasoning_window": reasoning.lowest if reasoning.known else None,
        "forced": trace.forced,
        "settled": trace.settled,
        "probes": len(trace.probes),
        "probes_agreeing": sum(final is not None and p == final for p in trace.probes),
        "stated_agrees": None if stated is None else stated == final,
        "option_probability": _of_answer(trace.answer, trace.pooled) if trace.pooled else _chosen(trace.distribution),
    }


def of_program(trace: Trace) -> dict[str, Any]:
    signal = trace.watch.meter.signal()
    value = answers.number(trace.answer) or ""
    return {
        "code_window": signal.lowest if signal.known else None,
        "code_tail": signal.tail if signal.known else None,
        "repaired": trace.usage.tool_calls > 1,
        "round_number": len(value.partition(".")[2]) <= 2,
    }


def of_direct(trace: Trace) -> dict[str, Any]:
    signal = trace.watch.meter.signal()
    return {
        "answer_window": signal.lowest if signal.known else None,
        "option_probability": _chosen(trace.distribution),
    }


def of_attempts(decision: Decision, voters: list[AgentResult]) -> dict[str, Any]:
    agreeing = [r for r in voters if r.vote == decision.answer]
    programs = [r for r in voters if r.method == "program"]
    return {
        "method": decision.method,
        "voters": len(voters),
        "agreeing": len(agreeing),
        "answers": len({r.vote for r in voters}),
        "program_agrees": any(r.vote == decision.answer for r in programs) if programs else None,
        "methods": len({r.method for r in agreeing}),
        "winner_confidence": decision.winner.confidence if decision.winner else None,
        "option_probability": decision.tally.get(decision.answer) if decision.pooled and decision.answer else None,
    }


def of_parts(parts: list[AgentResult]) -> dict[str, Any]:
    """Sub-tasks written up as one answer: each part's chain evidence, and how sure of
    it the calibration is. A part that failed has none."""
    each = [{**of_chain(r.trace), "failed": not r.ok} for r in parts]
    return {"method": "written", "parts": [{"confidence": calibration.confidence(e), **e} for e in each]}


def _of_answer(answer: str, distribution: list[float]) -> float | None:
    """The probability `distribution` gives the option `answer` names (None if it names none)."""
    letter = answers.choice(answer, len(distribution))
    return distribution[ord(letter) - ord("a")] if letter else None


def _chosen(distribution: list[float] | None) -> float | None:
    """The chosen option's probability: the answer is the likeliest option."""
    return max(distribution) if distribution else None


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
