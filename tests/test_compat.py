"""The compatibility suite: clients people already use, unchanged but for `base_url`,
against a real `ponder serve` on the tiny model. Every answer must parse into the
client's own types. (Plain chat and streaming with the openai SDK are in
test_e2e_server.py.)

The 135M model is for plumbing, not judgement, so tool calls are forced with
`tool_choice` where a test needs one: what is checked is that the call comes
back well formed, not that the model chose it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anthropic
import jsonschema
import ollama
import openai
import pytest
from anthropic.types import Message as AnthropicMessage
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pydantic import BaseModel, Field

from ponder.server.ollama_wire import EMBEDDER
from tests.conftest import TINY
from tests.media import text_png

pytestmark = pytest.mark.e2e

WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
                                            "parameters": WEATHER_PARAMS}}  # fmt: skip
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
FORCE = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def client(ponder_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=ponder_server, api_key="unused", max_retries=0, timeout=120)


# --- the openai SDK --------------------------------------------------------------------


def test_openai_tools_forced_streamed_and_answered(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": TINY, "tools": [WEATHER], "tool_choice": FORCE, "max_tokens": 64, "temperature": 0}
    r = client.chat.completions.create(messages=ASK_WEATHER, **kw)  # type: ignore[arg-type]
    assert isinstance(r, ChatCompletion) and r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMS)  # type: ignore[union-attr]

    pieces: dict[int, dict[str, str]] = {}
    for chunk in client.chat.completions.create(messages=ASK_WEATHER, stream=True, **kw):  # type: ignore[arg-type]
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            p = pieces.setdefault(tc.index, {"name": "", "arguments": ""})
            p["name"] += tc.function.name or ""  # type: ignore[union-attr]
            p["arguments"] += tc.function.arguments or ""  # type: ignore[union-attr]
    assert pieces[0]["name"] == "get_weather" and json.loads(pieces[0]["arguments"]) == json.loads(
        call.function.arguments  # type: ignore[union-attr]
    )

    follow = [*ASK_WEATHER, r.choices[0].message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"}]  # fmt: skip
    answer = client.chat.completions.create(model=TINY, messages=follow, tools=[WEATHER], max_tokens=32,  # type: ignore[arg-type]
                                            temperature=0)  # type: ignore[arg-type]  # fmt: skip
    assert answer.choices[0].message.content


def test_openai_responses_create_stream_retrieve_follow_up_and_count(client: openai.OpenAI) -> None:
    first = client.responses.create(model=TINY, input="My name is Ada.", max_output_tokens=24, temperature=0)
    assert isinstance(first, Response) and first.status in ("completed", "incomplete") and first.output_text
    assert client.responses.retrieve(first.id).output_text == first.output_text
    events = list(client.responses.create(model=TINY, input="What is my name?", previous_response_id=first.id,
                                          max_output_tokens=24, temperature=0, stream=True))  # fmt: skip
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert events[-1].type in ("response.completed", "response.incomplete")  # the 135M model may hit the cap
    second = events[-1].response  # type: ignore[union-attr]
    assert "".join(deltas) == second.output_text and second.previous_response_id == first.id
    items = client.responses.input_items.list(second.id)
    assert [i.type for i in items.data] == ["message"]
    counted = client.responses.input_tokens.count(model=TINY, input="What is my name?")
    alone = client.responses.input_tokens.count(model=TINY, input="What is my name?", previous_response_id=first.id)
    assert 0 < counted.input_tokens < alone.input_tokens


# --- langchain-openai ------------------------------------------------------------------


def test_openai_responses_reasoning_summary(client: openai.OpenAI) -> None:
    reasoning_asked: Any = {"effort": "minimal", "summary": "concise"}
    events = list(client.responses.create(model=TINY, input="What is 6 times 7?", stream=True, max_output_tokens=256,
                                          reasoning=reasoning_asked, temperature=0))  # fmt: skip
    final = events[-1].response  # type: ignore[union-attr]
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and reasoning.content and reasoning.content[0].text
    deltas = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert deltas.strip() and reasoning.summary[0].text == deltas
    assert final.usage.output_tokens > final.usage.output_tokens_details.reasoning_tokens > 0


def test_openai_responses_tool_search_loads_deferred_tools(client: openai.OpenAI) -> None:
    others = ["send_email", "set_timer", "play_music", "order_pizza", "stock_price", "translate_text"]
    catalog = [
        {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
         "parameters": WEATHER_PARAMS, "defer_loading": True},
        *[{"type": "function", "name": n, "description": n.replace("_", " ").capitalize() + ".", "defer_loading": True,
           "parameters": {"type": "object", "properties": {"what": {"type": "string"}}}} for n in others],
    ]  # fmt: skip
    tools: Any = [{"type": "tool_search"}, *catalog]
    r = client.responses.create(model=TINY, input="What is the weather in Paris? Search for a weather tool.",
                                tools=tools, tool_choice={"type": "tool_search"},  # type: ignore[arg-type]
                                max_output_tokens=128, temperature=0)  # fmt: skip
    assert isinstance(r, Response) and r.status in ("completed", "incomplete")
    search, found = r.output[0], r.output[1]
    assert search.type == "tool_search_call" and search.execution == "server"
    assert isinstance(search.arguments, dict) and isinstance(search.arguments["query"], str)  # type: ignore[index]
    assert found.type == "tool_search_output" and found.call_id == search.call_id
    loaded = {t.name for t in found.tools}  # type: ignore[union-attr]
    assert loaded and loaded <= {"get_weather", *others}  # some of the catalogue, whatever the query said
    for item in r.output[2:]:  # whatever the model did next used only what it had
        assert item.type in ("message", "function_call", "tool_search_call", "tool_search_output")
        if item.type == "function_call":
            assert item.name in loaded
    eager = client.responses.input_tokens.count(model=TINY, input="hi", tools=[  # type: ignore[list-item]
        {k: v for k, v in t.items() if k != "defer_loading"} for t in catalog])  # fmt: skip
    deferred = client.responses.input_tokens.count(model=TINY, input="hi", tools=tools)
    bare = client.responses.input_tokens.count(model=TINY, input="hi")
    assert bare.input_tokens < deferred.input_tokens < eager.input_tokens


def test_langchain_invoke_stream_and_bind_tools(ponder_server: str) -> None:
    from langchain_core.messages import AIMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=TINY, base_url=ponder_server, api_key="unused", temperature=0, max_tokens=24)  # type: ignore[arg-type]
    reply = llm.invoke("Say hello.")
    assert isinstance(reply, AIMessage) and isinstance(reply.content, str) and reply.content
    assert "".join(str(c.content) for c in llm.stream("Say hello.")) == reply.content

    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return "sunny"

    called = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert isinstance(called, AIMessage) and called.tool_calls[0]["name"] == "get_weather"
    assert isinstance(called.tool_calls[0]["args"], dict)


# --- litellm ---------------------------------------------------------------------------


def test_litellm_through_its_openai_provider(ponder_server: str) -> None:
    import litellm

    hello = [{"role": "user", "content": "Say hello."}]
    kw: dict[str, Any] = {"model": f"openai/{TINY}", "api_base": ponder_server, "api_key": "unused",
                          "messages": hello, "max_tokens": 16, "temperature": 0}  # fmt: skip
    r = litellm.completion(**kw)
    text = r.choices[0].message.content
    assert isinstance(text, str) and text
    streamed = "".join(c.choices[0].delta.content or "" for c in litellm.completion(stream=True, **kw))
    assert streamed == text


# --- pydantic-ai -----------------------------------------------------------------------


def test_pydantic_ai_agent_with_a_tool(ponder_server: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(TINY, provider=OpenAIProvider(base_url=ponder_server, api_key="unused"))
    agent = Agent(model, model_settings={"temperature": 0, "max_tokens": 64})
    asked: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        asked.append(city)
        return "sunny, 24 C"

    result = agent.run_sync("What is the weather in Paris? Use the get_weather tool.")
    assert isinstance(result.output, str) and result.output
    assert all(isinstance(city, str) for city in asked)


# --- instructor ------------------------------------------------------------------------


class City(BaseModel):
    name: str = Field(max_length=24)
    population: int


def test_instructor_structured_output(ponder_server: str) -> None:
    import instructor

    patched = instructor.from_openai(openai.OpenAI(base_url=ponder_server, api_key="unused", max_retries=0),
                                     mode=instructor.Mode.JSON_SCHEMA)  # fmt: skip
    city = patched.chat.completions.create(
        model=TINY, response_model=City, max_tokens=96, temperature=0, max_retries=0,
        messages=[{"role": "user", "content": "Name the capital of France and its population."}],
    )  # fmt: skip
    assert isinstance(city, City) and city.name


# --- anthropic (the official SDK) and langchain-anthropic ------------------------------

CITY: Any = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}
WEATHER_TOOL: Any = {"name": "get_weather", "description": "Current weather in a city.", "input_schema": CITY}


@pytest.fixture(scope="module")
def claude(ponder_server: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=ponder_server.removesuffix("/v1"), api_key="unused", max_retries=0,
                               timeout=120)  # fmt: skip


def test_anthropic_message_stream_and_thinking(claude: anthropic.Anthropic) -> None:
    ask: Any = [{"role": "user", "content": "Name a colour."}]
    r = claude.messages.create(model=TINY, max_tokens=24, system="Answer in one word.", messages=ask,
                               thinking={"type": "disabled"})  # fmt: skip
    assert isinstance(r, AnthropicMessage) and r.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in r.content] == ["text"] and r.content[0].text.strip()  # type: ignore[union-attr]
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 24
    with claude.messages.stream(model=TINY, max_tokens=24, messages=ask, thinking={"type": "disabled"}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.content[-1].text == text  # type: ignore[union-attr]
    thought = claude.messages.create(model=TINY, max_tokens=32, messages=ask,
                                     thinking={"type": "enabled", "budget_tokens": 48})  # fmt: skip
    assert [b.type for b in thought.content] == ["thinking", "text"], thought.content
    assert thought.content[0].thinking.strip()  # type: ignore[union-attr]


def test_anthropic_tool_round_trip_and_image(claude: anthropic.Anthropic) -> None:
    ask: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = claude.messages.create(model=TINY, max_tokens=64, messages=ask, tools=[WEATHER_TOOL],
                               tool_choice={"type": "tool", "name": "get_weather"})  # fmt: skip
    # forcing the tool asks for at least one call of it (the tiny model may make two, as
    # Claude may unless disable_parallel_tool_use): each is answered, as a client would
    uses = [b for b in r.content if b.type == "tool_use"]
    assert r.stop_reason == "tool_use" and uses and all(u.name == "get_weather" for u in uses), r.content
    for use in uses:
        jsonschema.validate(use.input, CITY)
    results = [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 24 C"} for use in uses]
    follow: Any = [*ask, {"role": "assistant", "content": [b.model_dump() for b in r.content]},
                   {"role": "user", "content": results}]  # fmt: skip
    answer = claude.messages.create(model=TINY, max_tokens=24, messages=follow, tools=[WEATHER_TOOL],
                                    thinking={"type": "disabled"})  # fmt: skip
    assert answer.content[0].text.strip()  # type: ignore[union-attr]
    png = base64.b64encode(text_png(["OPEN 9 TO 5"])).decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    turn: Any = [{"role": "user", "content": [image, {"type": "text", "text": "When is it open?"}]}]
    alone: Any = [{"role": "user", "content": "When is it open?"}]
    assert claude.messages.count_tokens(model=TINY, messages=turn).input_tokens > claude.messages.count_tokens(
        model=TINY, messages=alone).input_tokens  # the image was read into the prompt  # fmt: skip
    seen = claude.messages.create(model=TINY, max_tokens=24, messages=turn, thinking={"type": "disabled"})
    assert seen.content[0].text.strip()  # type: ignore[union-attr]


def test_langchain_anthropic_invoke_and_stream(ponder_server: str) -> None:
    from langchain_anthropic import ChatAnthropic
    from langchain_core.messages import AIMessage

    llm = ChatAnthropic(model_name=TINY, base_url=ponder_server.removesuffix("/v1"), api_key="unused",  # type: ignore[arg-type]
                        max_tokens_to_sample=24, timeout=120, max_retries=0, stop=None,
                        thinking={"type": "disabled"})  # fmt: skip
    reply = llm.invoke("Name a colour.")
    assert isinstance(reply, AIMessage) and str(reply.content).strip()
    pieces = [c.text for c in llm.stream("Name a fruit.")]
    assert "".join(pieces).strip()


# --- ollama (the official client) and langchain-ollama ---------------------------------
# Ollama has no tool_choice: the tiny model's turn with tools is checked for its shape,
# a call or an answer, not forced.

HELLO: Any = [{"role": "user", "content": "Name a colour."}]
GREEDY: Any = {"num_predict": 24, "temperature": 0}


@pytest.fixture(scope="module")
def llama(ponder_server: str) -> ollama.Client:
    return ollama.Client(host=ponder_server.removesuffix("/v1"), timeout=120)


def test_ollama_chat_and_generate_streamed_and_whole(llama: ollama.Client) -> None:
    r = llama.chat(model=TINY, messages=HELLO, think=False, options=GREEDY)
    assert isinstance(r, ollama.ChatResponse) and r.done and r.done_reason in ("stop", "length")
    assert r.message.role == "assistant" and (r.message.content or "").strip() and not r.message.thinking
    assert r.prompt_eval_count and r.eval_count and 0 < r.eval_count <= 24 and r.eval_duration
    parts = list(llama.chat(model=TINY, messages=HELLO, think=False, options=GREEDY, stream=True))
    assert "".join(p.message.content or "" for p in parts) == r.message.content
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    g = llama.generate(model=TINY, prompt="The sky is", system="Answer in one sentence.", think=False, options=GREEDY)
    assert isinstance(g, ollama.GenerateResponse) and g.done and (g.response or "").strip()
    streamed = list(
        llama.generate(
            model=TINY, prompt="The sky is", system="Answer in one sentence.", think=False, options=GREEDY, stream=True
        )
    )
    assert "".join(p.response or "" for p in streamed) == g.response and streamed[-1].eval_count == g.eval_count


def test_ollama_list_show_ps_pull_and_embed(llama: ollama.Client) -> None:
    assert TINY in [m.model for m in llama.list().models]
    shown = llama.show(TINY)
    assert shown.details and shown.details.format == "gguf" and "completion" in (shown.capabilities or [])
    llama.chat(model=TINY, messages=[], think=False)  # loads it
    assert TINY in [m.model for m in llama.ps().models]
    progress = list(llama.pull(TINY, stream=True))  # already here: verified, then success
    assert len(progress) > 1 and progress[-1].status == "success" and all(p.status for p in progress)
    assert llama.pull(TINY).status == "success"
    embedded = llama.embed(model=EMBEDDER, input=["a red apple", "une pomme rouge"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 384


def test_ollama_tools_and_think(llama: ollama.Client) -> None:
    r = llama.chat(
        model=TINY, messages=ASK_WEATHER, tools=[WEATHER], think=False, options={"num_predict": 64, "temperature": 0}
    )
    for call in r.message.tool_calls or []:
        assert call.function.name == "get_weather" and isinstance(call.function.arguments, dict)
    assert r.message.tool_calls or (r.message.content or "").strip()
    if r.message.tool_calls:
        result = {"role": "tool", "content": "sunny, 24 C", "tool_name": "get_weather"}
        answer = llama.chat(
            model=TINY, messages=[*ASK_WEATHER, r.message, result], tools=[WEATHER], think=False, options=GREEDY
        )
        assert answer.done
    thought = llama.chat(
        model=TINY,
        messages=[{"role": "user", "content": "What is 6 times 7?"}],
        think="low",
        options={"num_predict": 32},
    )
    assert (thought.message.thinking or "").strip() and thought.done


def test_langchain_ollama_invoke_and_stream(ponder_server: str) -> None:
    from langchain_core.messages import AIMessage
    from langchain_ollama import ChatOllama

    llm = ChatOllama(
        model=TINY, base_url=ponder_server.removesuffix("/v1"), temperature=0, num_predict=24, reasoning=False
    )
    reply = llm.invoke("Name a colour.")
    assert isinstance(reply, AIMessage) and str(reply.content).strip()
    assert reply.usage_metadata and reply.usage_metadata["output_tokens"] > 0
    pieces = [str(c.content) for c in llm.stream("Name a fruit.")]
    assert "".join(pieces).strip()
