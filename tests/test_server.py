"""The HTTP layer on the scripted backend, through an in-process ASGI client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ponder.backends.registry import Registry
from ponder.backends.scripted import ScriptedBackend
from ponder.config import EFFORT_BUDGETS, Alias, Settings
from ponder.errors import ContextLengthExceeded, UpstreamError
from ponder.models import ModelStore
from ponder.server.app import create_app
from ponder.types import ChatRequest, Done, ReasoningDelta, TextDelta, TokenLogprob, Usage

USER = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        yield c


def sse_chunks(body: str) -> list[Any]:
    lines = [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(x) for x in lines[:-1]]


async def test_non_streaming_answer_and_usage(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue("The answer is 391.")
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "The answer is 391.", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 4
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 4


async def test_streaming_sends_role_deltas_finish_usage_and_done(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    backend.enqueue("one two three")
    payload = {"model": "scripted", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    r = await client.post("/v1/chat/completions", json=payload)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_chunks(r.text)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert all(c["usage"] is None for c in chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1


async def test_stream_without_include_usage_has_no_usage_chunk(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    backend.enqueue("hi")
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER, "stream": True})
    chunks = sse_chunks(r.text)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_thinking_sends_reasoning_content_and_counts_its_tokens(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    backend.enqueue("add seven and five", "12")  # the reasoning phase, then the answer phase
    payload = {"model": "scripted", "messages": USER, "mode": "thinking", "thought_compression": False}
    r = await client.post("/v1/chat/completions", json=payload)
    message = r.json()["choices"][0]["message"]
    assert message["reasoning_content"] == message["reasoning"] == "add seven and five"
    assert message["content"] == "12"
    assert r.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4
    assert r.json()["ponder"]["mode"] == "thinking"


async def test_instant_drops_a_native_models_reasoning(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue(
        [ReasoningDelta("hmm"), TextDelta("<think>more</think>"), TextDelta("42"), Done("stop", Usage(3, 2))]
    )
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER})
    message = r.json()["choices"][0]["message"]
    assert "reasoning_content" not in message
    assert message["content"] == "42"
    assert r.json()["ponder"]["mode"] == "auto"  # no mode: Auto, which answers this (nothing to check) as Instant


async def test_sampling_fields_reach_the_backend(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    payload = {"model": "scripted", "messages": USER, "max_completion_tokens": 7, "temperature": 0,
               "top_p": 0.5, "seed": 3, "stop": "X", "frequency_penalty": 0.1, "ignore_eos": True}  # fmt: skip
    assert (await client.post("/v1/chat/completions", json=payload)).status_code == 200
    p = backend.requests[-1].params
    assert (p.max_tokens, p.temperature, p.top_p, p.seed, p.stop, p.frequency_penalty) == (7, 0, 0.5, 3, ("X",), 0.1)
    assert p.ignore_eos is True
    assert (await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER})).status_code == 200
    assert backend.requests[-1].params.ignore_eos is False
    r = await client.post("/v1/chat/completions", json={**payload, "ignore_eos": "yes"})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "ignore_eos")


async def test_stop_and_max_tokens(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue("a b STOP c", "a b c d e")
    r1 = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER, "stop": ["STOP"]})
    assert r1.json()["choices"][0]["message"]["content"] == "a b "
    r2 = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER, "max_tokens": 2})
    assert r2.json()["choices"][0]["message"]["content"] == "a b"
    assert r2.json()["choices"][0]["finish_reason"] == "length"


async def test_text_content_parts_are_joined(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    content = [{"type": "text", "text": "foo "}, {"type": "text", "text": "bar"}]
    messages = [{"role": "user", "content": content}]
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": messages})
    assert r.status_code == 200
    assert backend.requests[-1].messages[-1].content == "foo bar"  # as sent: Instant adds no note


async def test_n_choices_run_with_their_own_seeds(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    backend.respond = lambda req: f"seed {req.params.seed}"
    payload = {"model": "scripted", "messages": USER, "n": 3, "seed": 5}
    body = (await client.post("/v1/chat/completions", json=payload)).json()
    assert [(c["index"], c["message"]["content"]) for c in body["choices"]] == [
        (0, "seed 5"), (1, "seed 6"), (2, "seed 7")]  # fmt: skip
    assert body["usage"]["completion_tokens"] == 3 * 2


async def test_n_choices_stream_interleaved_with_one_usage_chunk(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    backend.respond = lambda req: f"choice {req.params.seed} says hello"
    backend.delay = 0.001
    payload = {"model": "scripted", "messages": USER, "n": 2, "seed": 0, "stream": True,
               "stream_options": {"include_usage": True}}  # fmt: skip
    chunks = sse_chunks((await client.post("/v1/chat/completions", json=payload)).text)
    text: dict[int, str] = {0: "", 1: ""}
    finished = []
    for c in chunks[:-1]:
        (choice,) = c["choices"]
        text[choice["index"]] += choice["delta"].get("content", "")
        if choice["finish_reason"]:
            finished.append(choice["index"])
    assert text == {0: "choice 0 says hello", 1: "choice 1 says hello"}
    assert sorted(finished) == [0, 1]
    indexes = [c["choices"][0]["index"] for c in chunks[:-1] if c["choices"][0]["delta"].get("content")]
    assert indexes != sorted(indexes), "the choices stream at the same time, not one after the other"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2 * 4


async def test_an_error_in_one_choice_ends_the_stream_in_band(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    inner = backend.stream

    async def one_fails(request: ChatRequest) -> AsyncIterator[Any]:
        if request.params.seed == 0:
            async for event in inner(request):
                yield event
            return
        yield TextDelta("partial")
        await asyncio.sleep(0.01)
        raise UpstreamError("engine fell over")

    backend.stream = one_fails  # type: ignore[method-assign]
    backend.respond, backend.delay = (lambda req: "fine words " * 50), 0.001
    payload = {"model": "scripted", "messages": USER, "n": 2, "seed": 0, "stream": True}
    r = await client.post("/v1/chat/completions", json=payload)
    assert r.status_code == 200
    chunks = sse_chunks(r.text)
    assert chunks[-1]["error"]["message"] == "engine fell over"
    assert not any(c["choices"][0]["finish_reason"] for c in chunks[:-1]), "the other choice was stopped"


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


async def test_tool_calls_come_back_parsed(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue(CALL)
    body = {"model": "scripted", "messages": USER, "tools": [WEATHER]}
    r = (await client.post("/v1/chat/completions", json=body)).json()
    choice = r["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert (call["function"]["name"], json.loads(call["function"]["arguments"])) == ("get_weather", {"city": "Paris"})
    sent = backend.requests[-1]
    assert [t.name for t in sent.tools] == ["get_weather"] and sent.tool_choice == "auto"
    assert sent.messages[-1].content == "hello there", "no 'answer directly' note on a turn that may call tools"


async def test_tool_calls_stream_as_deltas(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue("Checking. " + CALL)
    body = {"model": "scripted", "messages": USER, "tools": [WEATHER], "stream": True,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}  # fmt: skip
    chunks = sse_chunks((await client.post("/v1/chat/completions", json=body)).text)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert len(calls) == 1 and calls[0][0]["index"] == 0 and calls[0][0]["function"]["name"] == "get_weather"
    assert "".join(d.get("content") or "" for d in deltas) == "Checking. "
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert (backend.requests[-1].tool_choice, backend.requests[-1].tool_name) == ("required", "get_weather")


async def test_tool_results_go_back_to_the_model(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue("It is sunny in Paris.")
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]  # fmt: skip
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": messages, "tools": [WEATHER]})
    assert r.json()["choices"][0]["message"]["content"] == "It is sunny in Paris."
    sent = backend.requests[-1].messages
    assert sent[1].tool_calls[0].name == "get_weather" and sent[2].tool_call_id == "call_1"


async def test_thinking_reasons_without_calling_then_the_answer_calls(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    backend.enqueue("I need the weather", CALL)
    body = {"model": "scripted", "messages": USER, "tools": [WEATHER], "mode": "thinking",
            "thought_compression": False}  # fmt: skip
    r = (await client.post("/v1/chat/completions", json=body)).json()
    choice = r["choices"][0]
    assert choice["message"]["reasoning_content"] == "I need the weather"
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["tool_calls"][0]["function"]["name"]
    assert [req.tool_choice for req in backend.requests] == ["none", "auto"]
    assert backend.requests[0].tool_name is None
    contemplating = await client.post("/v1/chat/completions", json={**body, "mode": "contemplating"})
    assert_error(contemplating, 400, "tools", "unsupported_parameter")


async def test_logprobs_come_back_in_both_shapes(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    lp = TokenLogprob("Hi", -0.25, (("Hi", -0.25), ("Hello", -1.5)))
    script = [TextDelta("Hi", (lp,)), Done("stop", Usage(3, 1))]
    backend.enqueue(script, script)
    body = {"model": "scripted", "messages": USER, "logprobs": True, "top_logprobs": 2}
    r = (await client.post("/v1/chat/completions", json=body)).json()
    (entry,) = r["choices"][0]["logprobs"]["content"]
    assert entry == {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [
        {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
        {"token": "Hello", "logprob": -1.5, "bytes": [72, 101, 108, 108, 111]}]}  # fmt: skip
    assert backend.requests[-1].params.logprobs == 2
    chunks = sse_chunks((await client.post("/v1/chat/completions", json={**body, "stream": True})).text)
    streamed = [c["choices"][0]["logprobs"] for c in chunks if c["choices"][0]["delta"].get("content")]
    assert streamed == [{"content": [entry]}]
    plain = (await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER})).json()
    assert plain["choices"][0]["logprobs"] is None


async def test_response_format_reaches_the_backend(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "num", "schema": schema, "strict": True}}
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER, "response_format": fmt})
    assert r.status_code == 200
    assert backend.requests[-1].params.response_format == fmt
    await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER,
                                                    "response_format": {"type": "text"}})  # fmt: skip
    assert backend.requests[-1].params.response_format is None


async def test_reasoning_echoed_back_on_assistant_turns_is_accepted(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    messages = [*USER, {"role": "assistant", "content": "Hi.", "reasoning_content": "be nice", "reasoning": "be nice"},
                {"role": "user", "content": "again"}]  # fmt: skip
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": messages})
    assert r.status_code == 200, r.text
    assert [m.content.split("\n\n")[0] for m in backend.requests[-1].messages] == ["hello there", "Hi.", "again"]


async def test_an_alias_serves_its_model_in_its_mode(tmp_path: Path, backend: ScriptedBackend) -> None:
    settings = Settings(data_dir=tmp_path, default_model="scripted",
                        aliases={"muse-spark-1.3": Alias("muse-spark-1.3", "scripted", "thinking", "low")})  # fmt: skip
    registry = Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), {"scripted": backend})
    transport = httpx.ASGITransport(app=create_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        assert "muse-spark-1.3" in [m["id"] for m in (await c.get("/v1/models")).json()["data"]]
        backend.enqueue("thinking it over", "42")
        body = {"model": "muse-spark-1.3", "messages": USER, "thought_compression": False}
        r = (await c.post("/v1/chat/completions", json=body)).json()
        assert r["model"] == "muse-spark-1.3" and r["ponder"]["mode"] == "thinking"
        assert backend.requests[0].params.max_tokens == EFFORT_BUDGETS["low"]
        assert r["choices"][0]["message"]["reasoning_content"] == "thinking it over"
        backend.enqueue("straight away")
        r = (await c.post("/v1/chat/completions", json={**body, "reasoning_effort": "none"})).json()
        assert r["ponder"]["mode"] == "instant", "an explicit effort of none still means Instant"


def assert_error(r: httpx.Response, status: int, param: str | None, code: str | None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    assert (err["param"], err["code"]) == (param, code)
    return dict(err)


BAD_BODIES = [
    ({"model": "scripted", "messages": []}, "messages", "invalid_value"),
    ({"model": "scripted"}, "messages", "missing_required_parameter"),
    ({"messages": USER}, "model", "missing_required_parameter"),
    ({"model": "scripted", "messages": USER, "temperature": "hot"}, "temperature", "invalid_value"),
    ({"model": "scripted", "messages": USER, "temperature": 3}, "temperature", "invalid_value"),
    ({"model": "scripted", "messages": USER, "max_tokens": 0}, "max_tokens", "invalid_value"),
    ({"model": "scripted", "messages": USER, "max_tokens": "10"}, "max_tokens", "invalid_value"),
    ({"model": "scripted", "messages": USER, "stream": "yes"}, "stream", "invalid_value"),
    ({"model": "scripted", "messages": "hello"}, "messages", "invalid_value"),
    ({"model": "scripted", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role", "invalid_value"),
    ({"model": "scripted", "messages": [{"content": "x"}]}, "messages.0.role", "missing_required_parameter"),
    ({"model": "scripted", "messages": USER, "n": 0}, "n", "invalid_value"),
    ({"model": "scripted", "messages": USER, "top_logprobs": 2}, "top_logprobs", "invalid_value"),
    ({"model": "scripted", "messages": USER, "logprobs": True, "top_logprobs": 21}, "top_logprobs", "invalid_value"),
    ({"model": "scripted", "messages": USER, "n": 17}, "n", "invalid_value"),
    ({"model": "scripted", "messages": USER, "tools": [{"type": "function"}]}, "tools.0.function",
     "missing_required_parameter"),
    ({"model": "scripted", "messages": USER, "tools": [{"type": "function", "function": {"name": "bad name!"}}]},
     "tools.0.function.name", "invalid_value"),
    ({"model": "scripted", "messages": USER,
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]},
     "tools.0.function.parameters", "invalid_value"),
    ({"model": "scripted", "messages": USER, "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice", "invalid_value"),
    ({"model": "scripted", "messages": USER, "tool_choice": "required"}, "tool_choice", "invalid_value"),
    ({"model": "scripted", "messages": [*USER, {"role": "tool", "content": "42"}]}, "messages.1.tool_call_id",
     "missing_required_parameter"),
    ({"model": "scripted", "messages": USER, "response_format": {"type": "xml"}}, "response_format.type",
     "unsupported_parameter"),
    ({"model": "scripted", "messages": USER, "response_format": {"type": "json_schema"}},
     "response_format.json_schema", "missing_required_parameter"),
    ({"model": "scripted", "messages": USER,
      "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frobnicate"}}}},
     "response_format.json_schema.schema", "invalid_value"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "param", "code"), BAD_BODIES)
async def test_bad_bodies_get_openai_errors(
    client: httpx.AsyncClient, body: dict[str, Any], param: str, code: str
) -> None:
    assert_error(await client.post("/v1/chat/completions", json=body), 400, param, code)


async def test_an_image_part_that_is_no_image_is_a_400(client: httpx.AsyncClient) -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    messages = [{"role": "user", "content": content}]
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": messages})
    assert_error(r, 400, "messages.0.content.0.image_url.url", "invalid_image")


@pytest.mark.parametrize("raw", [b"{bad json", b"", b"[1, 2]", b"null"])
async def test_malformed_json_is_a_400(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_model_is_a_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json={"model": "gpt-5", "messages": USER})
    err = assert_error(r, 404, "model", "model_not_found")
    assert "scripted" in err["message"], "the error lists what is served"


async def test_context_errors_keep_their_status_when_streaming(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    backend.enqueue(ContextLengthExceeded("too long", param="messages"))
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER, "stream": True})
    assert_error(r, 400, "messages", "context_length_exceeded")


async def test_an_error_mid_stream_is_reported_in_band(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    async def failing() -> AsyncIterator[Any]:
        yield TextDelta("partial")
        raise UpstreamError("engine went away")

    backend.stream = lambda request: failing()  # type: ignore[method-assign]
    r = await client.post("/v1/chat/completions", json={"model": "scripted", "messages": USER, "stream": True})
    assert r.status_code == 200
    chunks = sse_chunks(r.text)
    assert chunks[-1]["error"]["message"] == "engine went away"
    assert chunks[-2]["choices"][0]["delta"] == {"content": "partial"}


async def test_models_health_and_unknown_routes(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["scripted"]
    assert (await client.get("/v1/models/scripted")).json()["id"] == "scripted"
    assert_error(await client.get("/v1/models/nope"), 404, "model", "model_not_found")
    health = (await client.get("/health")).json()
    assert health["status"] == "ok" and health["loaded"] == {"scripted": {"busy": 0}}
    assert_error(await client.get("/v1/nothing"), 404, None, "not_found")
    assert (await client.get("/v1/chat/completions")).status_code == 405
    schema = (await client.get("/openapi.json")).json()
    assert "/v1/chat/completions" in schema["paths"]
