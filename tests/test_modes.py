"""The three modes on the scripted backend: resolution, budgets, compression, the
planner, parallel agents, the vote, failures and the stream they produce."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from ponder.backends.base import Capabilities
from ponder.backends.scripted import Script, ScriptedBackend
from ponder.config import ModeSettings
from ponder.errors import InvalidRequest, UpstreamError
from ponder.formats import structured
from ponder.modes import ModeRequest, evidence, resolve, run
from ponder.modes.contemplating.planner import parse_plan
from ponder.modes.prompts import load
from ponder.modes.thinking import Trace, think
from ponder.types import AgentEvent, ChatRequest, Done, Message, ReasoningDelta, TextDelta, collect

Q = ChatRequest("m", (Message("user", "What is 6 times 7?"),))
THINK = load("thinking")


# --- resolving the mode ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "mode", "budget"),
    [
        ({}, "auto", 512),
        ({"effort": "none"}, "instant", 0),
        ({"effort": "high"}, "thinking", 1024),
        ({"budget": 300}, "thinking", 300),
        ({"budget": 0}, "instant", 0),
        ({"mode": "thinking"}, "thinking", 512),
        ({"mode": "thinking", "effort": "minimal"}, "thinking", 128),
        ({"mode": "contemplating", "agents": 3}, "contemplating", 512),
    ],
)
def test_resolve(fields: dict[str, Any], mode: str, budget: int) -> None:
    r = resolve(Q, ModeSettings(), **fields)
    assert (r.mode, r.budget) == (mode, budget)


def test_resolve_uses_config_defaults_and_rejects_unknown_values() -> None:
    settings = ModeSettings(default="contemplating", agents=6, agent_effort="low")
    r = resolve(Q, settings)
    assert (r.mode, r.agents, r.agent_budget) == ("contemplating", 6, 256)
    assert resolve(Q, settings, effort="high", mode="contemplating").agent_budget == 1024
    with pytest.raises(InvalidRequest) as e:
        resolve(Q, settings, mode="pondering")
    assert e.value.param == "mode"
    with pytest.raises(InvalidRequest):
        resolve(Q, settings, effort="extreme")


# --- thinking ------------------------------------------------------------------------


async def run_think(backend: ScriptedBackend, budget: int, **kw: Any) -> tuple[list[Any], Trace]:
    trace = Trace()
    events = [e async for e in think(backend, Q, budget, trace=trace, **kw)]
    return events, trace


async def test_thinking_reasons_then_answers_through_prefill() -> None:
    backend = ScriptedBackend("six sevens are forty two", "42")
    events, trace = await run_think(backend, 100, compression=False)
    assert [type(e) for e in events] == [ReasoningDelta] * 5 + [TextDelta, Done]
    assert (trace.reasoning, trace.answer, trace.reasoning_tokens, trace.forced) == (
        "six sevens are forty two", "42", 5, False)  # fmt: skip
    reasoning_call, answer_call = backend.requests
    assert reasoning_call.prefill == THINK["open"]
    assert reasoning_call.params.stop == ("</think>",) and reasoning_call.params.max_tokens == 100
    assert answer_call.prefill == ""
    assert answer_call.messages[-2:] == (
        Message("assistant", THINK["open"] + "six sevens are forty two" + THINK["close"].rstrip()),
        Message("user", THINK["answer_now"]),
    )
    assert reasoning_call.messages[0].content.startswith(THINK["system"])
    assert reasoning_call.messages[-1] == Q.messages[-1], "no compression note without compression"
    done = events[-1]
    assert done.usage.reasoning_tokens == 5 and done.usage.completion_tokens == 6


async def test_budget_forcing_cuts_the_trace_and_still_answers() -> None:
    backend = ScriptedBackend("one two three four five six seven eight", "8")
    events, trace = await run_think(backend, 3, compression=False)
    assert trace.reasoning == "one two three" and trace.reasoning_tokens == 3 and trace.forced
    assert backend.requests[1].messages[-2].content.endswith("one two three" + THINK["close"].rstrip())
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "8"


async def test_an_empty_answer_falls_back_to_the_reasonings_conclusion() -> None:
    backend = ScriptedBackend("so the total is 42", "")
    events, trace = await run_think(backend, 50, compression=False)
    assert trace.answer == "42"
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["42"]


async def test_an_answer_with_nothing_to_show_falls_back_too() -> None:
    # an empty \boxed{} is cleaned away whole: the client would have got no answer at all
    backend = ScriptedBackend("so the total is 42", "\\boxed{}")
    events, trace = await run_think(backend, 50, compression=False)
    assert trace.answer == "42"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "42"


async def test_compression_stops_once_a_probe_confirms_the_stated_conclusion() -> None:
    # slice, probe (41, but the reasoning only worked it out), slice (states the
    # answer), probe (agrees with it): thinking stops; then the answer
    backend = ScriptedBackend("x is 41", "41", "answer is 41", "41", "41 it is")
    events, trace = await run_think(backend, 100, compression=True, probe_every=3)
    assert trace.probes == ["41", "41"]
    assert trace.reasoning_tokens == 6 and not trace.forced
    assert len(backend.requests) == 5
    assert backend.requests[0].messages[-1].content.endswith("\n\n" + THINK["compress"])
    probe = backend.requests[1]
    assert probe.messages[-1] == Message("user", THINK["answer_now"]) and probe.messages[-2].role == "assistant"
    assert probe.params.temperature == 0 and probe.prefill == ""
    assert trace.answer == "41 it is"
    seen = evidence.of_chain(trace)  # both probes and the reasoning's stated answer are the answer
    assert (seen["probes"], seen["probes_agreeing"], seen["stated_agrees"]) == (2, 2, True)
    assert events[-1].usage.reasoning_tokens == 6
    best = [e.data for e in events if isinstance(e, AgentEvent) and e.kind == "best"]
    assert best == [{"answer": "41", "reasoning_tokens": 3}, {"answer": "41", "reasoning_tokens": 6}]  # live, per probe


async def test_probes_repeating_an_intermediate_value_do_not_stop_it() -> None:
    backend = ScriptedBackend("a is 7", "7", "b is a times 2", "7", "so 14", "14")
    _, trace = await run_think(backend, 8, compression=True, probe_every=3)
    assert trace.probes == ["7", "7"] and trace.reasoning_tokens == 8 and trace.forced
    # the evidence: no probe gave the answer (14), which the reasoning never stated either
    seen = evidence.of_chain(trace)
    assert (seen["probes"], seen["probes_agreeing"], seen["stated_agrees"]) == (2, 0, None)


async def test_compression_keeps_thinking_while_probes_disagree() -> None:
    backend = ScriptedBackend("a b c", "40", "d e f", "41", "g h", "41")
    _, trace = await run_think(backend, 8, compression=True, probe_every=3)
    assert trace.probes == ["40", "41"] and trace.reasoning_tokens == 8 and trace.forced
    assert trace.answer == "41"
    seen = evidence.of_chain(trace)
    assert (seen["probes"], seen["probes_agreeing"], seen["stated_agrees"]) == (2, 1, None)


class NoPrefill(ScriptedBackend):
    capabilities = Capabilities(native_reasoning=True, prefill=False)


async def test_without_prefill_the_think_block_is_split_from_one_stream() -> None:
    backend = NoPrefill([TextDelta("<th"), TextDelta("ink>2+2"), TextDelta("</thi"), TextDelta("nk>\n\n4"),
                         Done("stop", _usage(4))])  # fmt: skip
    events, trace = await run_think(backend, 50)
    assert (trace.reasoning, trace.answer) == ("2+2", "4")
    assert len(backend.requests) == 1 and backend.requests[0].prefill == ""
    assert any(isinstance(e, ReasoningDelta) for e in events)


async def test_without_prefill_an_overrun_is_cut_and_the_answer_asked_for() -> None:
    backend = NoPrefill("<think> a b c d e f g h", "42")
    _, trace = await run_think(backend, 3)
    assert trace.forced and trace.answer == "42"
    follow = backend.requests[1].messages
    assert follow[-2] == Message("assistant", trace.reasoning)
    assert follow[-1] == Message("user", THINK["answer_now"])


# --- contemplating -------------------------------------------------------------------


def by_style(answers: dict[str, Any]) -> Any:
    """Answer each sub-agent by the style noted in its question ("direct": none), and by phase."""
    styles = {s["name"]: s["note"] for s in load("contemplating")["styles"]}

    def respond(req: ChatRequest) -> Script:
        asked = next(m.content for m in req.messages if m.role == "user")
        name = next((n for n, text in styles.items() if text in asked), "direct")
        answer = answers[name]
        if isinstance(answer, BaseException):
            return answer
        if req.prefill == THINK["open"]:
            return f"working it out carefully gives {answer}"
        return f"The answer is {answer}."

    return respond


OPEN = ChatRequest("m", (Message("user", "Which planet has the most moons?"),))  # no numbers: chains only
SPLIT = {"direct": "Saturn", "equations": "Jupiter", "verify": "Saturn", "fresh-eyes": "Saturn"}


def contemplation(**kw: Any) -> ModeRequest:
    return replace(resolve(OPEN, ModeSettings(), mode="contemplating"), compression=False, **kw)


async def test_agents_of_a_wave_run_at_the_same_time() -> None:
    backend = ScriptedBackend(respond=by_style(SPLIT), delay=0.02)
    done = await collect(run(backend, contemplation()))
    assert done.text == "The answer is Saturn."
    assert backend.max_active == 2  # two waves of two, each wave's agents at once


async def test_a_timed_out_agent_does_not_fail_the_request() -> None:
    slow = ScriptedBackend(respond=by_style(SPLIT))
    inner = slow.stream

    def stream(req: ChatRequest) -> Any:
        if "Restate" in req.messages[-1].content:
            return _stall()
        return inner(req)

    slow.stream = stream  # type: ignore[method-assign]
    done = await collect(run(slow, contemplation(agent_timeout_s=0.5)))
    assert done.text == "The answer is Saturn."
    failed = [e for e in done.progress if e.kind == "agent.done" and not e.data["ok"]]
    assert [f.agent for f in failed] == [3] and "timed out" in failed[0].data["error"]


async def test_every_agent_failing_is_an_error() -> None:
    backend = ScriptedBackend(respond=lambda req: UpstreamError("down"))
    with pytest.raises(UpstreamError, match="every sub-agent failed"):
        await collect(run(backend, contemplation(agents=2)))


async def test_a_multipart_request_is_split_into_subtasks_and_synthesised() -> None:
    ask = ChatRequest("m", (Message("user", "1. Write a haiku about rain\n2. Name three prime numbers"),))
    plan = {"parts": ["Write a haiku about rain", "Name three prime numbers"]}

    def respond(req: ChatRequest) -> Script:
        system = req.messages[0].content
        if "team of assistants" in system:
            return "Sure: " + json.dumps(plan)
        if "combine the work" in system:
            return "Here is everything: a haiku and 2, 3, 5."
        task = next(m.content for m in req.messages if "Your part:" in m.content)
        part = "haiku" if "haiku about rain" in task.split("Your part:")[-1] else "primes"
        return f"thinking about {part}" if req.prefill == THINK["open"] else f"done {part}"

    backend = ScriptedBackend(respond=respond)
    req = replace(resolve(ask, ModeSettings(), mode="contemplating"), compression=False)
    done = await collect(run(backend, req))
    assert done.progress[0].data["strategy"] == "subtasks"
    assert done.progress[0].data["agents"] == plan["parts"]
    assert done.text == "Here is everything: a haiku and 2, 3, 5."
    asked = backend.requests[0].params.response_format  # the planner's reply is held to a schema
    assert asked is not None and asked["json_schema"]["schema"]["properties"]["parts"]["maxItems"] == req.agents
    assert structured.gbnf(structured.check(asked))  # one the grammar converter takes
    synthesis = backend.requests[-1].messages[-1].content
    assert "Result: done haiku" in synthesis and "Result: done primes" in synthesis
    assert [e.data["method"] for e in done.progress if e.kind == "synthesis.start"] == ["written"]
    # the evidence: each part's chain (no log-probabilities from a scripted engine)
    seen = done.progress[-1]
    assert seen.kind == "evidence" and seen.data["method"] == "written" and len(seen.data["parts"]) == 2
    assert all(p["failed"] is False and p["answer_window"] is None for p in seen.data["parts"])


async def test_an_engine_that_refuses_the_plan_schema_is_asked_again_without_it() -> None:
    ask = ChatRequest("m", (Message("user", "1. Write a haiku about rain\n2. Name three prime numbers"),))

    def respond(req: ChatRequest) -> Script:
        if "team of assistants" in req.messages[0].content:
            if req.params.response_format is not None:
                return InvalidRequest("response_format is not supported", param="response_format")
            return '```json\n{"parts": ["Write a haiku about rain", "Name three prime numbers"]}\n```'
        return "Here is everything." if "combine the work" in req.messages[0].content else "done"

    backend = ScriptedBackend(respond=respond)
    done = await collect(run(backend, replace(resolve(ask, ModeSettings(), mode="contemplating"), compression=False)))
    assert done.progress[0].data["strategy"] == "subtasks" and len(done.progress[0].data["agents"]) == 2
    planner = [r for r in backend.requests if "team of assistants" in r.messages[0].content]
    assert [r.params.response_format is None for r in planner] == [False, True]


async def test_one_agent_never_asks_the_planner() -> None:
    ask = ChatRequest("m", (Message("user", "1. Write a haiku about rain\n2. Name three prime numbers"),))
    backend = ScriptedBackend(respond=lambda req: "done")
    req = replace(resolve(ask, ModeSettings(), mode="contemplating", agents=1), compression=False)
    done = await collect(run(backend, req))
    assert done.progress[0].data["strategy"] == "attempts"
    assert all("team of assistants" not in r.messages[0].content for r in backend.requests)


def test_parse_plan_is_forgiving_but_strict_about_shape() -> None:
    assert parse_plan('{"parts": ["a", "b", "c"]}', 2) == [("a", None), ("b", None)]
    assert parse_plan('{"parts": "a"}', 4) == []
    legacy = '{"parts": null, "strategy": "subtasks", "subtasks": ["a", "b"]}'
    assert parse_plan(legacy, 4) == [("a", None), ("b", None)]
    assert parse_plan('{"strategy": "subtasks", "subtasks": ["a", "b", "c"]}', 2) == [("a", None), ("b", None)]
    assert parse_plan('noise {"strategy": "attempts"} noise', 4) == []
    assert parse_plan("not json at all", 4) == []
    assert parse_plan('{"strategy": "subtasks", "subtasks": [1, "", "x"]}', 4) == [("x", None)]
    tools = {"calculator", "file_search"}  # a part may name its tools; unknown names are dropped
    plan = '{"parts": [{"task": "a", "tools": ["calculator", "rm_rf"]}, "b"]}'
    assert parse_plan(plan, 4, tools) == [("a", ("calculator",)), ("b", None)]


async def test_a_single_question_skips_the_planner_call() -> None:
    backend = ScriptedBackend(respond=by_style(dict.fromkeys(["direct", "equations"], "Saturn")))
    done = await collect(run(backend, contemplation(agents=2)))
    assert done.progress[0].data["strategy"] == "attempts"
    assert all("team of assistants" not in r.messages[0].content for r in backend.requests)
    direct, chain = backend.requests[0], next(r for r in backend.requests if r.prefill == THINK["open"])
    assert direct.messages == OPEN.messages and direct.params.temperature == 0.0  # the model's own answer
    assert chain.params.temperature == 0.7, "each attempt samples at its own temperature"


async def test_live_progress_comes_before_the_answer() -> None:
    backend = ScriptedBackend(respond=by_style(SPLIT), delay=0.001)
    events = [e async for e in run(backend, contemplation())]
    agent_events = [e for e in events if isinstance(e, AgentEvent)]
    first_delta = {e.agent: i for i, e in reversed(list(enumerate(agent_events))) if e.kind == "agent.delta"}
    starts = {e.agent: i for i, e in enumerate(agent_events) if e.kind == "agent.start"}
    assert all(starts[a] < first_delta[a] for a in first_delta)
    answer_at = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert all(i < answer_at for i, e in enumerate(events) if isinstance(e, AgentEvent) and e.kind != "synthesis.start")
    assert isinstance(events[-1], Done)


async def _stall() -> Any:
    await asyncio.sleep(30)
    yield TextDelta("never")


def _usage(n: int) -> Any:
    from ponder.types import Usage

    return Usage(1, n)
