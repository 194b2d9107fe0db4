"""A real `ponder serve` on the real tiny model, called with the official openai SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import DEFAULT, TINY

pytestmark = pytest.mark.e2e
ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(ponder_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=ponder_server, api_key="unused", max_retries=0, timeout=60)


def test_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=TINY, messages=ASK, max_tokens=32, temperature=0)  # type: ignore[arg-type]
    assert r.object == "chat.completion" and r.model == TINY
    assert (r.choices[0].message.content or "").strip()  # the 135M model is for plumbing, not facts
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0


def test_streaming_with_usage_matches_non_streaming(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=TINY, messages=ASK, max_tokens=32, temperature=0)  # type: ignore[arg-type]
    stream = client.chat.completions.create(
        model=TINY, messages=ASK, max_tokens=32, temperature=0, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_n_choices_streaming_and_not(client: openai.OpenAI) -> None:
    kw = {"model": TINY, "messages": ASK, "max_tokens": 16, "temperature": 1.0, "seed": 11, "n": 3}
    whole = client.chat.completions.create(**kw)  # type: ignore[call-overload]
    assert [c.index for c in whole.choices] == [0, 1, 2]
    texts = [c.message.content for c in whole.choices]
    assert all(t and t.strip() for t in texts) and len(set(texts)) > 1, "seeds 11, 12, 13 differ"
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    streamed = ["", "", ""]
    for c in chunks:
        for choice in c.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert all(t.strip() for t in streamed)
    finished = [choice.index for c in chunks for choice in c.choices if choice.finish_reason]
    assert sorted(finished) == [0, 1, 2]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 3


CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 24}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def test_json_schema_output_parses_and_validates_chat_and_responses(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Give the capital of France and its population as JSON."}]
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}
    r = client.chat.completions.create(model=TINY, messages=ask, max_tokens=96, temperature=0,  # type: ignore[arg-type]
                                       response_format=fmt)  # type: ignore[arg-type]  # fmt: skip
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), CITY)
    # The tiny model, asked plainly, writes a JSON object that runs past any small cap; a
    # short reply is asked for, as a client would (Instant adds no instruction of its own).
    terse = [{"role": "user", "content": "Reply with only a small JSON object: the capital of France."}]
    obj = client.chat.completions.create(model=TINY, messages=terse, max_tokens=96, temperature=0,  # type: ignore[arg-type]
                                         response_format={"type": "json_object"})  # fmt: skip
    assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)
    text_format = {"format": {"type": "json_schema", "name": "city", "schema": CITY}}
    resp = client.responses.create(model=TINY, input=ask[0]["content"], max_output_tokens=96, temperature=0,
                                   text=text_format)  # type: ignore[arg-type]  # fmt: skip
    jsonschema.validate(json.loads(resp.output_text), CITY)


def test_a_schema_the_grammar_cannot_express_is_a_400(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"a": {"not": {"type": "string"}}}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=TINY, messages=ASK, max_tokens=8,  # type: ignore[arg-type]
                                       response_format={"type": "json_schema",  # type: ignore[arg-type]
                                                        "json_schema": {"name": "a", "schema": schema}})  # fmt: skip
    assert e.value.code == "unsupported_parameter"


def test_logprobs_are_real_and_match_greedy_choices(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=TINY, messages=ASK, max_tokens=8, temperature=0,  # type: ignore[arg-type]
                                       logprobs=True, top_logprobs=3)  # fmt: skip
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == r.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        tops = [x.logprob for x in t.top_logprobs]
        assert t.logprob <= 0 and len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert t.top_logprobs[0].token == t.token, "greedy picks the likeliest token"


def test_models_endpoint(client: openai.OpenAI) -> None:
    assert TINY in [m.id for m in client.models.list()]


def test_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=ASK)  # type: ignore[arg-type]
    assert e.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": ASK, "temperature": 5}, "temperature"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ],
)
def test_bad_input_is_a_400(client: openai.OpenAI, kwargs: dict, param: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=TINY, **kwargs)
    assert e.value.param == param


def test_too_long_a_context_is_a_400_streaming_or_not(client: openai.OpenAI) -> None:
    long = [{"role": "user", "content": "lorem ipsum " * 3000}]
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=TINY, messages=long, stream=stream)  # type: ignore[call-overload]
        assert e.value.code == "context_length_exceeded"


def test_malformed_json_with_curl_like_client(ponder_server: str) -> None:
    r = httpx.post(f"{ponder_server}/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_client_disconnect_stops_generation(ponder_server: str) -> None:
    body = {"model": TINY, "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
            "max_tokens": 800, "ignore_eos": True, "temperature": 1.0, "seed": 1, "stream": True}  # fmt: skip
    # ignore_eos, and sampled: greedy, the tiny model soon loops, and Instant's loop guard ends it
    health = ponder_server.removesuffix("/v1") + "/health"
    with httpx.stream("POST", f"{ponder_server}/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
    assert any('"content"' in line for line in got)
    left = time.monotonic()
    while httpx.get(health).json()["loaded"][TINY]["busy"] and time.monotonic() - left < 10:
        time.sleep(0.05)
    stopped_after = time.monotonic() - left

    # The same request run to the end, for scale: it must take far longer.
    t0 = time.monotonic()
    whole = httpx.post(f"{ponder_server}/chat/completions", json={**body, "stream": False}, timeout=120).json()
    full_run = time.monotonic() - t0
    assert whole["usage"]["completion_tokens"] > 400, json.dumps(whole["usage"])
    assert stopped_after < full_run / 4, (stopped_after, full_run)


# --- the three modes, end to end ---------------------------------------------------


def test_instant_mode_answers_without_reasoning(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=TINY, messages=ASK, max_tokens=24, temperature=0,  # type: ignore[arg-type]
        extra_body={"mode": "instant"},
    )  # fmt: skip
    assert (r.choices[0].message.content or "").strip()
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})
    assert r.model_extra and r.model_extra["ponder"]["mode"] == "instant"


def test_thinking_mode_streams_reasoning_then_answer_within_budget(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=TINY, messages=ASK, max_tokens=24, temperature=0, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}, extra_body={"mode": "thinking", "thinking_budget": 40},
    )  # fmt: skip
    reasoning, content, order = [], [], []
    chunks = list(stream)
    for c in chunks:
        if not c.choices:
            continue
        extra = c.choices[0].delta.model_extra or {}
        if extra.get("reasoning_content"):
            reasoning.append(extra["reasoning_content"])
            order.append("r")
        if c.choices[0].delta.content:
            content.append(c.choices[0].delta.content)
            order.append("c")
    assert "".join(reasoning).strip() and "".join(content).strip()
    assert order.index("c") > order.index("r") and "r" not in order[order.index("c") :], "reasoning, then answer"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert 0 < usage.completion_tokens_details.reasoning_tokens <= 40


def test_contemplating_mode_streams_agent_progress(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=TINY, messages=ASK, max_tokens=16, temperature=0, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
        extra_body={"mode": "contemplating", "contemplation": {"agents": 2, "agent_budget": 24}},
    )  # fmt: skip
    chunks = list(stream)
    progress = [c.model_extra["ponder"] for c in chunks if c.model_extra and "ponder" in c.model_extra]
    kinds = [p["type"] for p in progress]
    assert kinds[0] == "mode" and kinds[1] == "plan"
    assert kinds.count("agent.start") == 2 and kinds.count("agent.done") == 2 and "agent.delta" in kinds
    assert kinds[-2:] == ["synthesis.start", "evidence"]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip()
    done = [p for p in progress if p["type"] == "agent.done"]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == sum(d["reasoning_tokens"] for d in done) > 0


def test_the_default_models_planner_splits_separate_questions(default_server: str) -> None:
    """On the real default model, through the server: the planner's reply is held to
    its schema, so two separate questions become two sub-tasks and a written synthesis."""
    client = openai.OpenAI(base_url=default_server, api_key="none", max_retries=0)
    ask = "1. What is 17 + 25?\n2. What is the capital of France?"
    stream = client.chat.completions.create(
        model=DEFAULT, messages=[{"role": "user", "content": ask}], max_tokens=48, temperature=0, stream=True,
        extra_body={"mode": "contemplating", "contemplation": {"agents": 2, "agent_budget": 24}},
    )  # fmt: skip
    chunks = list(stream)
    progress = [c.model_extra["ponder"] for c in chunks if c.model_extra and "ponder" in c.model_extra]
    plan = next(p for p in progress if p["type"] == "plan")
    assert plan["strategy"] == "subtasks" and len(plan["agents"]) == 2, plan
    assert progress[-2]["type"] == "synthesis.start" and progress[-2]["method"] == "written"  # nothing to weigh
    # the evidence: each part's, and a confidence that all of them are right, no surer than the least sure part
    evidence = progress[-1]
    assert evidence["type"] == "evidence" and evidence["method"] == "written" and len(evidence["parts"]) == 2
    sure = [p["confidence"] for p in evidence["parts"]]
    assert all(isinstance(c, float) for c in sure) and 0 <= evidence["confidence"] <= min(sure) + 1e-4
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


def _ponder_events(chunks: list[Any]) -> list[dict[str, Any]]:
    return [c.model_extra["ponder"] for c in chunks if c.model_extra and "ponder" in c.model_extra]


def test_the_default_models_program_agent_computes_in_the_sandbox(default_server: str) -> None:
    """On the real default model, through the server: Contemplating's second agent
    writes a program for a question with numbers, the sandbox runs it, and what it
    printed is that agent's answer."""
    client = openai.OpenAI(base_url=default_server, api_key="none", max_retries=0)
    ask = "A box holds 6 rows of 7 eggs. How many eggs are in 12 boxes?"
    stream = client.chat.completions.create(
        model=DEFAULT, messages=[{"role": "user", "content": ask}], max_tokens=256, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"mode": "contemplating", "contemplation": {"agents": 2}},
    )  # fmt: skip
    chunks = list(stream)
    progress = _ponder_events(chunks)
    program = next(p for p in progress if p["type"] == "agent.done" and p["method"] == "program")
    assert program["ok"] and program["vote"] == "504", program
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert "It printed:\n504" in reasoning  # the program's own output, from the sandbox
    settled = next(p for p in progress if p["type"] == "synthesis.start")
    assert settled["method"] in ("agreement", "vote", "judge", "split")
    assert progress[-1]["type"] == "evidence" and progress[-1]["voters"] >= 1  # what the answer rests on
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0


