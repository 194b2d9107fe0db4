"""Ollama's API on the scripted backend, through the official `ollama` client over an
in-process ASGI transport: every reply must parse into the client's own types. (The
same client against a real model, and langchain-ollama, are in test_compat.py.)"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ollama
import pytest

from ponder.backends.registry import Registry
from ponder.backends.scripted import ScriptedBackend
from ponder.config import EFFORT_BUDGETS, ServerSettings, Settings
from ponder.models import ModelStore
from ponder.server.app import create_app
from ponder.server.ollama_wire import EMBEDDER
from ponder.types import Done, TextDelta, TokenLogprob, Usage
from tests.conftest import keyed_app
from tests.media import text_png

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
CITY: Any = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER: Any = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather in a city.", "parameters": CITY},
}
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


def client_for(app: Any, **kw: Any) -> ollama.AsyncClient:
    """The client, in process: its httpx client on an ASGI transport."""
    return ollama.AsyncClient(host="http://localhost", transport=httpx.ASGITransport(app=app), **kw)


@pytest.fixture
def client(app: Any) -> ollama.AsyncClient:
    return client_for(app)


async def test_chat_whole_and_streamed(client: ollama.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue("Paris is the capital.")
    turns: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Let me think.", "thinking": "an earlier thought"},
        {"role": "user", "content": "Just say it."},
    ]
    options = {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
        "num_predict": 64,
        "num_ctx": 4096,
        "top_k": 40,
        "repeat_penalty": 1.1,
    }
    r = await client.chat(model="scripted", messages=turns, think=False, options=options, keep_alive="5m")
    assert isinstance(r, ollama.ChatResponse) and r.done and r.done_reason == "stop" and r.model == "scripted"
    assert r.message.role == "assistant" and r.message.content == "Paris is the capital." and not r.message.thinking
    assert r.eval_count == 4 and r.prompt_eval_count and r.prompt_eval_count > 0 and r.created_at
    assert r.total_duration and r.total_duration >= (r.eval_duration or 0) > 0
    sent = backend.requests[-1]
    assert [(m.role, m.content) for m in sent.messages] == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
        ("assistant", "Let me think."),
        ("user", "Just say it."),
    ]
    p = sent.params
    assert (p.max_tokens, p.temperature, p.top_p, p.seed, p.stop) == (64, 0.2, 0.9, 7, ("END",))

    backend.enqueue("one two three")
    parts = [
        c
        async for c in await client.chat(
            model="scripted", messages=ASK, stream=True, think=False, options={"num_predict": -1}
        )
    ]
    assert all(isinstance(c, ollama.ChatResponse) for c in parts)
    assert backend.requests[-1].params.max_tokens is None  # -1: no limit
    assert "".join(c.message.content or "" for c in parts) == "one two three"
    assert [c.done for c in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == 3 and parts[-1].message.content == ""


async def test_generate_whole_and_streamed(client: ollama.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue("Blue, by scattering.")
    r = await client.generate(
        model="scripted", prompt="Why is the sky blue?", system="One line.", think=False, options={"num_predict": 2}
    )
    assert isinstance(r, ollama.GenerateResponse) and r.done and r.done_reason == "length"
    assert r.response == "Blue, by" and not r.context
    assert [(m.role, m.content) for m in backend.requests[-1].messages] == [
        ("system", "One line."),
        ("user", "Why is the sky blue?"),
    ]
    backend.enqueue("a b c")
    parts = [c async for c in await client.generate(model="scripted", prompt="abc", stream=True, think=False)]
    assert "".join(c.response or "" for c in parts) == "a b c" and parts[-1].done and parts[-1].eval_count == 3


async def test_an_empty_request_loads_the_model(client: ollama.AsyncClient, backend: ScriptedBackend) -> None:
    r = await client.chat(model="scripted", messages=[])
    assert r.done and r.done_reason == "load" and r.message.content == ""
    g = await client.generate(model="scripted")
    assert g.done and g.done_reason == "load" and g.response == ""
    assert not backend.requests


async def test_list_show_ps_and_version(client: ollama.AsyncClient, raw: httpx.AsyncClient) -> None:
    import ponder

    listed = await client.list()
    names = [m.model for m in listed.models]
    assert names == ["scripted", EMBEDDER]
    assert all(m.digest and m.modified_at is not None and m.details for m in listed.models)
    shown = await client.show("scripted:latest")  # Ollama's default tag names the model
    assert shown.capabilities and {"completion", "tools", "thinking"} <= set(shown.capabilities)
    assert (await client.show(EMBEDDER)).capabilities == ["embedding"]
    with pytest.raises(ollama.ResponseError) as e:
        await client.show("no-such-model")
    assert e.value.status_code == 404 and "no-such-model" in e.value.error
    running = await client.ps()
    assert [m.model for m in running.models] == ["scripted"] and running.models[0].expires_at is not None
    assert (await raw.get("/api/version")).json() == {"version": ponder.__version__}


async def test_a_tool_round_trip(client: ollama.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue(CALL)
    r = await client.chat(model="scripted", messages=ASK, tools=[WEATHER], think=False)
    (call,) = r.message.tool_calls or []
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
    assert r.done_reason == "stop" and backend.requests[-1].tools[0].name == "get_weather"
    backend.enqueue("Sunny, 24 C.")
    follow: Any = [*ASK, r.message, {"role": "tool", "content": "sunny, 24 C", "tool_name": "get_weather"}]
    answer = await client.chat(model="scripted", messages=follow, tools=[WEATHER], think=False)
    assert answer.message.content == "Sunny, 24 C."
    sent = backend.requests[-1].messages
    (made,) = sent[1].tool_calls
    assert made.name == "get_weather" and json.loads(made.arguments) == {"city": "Paris"}
    assert sent[2].role == "tool" and sent[2].tool_call_id == made.id and sent[2].content == "sunny, 24 C"

    backend.enqueue(CALL)
    parts = [
        c async for c in await client.chat(model="scripted", messages=ASK, tools=[WEATHER], stream=True, think=False)
    ]
    calls = [tc for c in parts for tc in c.message.tool_calls or []]
    assert [(tc.function.name, tc.function.arguments) for tc in calls] == [("get_weather", {"city": "Paris"})]


async def test_think_as_a_bool_and_a_level(client: ollama.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue("add seven and five", "12")
    r = await client.chat(model="scripted", messages=ASK, think=True)
    assert r.message.thinking == "add seven and five" and r.message.content == "12"
    backend.enqueue("step", "12")
    r = await client.chat(model="scripted", messages=ASK, think="low", options={"num_predict": 1024})
    assert r.message.thinking == "step" and r.message.content == "12"
    backend.enqueue("added up", "12")
    parts = [c async for c in await client.generate(model="scripted", prompt="7 + 5?", think=True, stream=True)]
    assert "".join(c.thinking or "" for c in parts) == "added up" and "".join(c.response or "" for c in parts) == "12"
    backend.enqueue("12")
    before = len(backend.requests)
    r = await client.chat(model="scripted", messages=ASK, think=False)
    assert r.message.content == "12" and not r.message.thinking and len(backend.requests) == before + 1


async def test_ponders_own_fields_and_thinks_effort(raw: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue("thought", "12")
    body = {
        "model": "scripted",
        "messages": ASK,
        "stream": False,
        "mode": "thinking",
        "think": False,
        "thought_compression": False,
    }
    r = await raw.post("/api/chat", json=body)
    assert r.status_code == 200 and r.json()["message"] == {"role": "assistant", "content": "12", "thinking": "thought"}
    for level in ("low", "high"):
        backend.enqueue("step", "12")
        r = await raw.post("/api/chat", json={**body, "mode": None, "think": level})
        assert r.status_code == 200 and r.json()["message"]["thinking"] == "step"
        assert backend.requests[-2].params.max_tokens == EFFORT_BUDGETS[level]  # the reasoning phase's budget


async def test_logprobs(client: ollama.AsyncClient, backend: ScriptedBackend) -> None:
    top = (("Hi", -0.1), ("Hello", -2.5))
    backend.enqueue([TextDelta("Hi", (TokenLogprob("Hi", -0.1, top),)), Done("stop", Usage(3, 1))])
    r = await client.chat(model="scripted", messages=ASK, think=False, logprobs=True, top_logprobs=2)
    assert backend.requests[-1].params.logprobs == 2
    (lp,) = r.logprobs or []
    assert (lp.token, lp.logprob) == ("Hi", -0.1)
    assert [(t.token, t.logprob) for t in lp.top_logprobs or []] == list(top)


async def test_format_json_and_a_schema(client: ollama.AsyncClient, backend: ScriptedBackend) -> None:
    backend.enqueue('{"city": "Paris"}')
    r = await client.chat(model="scripted", messages=ASK, format="json", think=False)
    assert json.loads(r.message.content or "") == {"city": "Paris"}
    assert backend.requests[-1].params.response_format == {"type": "json_object"}
    backend.enqueue('{"city": "Paris"}')
    await client.generate(model="scripted", prompt="Where?", format=CITY, think=False)
    sent = backend.requests[-1].params.response_format
    assert sent is not None and sent["type"] == "json_schema" and sent["json_schema"]["schema"] == CITY


@pytest.mark.e2e  # reads the image with the OCR model
async def test_images_reach_perception(client: ollama.AsyncClient, backend: ScriptedBackend) -> None:
    png = text_png(["PONDER 42"])
    backend.enqueue("It says PONDER 42.")
    turn: Any = [{"role": "user", "content": "What does it say?", "images": [png]}]
    r = await client.chat(model="scripted", messages=turn, think=False)
    assert r.message.content == "It says PONDER 42."
    assert "PONDER" in backend.requests[-1].messages[-1].content  # the scripted model has no eyes: it read the text
    backend.enqueue("42")
    await client.generate(model="scripted", prompt="The number?", images=[base64.b64encode(png).decode()], think=False)
    assert "42" in backend.requests[-1].messages[-1].content


async def test_embed(client: ollama.AsyncClient) -> None:
    r = await client.embed(model=EMBEDDER, input=["a cat sat on the mat", "un chat sur le tapis", "tax law"])
    v = np.array(r.embeddings)
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]  # the same meaning, across languages, is nearer
    short = await client.embed(model=EMBEDDER, input="a cat", dimensions=64)
    assert np.array(short.embeddings).shape == (1, 64)
    assert np.isclose(np.linalg.norm(short.embeddings[0]), 1, atol=1e-4)
    with pytest.raises(ollama.ResponseError) as e:
        await client.embed(model="scripted", input="a cat")
    assert e.value.status_code == 400 and EMBEDDER in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        await client.embed(model="nope", input="a cat")
    assert e.value.status_code == 404


async def test_pull_of_a_served_model_succeeds_at_once(client: ollama.AsyncClient) -> None:
    lines = [p async for p in await client.pull("scripted", stream=True)]
    assert [p.status for p in lines] == ["success"]
    assert (await client.pull("scripted")).status == "success"
    with pytest.raises(ollama.ResponseError) as e:
        await client.pull("llama3.2")
    assert e.value.status_code == 404 and "smollm2-135m" in e.value.error  # what can be pulled


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"messages": ASK, "options": {"temperature": "hot"}}, "options.temperature"),
        ({"messages": ASK, "options": {"num_predict": -3}}, "options.num_predict"),
        ({"messages": ASK, "think": "extreme"}, "think"),
        ({"messages": ASK, "format": "xml"}, "format"),
        ({"messages": ASK, "format": {"type": "objekt"}}, "format"),
        ({"messages": [{"role": "user", "content": "hi", "images": ["not base64!"]}]}, "messages.0.images.0"),
        ({"messages": [{"role": "user", "content": "hi", "images": ["AAAA"]}]}, "messages.0.images.0"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": "hi", "tool_calls": [{"function": {"name": "f"}}]}]},
            "messages.0.tool_calls",
        ),
        ({"messages": ASK, "tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0"),
        ({"prompt": "hi", "raw": True}, "raw"),
        ({"prompt": "hi", "suffix": "end"}, "suffix"),
        ({"prompt": "hi", "context": [1, 2, 3]}, "context"),
    ],
)
async def test_bad_input_is_a_400_in_ollamas_shape(raw: httpx.AsyncClient, body: dict[str, Any], words: str) -> None:
    path = "/api/generate" if "prompt" in body else "/api/chat"
    r = await raw.post(path, json={"model": "scripted", "stream": False, **body})
    assert r.status_code == 400, r.text
    assert list(r.json()) == ["error"] and words in r.json()["error"], r.text


async def test_other_errors_in_ollamas_shape(client: ollama.AsyncClient, raw: httpx.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as e:
        await client.chat(model="no-such-model", messages=ASK)
    assert e.value.status_code == 404 and "no-such-model" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        await client.chat(model=EMBEDDER, messages=ASK)
    assert e.value.status_code == 400
    for method, path, status in [("GET", "/api/chat", 405), ("POST", "/api/create", 404)]:
        r = await raw.request(method, path)
        assert r.status_code == status and list(r.json()) == ["error"], r.text
    r = await raw.post("/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and list(r.json()) == ["error"]


async def test_keys_apply_to_ollamas_paths(tmp_path: Path, backend: ScriptedBackend) -> None:
    app, store, secret = keyed_app(tmp_path, backend)
    backend.enqueue("hi")
    ok = client_for(app, headers={"Authorization": f"Bearer {secret}"})
    assert (await ok.chat(model="scripted", messages=ASK, think=False)).message.content == "hi"
    assert (await ok.list()).models[0].model == "scripted"
    for anonymous in (client_for(app), client_for(app, headers={"Authorization": "Bearer nope"})):
        with pytest.raises(ollama.ResponseError) as e:
            await anonymous.list()
        assert e.value.status_code == 401 and "API key" in e.value.error
    store.close()


async def test_a_body_is_json_whatever_its_content_type(raw: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    """As Ollama's own server reads it: its documented `curl -d` sends a form's Content-Type."""
    backend.enqueue("hi there")
    body = json.dumps({"model": "scripted", "prompt": "hi", "stream": False, "think": False})
    r = await raw.post("/api/generate", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["response"] == "hi there"


async def test_an_error_mid_stream_is_the_last_line(tmp_path: Path) -> None:
    slow = ScriptedBackend(respond=lambda r: " ".join(["word"] * 200), delay=0.02)
    settings = Settings(data_dir=tmp_path, default_model="scripted", server=ServerSettings(request_timeout_s=0.3))
    app = create_app(Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), {"scripted": slow}))
    client = client_for(app)
    with pytest.raises(ollama.ResponseError) as e:
        await client.chat(model="scripted", messages=ASK, think=False)
    assert e.value.status_code == 408
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as raw:
        r = await raw.post("/api/chat", json={"model": "scripted", "messages": ASK, "think": False})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert r.status_code == 200 and lines[0]["message"]["content"] == "word" and not lines[0]["done"]
    assert list(lines[-1]) == ["error"] and "limit of 0.3 s" in lines[-1]["error"]
    with pytest.raises(ollama.ResponseError):  # the client raises it, after the words that came
        [c async for c in await client.chat(model="scripted", messages=ASK, think=False, stream=True)]
    assert slow.active == 0
