"""What `ponder run` and `ponder chat` print for each progress event (`terminal.py`):
a line for what a reader follows, nothing for live-only events."""

from __future__ import annotations

import io

from ponder.backends.scripted import ScriptedBackend
from ponder.config import ModeSettings
from ponder.terminal import Answerer
from ponder.types import AgentEvent, SamplingParams, TextDelta


def shown(*events: AgentEvent | TextDelta) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    answerer = Answerer(ScriptedBackend(), "scripted", SamplingParams(), ModeSettings(), out=out, err=err)
    text: list[str] = []
    for event in events:
        answerer._show(event, text)
    return out.getvalue(), err.getvalue()


def test_each_progress_event_gets_its_own_line_or_none() -> None:
    out, err = shown(
        AgentEvent("auto", None, {"escalated": False, "first": "chain", "confidence": 9.1}),
        AgentEvent("best", None, {"answer": "41"}),
        AgentEvent("plan", None, {"strategy": "attempts", "agents": ["program", "chain"]}),
        AgentEvent("agent.start", 1, {"title": "chain"}),
        AgentEvent("agent.delta", 1, {"text": "step"}),
        AgentEvent("agent.done", 1, {"ok": True, "vote": "42", "answer": "42"}),
        AgentEvent("agent.done", 2, {"ok": False, "vote": None, "answer": "", "error": None, "stopped": "settled"}),
        AgentEvent("agent.done", 3, {"ok": False, "vote": None, "answer": "", "error": None, "stopped": "confidence"}),
        AgentEvent("judge.start", None, {"answers": ["41", "42"]}),
        AgentEvent("judge.delta", None, {"text": "Checking 42 by substitution."}),
        AgentEvent("synthesis.start", None, {"method": "judge", "answer": "42"}),
        AgentEvent("tool.call", 0, {"name": "run_python", "arguments": "{}", "output": "42"}),
        AgentEvent("citations", None, {"annotations": []}),
        TextDelta("42"),
    )
    assert out == "42"
    assert err.splitlines() == [
        "[plan] attempts: program, chain",
        "[agent 2] chain: started",
        "[agent 2] answer: 42",
        "[agent 3] stopped: the others had settled the answer",
        "[agent 4] stopped: less sure than the agents before it",
        "[judge] checking 41, 42",
        "Checking 42 by substitution.",
        "[synthesis] judge: 42",
        "[run_python] {} -> 42",
    ]


def test_an_escalating_auto_says_so() -> None:
    _, err = shown(AgentEvent("auto", None, {"escalated": True, "first": "chain", "confidence": 2.0}))
    assert err == "[auto] not sure: checking with more attempts\n"