def test_the_default_models_thinking_answers_a_question_with_numbers_by_a_program(default_server: str) -> None:
    """On the real default model, through the server: Thinking writes a program for a
    question with numbers, runs it, and the user reads its answer in a sentence; the
    code and what it printed are the reasoning."""
    client = openai.OpenAI(base_url=default_server, api_key="none", max_retries=0)
    ask = "A box holds 6 rows of 7 eggs. How many eggs are in 12 boxes?"
    stream = client.chat.completions.create(
        model=DEFAULT, messages=[{"role": "user", "content": ask}], max_tokens=256, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"mode": "thinking", "thinking_budget": 256},
    )  # fmt: skip
    chunks = list(stream)
    evidence = _ponder_events(chunks)[-1]
    assert evidence["type"] == "evidence" and "code_window" in evidence, evidence
    assert isinstance(evidence["confidence"], float)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "504" in content and "\\boxed" not in content
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert "print(" in reasoning and "It printed:\n504" in reasoning, reasoning
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens > 0


def test_the_default_models_auto_answers_and_reports_its_confidence(default_server: str) -> None:
    """On the real default model, through the server, with no mode: Auto answers a
    question with numbers, says how sure the direct answer was and whether it
    escalated; an open request streams as Instant does, with no check."""
    client = openai.OpenAI(base_url=default_server, api_key="none", max_retries=0)
    ask = [{"role": "user", "content": "What is 17 + 25? Reply with the number."}]
    chunks = list(client.chat.completions.create(model=DEFAULT, messages=ask, max_tokens=64, temperature=0,
                                                 stream=True))  # type: ignore[arg-type]  # fmt: skip
    progress = _ponder_events(chunks)
    assert progress[0] == {"type": "mode", "mode": "auto"}
    auto = next(p for p in progress if p["type"] == "auto")
    assert isinstance(auto["confidence"], float) and auto["confidence"] > 0
    assert any(p["type"] == "plan" for p in progress) == auto["escalated"]
    sure = next(p for p in progress if p["type"] == "evidence")["confidence"]  # by the shipped calibration
    assert isinstance(sure, float) and 0 <= sure <= 1
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "42" in content and "\\boxed" not in content

    hello = [{"role": "user", "content": "Say hello in one short sentence."}]
    chunks = list(client.chat.completions.create(model=DEFAULT, messages=hello, max_tokens=24, temperature=0,
                                                 stream=True))  # type: ignore[arg-type]  # fmt: skip
    assert not any(p["type"] == "auto" for p in _ponder_events(chunks))  # nothing to check: no measuring either
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) > 1  # it streamed as written


def test_bad_mode_fields_are_400s(client: openai.OpenAI) -> None:
    for extra, param in [({"mode": "dreaming"}, "mode"), ({"reasoning_effort": "huge"}, "reasoning_effort"),
                         ({"thinking_budget": -1}, "thinking_budget"),
                         ({"contemplation": {"agents": 0}}, "contemplation.agents")]:  # fmt: skip
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=TINY, messages=ASK, extra_body=extra)  # type: ignore[arg-type]
        assert e.value.param == param
