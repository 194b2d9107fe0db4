"""Anthropic's Messages API on the scripted backend, through the official `anthropic`
SDK over an in-process ASGI transport: every reply must parse into the SDK's own
types. (The same SDK against a real model is in test_compat.py.)"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from anthropic.types import Message as AnthropicMessage

from ponder.backends.scripted import ScriptedBackend
from ponder.config import EFFORT_BUDGETS
from tests.conftest import keyed_app
from tests.media import text_png

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
CITY: Any = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER: Any = {"name": "get_weather", "description": "Current weather in a city.", "input_schema": CITY}
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


def sdk(app: Any, key: str = "unused") -> anthropic.AsyncAnthropic:
    """The SDK, in process: its own HTTP client (httpx2) on an ASGI transport."""
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://localhost")
    return anthropic.AsyncAnthropic(base_url="http://localhost", api_key=key, http_client=http, max_retries=0)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[anthropic.AsyncAnthropic]:
    c = sdk(app)
    yield c
    await c.close()


async def test_a_message_with_system_and_turns(client: anthropic.AsyncAnthropic, backend: ScriptedBackend) -> None:
    backend.enqueue("Paris is the capital.")
    turns: Any = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Let me think."},
             {"role": "user", "content": [{"type": "text", "text": "Just say it."}]}]  # fmt: skip
    r = await client.messages.create(model="scripted", max_tokens=64, system="Be brief.", stop_sequences=["END"],
                                     extra_body={"temperature": 0.2, "top_p": 0.9}, messages=turns)  # fmt: skip
    assert isinstance(r, AnthropicMessage) and r.role == "assistant" and r.type == "message"
    assert r.id.startswith("msg_") and r.stop_reason == "end_turn" and r.stop_sequence is None
    assert [b.type for b in r.content] == ["text"] and r.content[0].text == "Paris is the capital."  # type: ignore[union-attr]
    assert r.usage.output_tokens == 4 and r.usage.input_tokens > 0
    sent = backend.requests[-1]
    assert [(m.role, m.content) for m in sent.messages] == [
        ("system", "Be brief."), ("user", "Capital of France?"), ("assistant", "Let me think."),
        ("user", "Just say it.")]  # fmt: skip
    p = sent.params
    assert (p.max_tokens, p.temperature, p.top_p, p.stop) == (64, 0.2, 0.9, ("END",))


async def test_a_stream_in_anthropics_event_order(client: anthropic.AsyncAnthropic, backend: ScriptedBackend) -> None:
    backend.enqueue("one two three")
    async with client.messages.stream(model="scripted", max_tokens=32, messages=ASK) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "one two three" and final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3


async def test_raw_stream_events_and_pings_carry_progress(raw: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue("add seven and five", "12")
    body = {"model": "scripted", "max_tokens": 64, "messages": ASK, "stream": True,
            "thinking": {"type": "enabled", "budget_tokens": 100}, "thought_compression": False}  # fmt: skip
    r = await raw.post("/v1/messages", json=body)
    events = [(e.split("\n")[0].removeprefix("event: "), json.loads(e.split("\n")[1].removeprefix("data: ")))
              for e in r.text.strip().split("\n\n")]  # fmt: skip
    names = [n for n, _ in events if n != "ping"]
    runs = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]  # a block's deltas as one
    assert runs == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                    "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
                    "message_stop"]  # fmt: skip
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == "add seven and five"
    assert deltas[-2] == {"type": "text_delta", "text": "12"} or "".join(d.get("text", "") for d in deltas) == "12"
    assert all(n == d["type"] for n, d in events)
    assert events[1][1]["ponder"] == {"type": "mode", "mode": "thinking"}
    blocks = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert blocks == ["thinking", "text"]


async def test_thinking_with_a_budget(client: anthropic.AsyncAnthropic, backend: ScriptedBackend) -> None:
    backend.enqueue("add seven and five", "12")
    r = await client.messages.create(model="scripted", max_tokens=64, messages=ASK,
                                     thinking={"type": "enabled", "budget_tokens": 100},
                                     extra_body={"thought_compression": False})  # fmt: skip
    assert [b.type for b in r.content] == ["thinking", "text"]
    assert r.content[0].thinking == "add seven and five" and r.content[1].text == "12"  # type: ignore[union-attr]
    assert r.model_extra and r.model_extra["ponder"]["mode"] == "thinking"
    evidence = r.model_extra["ponder"]["progress"][-1]
    assert evidence["type"] == "evidence" and r.model_extra["ponder"]["confidence"] == evidence["confidence"]
    backend.enqueue("12")
    r = await client.messages.create(model="scripted", max_tokens=64, messages=ASK, thinking={"type": "disabled"})
    assert r.model_extra and r.model_extra["ponder"]["mode"] == "instant"
    assert r.model_extra["ponder"]["confidence"] is None  # Instant has no evidence
    backend.enqueue("step", "12")
    r = await client.messages.create(model="scripted", max_tokens=1024, messages=ASK, output_config={"effort": "low"},
                                     extra_body={"mode": "thinking", "thought_compression": False})  # fmt: skip
    assert backend.requests[-2].params.max_tokens == EFFORT_BUDGETS["low"]  # the reasoning phase's budget


async def test_a_json_schema_output_format(client: anthropic.AsyncAnthropic, backend: ScriptedBackend) -> None:
    backend.enqueue('{"city": "Paris"}')
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    r = await client.messages.create(model="scripted", max_tokens=64, messages=ASK, thinking={"type": "disabled"},
                                     output_config={"format": {"type": "json_schema", "schema": schema}})  # fmt: skip
    assert json.loads(r.content[0].text) == {"city": "Paris"}  # type: ignore[union-attr]
    sent = backend.requests[-1].params.response_format
    assert sent is not None and sent["type"] == "json_schema" and sent["json_schema"]["schema"] == schema


async def test_a_tool_round_trip(client: anthropic.AsyncAnthropic, backend: ScriptedBackend) -> None:
    backend.enqueue(CALL)
    r = await client.messages.create(model="scripted", max_tokens=64, messages=ASK, tools=[WEATHER],
                                     tool_choice={"type": "tool", "name": "get_weather"})  # fmt: skip
    assert r.stop_reason == "tool_use"
    (use,) = [b for b in r.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"} and use.id
    assert (backend.requests[-1].tool_choice, backend.requests[-1].tool_name) == ("required", "get_weather")
    backend.enqueue("Sunny, 24 C.")
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 24 C"}
    follow: Any = [*ASK, {"role": "assistant", "content": [b.model_dump() for b in r.content]},
              {"role": "user", "content": [result]}]  # fmt: skip
    answer = await client.messages.create(model="scripted", max_tokens=64, messages=follow, tools=[WEATHER])
    assert answer.content[0].text == "Sunny, 24 C."  # type: ignore[union-attr]
    sent = backend.requests[-1].messages
    (call,) = sent[1].tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert sent[2].role == "tool" and sent[2].tool_call_id == use.id and sent[2].content == "sunny, 24 C"


async def test_a_streamed_tool_call(client: anthropic.AsyncAnthropic, backend: ScriptedBackend) -> None:
    backend.enqueue(CALL)
    async with client.messages.stream(model="scripted", max_tokens=64, messages=ASK, tools=[WEATHER],
                                      tool_choice={"type": "any"}) as stream:  # fmt: skip
        final = await stream.get_final_message()
    (use,) = [b for b in final.content if b.type == "tool_use"]
    assert use.input == {"city": "Paris"} and final.stop_reason == "tool_use"


@pytest.mark.e2e  # reads the image with the OCR model
async def test_an_image_is_perceived_and_counted(client: anthropic.AsyncAnthropic, backend: ScriptedBackend) -> None:
    png = base64.b64encode(text_png(["PONDER 42"])).decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    content: Any = [image, {"type": "text", "text": "What does it say?"}]
    question: Any = [{"role": "user", "content": "What does it say?"}]
    alone = await client.messages.count_tokens(model="scripted", messages=question)
    turn: Any = [{"role": "user", "content": content}]
    both = await client.messages.count_tokens(model="scripted", messages=turn)
    assert both.input_tokens > alone.input_tokens > 0
    backend.enqueue("It says PONDER 42.")
    instant = {"mode": "instant"}  # one call: the message as the model was given it
    r = await client.messages.create(model="scripted", max_tokens=32, messages=[{"role": "user", "content": content}],
                                     extra_body=instant)  # fmt: skip
    assert [b.text for b in r.content if b.type == "text"] == ["It says PONDER 42."]
    assert "PONDER" in backend.requests[-1].messages[-1].content  # the scripted model has no eyes: it read the text


async def test_errors_come_in_anthropics_shape(client: anthropic.AsyncAnthropic, raw: httpx.AsyncClient) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        await client.messages.create(model="no-such-model", max_tokens=8, messages=ASK)
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(model="scripted", max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": "AAAA"}}]}])  # fmt: skip
    assert bad.value.body == {"type": "error", "error": {  # type: ignore[comparison-overlap]
        "type": "invalid_request_error", "param": "messages.0.content.0.source.media_type",
        "message": "Invalid value for 'messages.0.content.0.source.media_type': an image is one of image/jpeg, "
                   "image/png, image/gif, image/webp."}}  # fmt: skip
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": "scripted", "messages": ASK}, "max_tokens"),
        ({"model": "scripted", "max_tokens": 0, "messages": ASK}, "max_tokens"),
        ({"model": "scripted", "max_tokens": 8, "messages": []}, "messages"),
        ({"model": "scripted", "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
         "messages.0.content.0.type"),
        ({"model": "scripted", "max_tokens": 8, "messages": ASK, "tools": [{"type": "web_search_20250305",
                                                                             "name": "web_search"}]}, "tools.0.type"),
        ({"model": "scripted", "max_tokens": 8, "messages": ASK, "tool_choice": {"type": "any"}}, "tool_choice"),
        ({"model": "scripted", "max_tokens": 8, "messages": ASK, "thinking": {"type": "enabled"}},
         "thinking.budget_tokens"),
    ]  # fmt: skip
    for body, param in cases:
        r = await raw.post("/v1/messages", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error", r.text
        assert r.json()["error"].get("param", "").startswith(param), (param, r.text)
    r = await raw.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


async def test_x_api_key_is_a_ponder_key_and_auth_errors_are_anthropics(
    tmp_path: Path, backend: ScriptedBackend
) -> None:
    app, store, secret = keyed_app(tmp_path, backend)
    ok, wrong = sdk(app, secret), sdk(app, "nope")
    backend.enqueue("hi")
    r = await ok.messages.create(model="scripted", max_tokens=8, messages=ASK)
    assert r.content[0].text == "hi"  # type: ignore[union-attr]
    with pytest.raises(anthropic.AuthenticationError) as e:
        await wrong.messages.create(model="scripted", max_tokens=8, messages=ASK)
    assert e.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    await ok.close()
    await wrong.close()
    store.close()
