"""The Responses API on the scripted backend, called with the official openai SDK
through an in-process ASGI transport, with a real SQLite store in tmp_path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ponder.backends.registry import Registry
from ponder.backends.scripted import ScriptedBackend
from ponder.config import Settings
from ponder.errors import UpstreamError
from ponder.models import ModelStore
from ponder.server.app import create_app
from ponder.store import SqliteStore, Store
from ponder.types import ChatRequest, TextDelta
from tests.conftest import QUEUED


def make_client(data_dir: Path, backend: ScriptedBackend) -> tuple[openai.AsyncOpenAI, Store]:
    settings = Settings(data_dir=data_dir, default_model="scripted", modes=QUEUED)
    registry = Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), {"scripted": backend})
    store = SqliteStore(data_dir / "ponder.db")
    app = create_app(registry, store=store)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost/v1")
    return openai.AsyncOpenAI(base_url="http://localhost/v1", api_key="unused", http_client=http, max_retries=0), store


@pytest.fixture
async def client(tmp_path: Path, backend: ScriptedBackend) -> AsyncIterator[openai.AsyncOpenAI]:
    c, store = make_client(tmp_path, backend)
    yield c
    await c.close()
    store.close()


async def test_text_in_text_out_then_retrieve_and_list_input_items(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue("Paris is the capital.")
    r = await client.responses.create(model="scripted", input="What is the capital of France?")
    assert r.status == "completed" and r.object == "response"
    assert r.output_text == "Paris is the capital."
    assert [o.type for o in r.output] == ["message"]
    assert r.usage is not None and r.usage.output_tokens == 4 and r.usage.output_tokens_details.reasoning_tokens == 0
    got = await client.responses.retrieve(r.id)
    assert got.output_text == r.output_text and got.id == r.id
    items = await client.responses.input_items.list(r.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]
    assert items.data[0].content[0].text == "What is the capital of France?"  # type: ignore[union-attr]


async def test_thinking_streams_reasoning_then_text_in_the_official_event_order(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue("six sevens are forty two", "42")
    kinds: list[str] = []
    async with client.responses.stream(
        model="scripted", input="6*7?", reasoning={"effort": "low"}, extra_body={"thought_compression": False}
    ) as stream:
        async for event in stream:
            kinds.append(event.type)
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds.count("response.reasoning_text.delta") == 5
    reasoning_end = kinds.index("response.reasoning_text.done")
    assert kinds[reasoning_end : reasoning_end + 4] == [
        "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added"]  # fmt: skip
    assert "response.output_text.delta" in kinds and kinds[-1] == "response.completed"
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == "six sevens are forty two"  # type: ignore[union-attr,index]
    assert final.output_text == "42"
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 5
    stored = await client.responses.retrieve(final.id)
    assert stored.output_text == "42" and stored.status == "completed"


async def test_a_reasoning_summary_streams_in_the_reasoning_item(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue("six sevens are forty two", "42", "Multiplied six by seven.")
    kinds: list[str] = []
    async with client.responses.stream(
        model="scripted", input="6*7?", reasoning={"effort": "low", "summary": "concise"},
        extra_body={"thought_compression": False},
    ) as stream:  # fmt: skip
        async for event in stream:
            kinds.append(event.type)
        final = await stream.get_final_response()
    summary_ask = backend.requests[-1].messages[-1].content
    assert "six sevens are forty two" in summary_ask and "6*7?" in summary_ask and "one sentence" in summary_ask
    assert kinds.count("response.reasoning_summary_text.delta") == 4
    start = kinds.index("response.reasoning_summary_part.added")
    end = kinds.index("response.reasoning_summary_part.done")
    assert kinds[start - 1] == "response.reasoning_text.delta"
    assert kinds[end - 1] == "response.reasoning_summary_text.done"
    assert kinds[end + 1 : end + 4] == [
        "response.reasoning_text.done", "response.content_part.done", "response.output_item.done"]  # fmt: skip
    assert kinds.index("response.output_text.delta") > end
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Multiplied six by seven."
    assert final.output_text == "42" and final.reasoning.summary == "concise"  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens == 5 + 1 + 4  # reasoning, answer, summary
    assert final.usage.output_tokens_details.reasoning_tokens == 5


async def test_previous_response_id_continues_the_conversation_without_old_instructions(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue("Nice to meet you, Ada.", "Your name is Ada.")
    first = await client.responses.create(model="scripted", input="I am Ada.", instructions="Be terse.")
    await client.responses.create(model="scripted", input="What is my name?", previous_response_id=first.id)
    sent = backend.requests[-1].messages
    assert [(m.role, m.content.split("\n\n")[0]) for m in sent] == [
        ("user", "I am Ada."), ("assistant", "Nice to meet you, Ada."), ("user", "What is my name?")]  # fmt: skip
    assert backend.requests[0].messages[0].role == "system" and "Be terse." in backend.requests[0].messages[0].content


async def test_store_false_is_not_kept_and_delete_removes(client: openai.AsyncOpenAI, backend: ScriptedBackend) -> None:
    r = await client.responses.create(model="scripted", input="hello", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(r.id)
    kept = await client.responses.create(model="scripted", input="hello")
    deleted = await client.responses.delete(kept.id)  # type: ignore[func-returns-value]
    assert deleted is None  # the SDK returns nothing; the 200 is what counts
    with pytest.raises(openai.NotFoundError) as e:
        await client.responses.retrieve(kept.id)
    assert e.value.body["param"] == "response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(kept.id)


async def test_stored_responses_survive_a_restart(tmp_path: Path, backend: ScriptedBackend) -> None:
    client, store = make_client(tmp_path, backend)
    backend.enqueue("remembered")
    r = await client.responses.create(model="scripted", input="keep this")
    await client.close()
    store.close()
    again, store2 = make_client(tmp_path, ScriptedBackend())
    try:
        assert (await again.responses.retrieve(r.id)).output_text == "remembered"
    finally:
        await again.close()
        store2.close()


async def test_input_items_pages(client: openai.AsyncOpenAI) -> None:
    msgs = [{"role": "user", "content": f"message {i}"} for i in range(3)]
    r = await client.responses.create(model="scripted", input=msgs)  # type: ignore[arg-type]
    page = await client.responses.input_items.list(r.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["message 0", "message 1"]  # type: ignore[union-attr]
    assert page.has_more
    rest = await client.responses.input_items.list(r.id, order="asc", after=page.data[-1].id)
    assert [i.content[0].text for i in rest.data] == ["message 2"]  # type: ignore[union-attr]
    newest = await client.responses.input_items.list(r.id, limit=1)
    assert newest.data[0].content[0].text == "message 2"  # type: ignore[union-attr]


async def test_input_tokens_counts_the_prompt(client: openai.AsyncOpenAI) -> None:
    counted = await client.responses.input_tokens.count(
        model="scripted", input="one two three", instructions="four five"
    )
    assert counted.object == "response.input_tokens" and counted.input_tokens == 5


async def test_max_output_tokens_makes_an_incomplete_response(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue("a b c d e f")
    r = await client.responses.create(model="scripted", input="go", max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens" and r.output_text == "a b c"


async def test_a_failure_mid_stream_is_a_response_failed_event(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    async def failing(request: ChatRequest) -> AsyncIterator[Any]:
        yield TextDelta("partial")
        raise UpstreamError("engine went away")

    backend.stream = failing  # type: ignore[method-assign,assignment]
    events = [e async for e in await client.responses.create(model="scripted", input="go", stream=True)]
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None and events[-1].response.error.message == "engine went away"
    stored = await client.responses.retrieve(events[-1].response.id)
    assert stored.status == "failed"


BAD = [
    ({"input": []}, 400, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}]}, 400,
     "input.0.content.0.image_url"),
    ({"input": [{"role": "user", "content": [{"type": "input_video", "video_url": "data:,"}]}]}, 400,
     "input.0.content.0"),
    ({"input": [{"role": "wizard", "content": "x"}]}, 400, "input.0.role"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, 400, "input.0.type"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, 400, "input.0.call_id"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, 400, "tools.0.type"),
    ({"input": "hi", "tools": [{"type": "file_search", "vector_store_ids": ["x"]}]}, 400, "tools.0.vector_store_ids"),
    ({"input": "hi", "tools": [{"type": "code_interpreter"}]}, 400, "tools.0.type"),
    ({"input": "hi", "tools": [{"type": "mcp", "server_label": "nope"}]}, 400, "tools.0.server_label"),
    ({"input": "hi", "tools": [{"type": "function", "name": "no spaces"}]}, 400, "tools.0.name"),
    ({"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {"type": 7}}]}, 400,
     "tools.0.parameters"),
    ({"input": "hi", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}},
     400, "tool_choice"),
    ({"input": "hi", "max_output_tokens": 0}, 400, "max_output_tokens"),
    ({"input": "hi", "reasoning": {"effort": "extreme"}}, 400, "reasoning.effort"),
    ({"input": "hi", "previous_response_id": "resp_nope"}, 404, "previous_response_id"),
    ({"input": "hi", "model": "no-such-model"}, 404, "model"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "status", "param"), BAD)
async def test_bad_requests_get_openai_errors(
    client: openai.AsyncOpenAI, extra: dict[str, Any], status: int, param: str
) -> None:
    body = {"model": "scripted", **extra}
    r = await client._client.post("/responses", json=body)  # base_url ends in /v1
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param and err["message"]


async def test_contemplating_progress_rides_along_as_ponder_events(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.respond = lambda req: "so the answer is 42"
    extra = {"mode": "contemplating", "thought_compression": False, "contemplation": {"agents": 2}}
    kinds: list[str] = []
    async with client.responses.stream(model="scripted", input="6*7?", extra_body=extra) as stream:
        async for event in stream:
            kinds.append(event.type)
        final = await stream.get_final_response()
    assert "ponder.progress" in kinds and kinds[-1] == "response.completed"
    assert final.output_text == "so the answer is 42"
    progress = [p["type"] for p in final.model_extra["ponder"]["progress"]]  # type: ignore[index]
    assert progress[0] == "plan" and progress.count("agent.done") == 2 and progress[-2:] == ["synthesis.start",
                                                                                              "evidence"]  # fmt: skip
    ponder = final.model_extra["ponder"]  # type: ignore[index]
    assert ponder["confidence"] == ponder["progress"][-1]["confidence"]  # the evidence's, on the response itself


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


async def test_function_calls_then_their_output_in_a_follow_up(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue(CALL, "It is sunny in Paris.")
    kinds: list[str] = []
    async with client.responses.stream(model="scripted", input="Weather in Paris?", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        async for event in stream:
            kinds.append(event.type)
        first = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    (call,) = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second = await client.responses.create(
        model="scripted", previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24 C"}],
    )  # fmt: skip
    assert second.output_text == "It is sunny in Paris."
    sent = backend.requests[-1].messages
    assert sent[-2].role == "assistant" and sent[-2].tool_calls[0].id == call.call_id
    assert (sent[-1].role, sent[-1].content, sent[-1].tool_call_id) == ("tool", "sunny, 24 C", call.call_id)
    items = await client.responses.input_items.list(second.id)
    assert items.data[0].type == "function_call_output"
