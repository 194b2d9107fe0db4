"""Hosted tool search (`{"type": "tool_search"}` and `defer_loading`) in the Responses
API, on the scripted backend through the official openai SDK, with a real SQLite
store; and the ranking on a catalog of tools."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from ponder import embeddings
from ponder.backends.scripted import ScriptedBackend
from ponder.config import ToolSettings
from ponder.server import tool_search
from ponder.store import Store
from ponder.types import TextDelta, Tool
from tests.test_responses import make_client


def fn(name: str, description: str, defer: bool = True, **props: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {k: {"type": "string", "description": v} for k, v in props.items()}}
    return {"type": "function", "name": name, "description": description, "parameters": schema, "defer_loading": defer}


CATALOG = [
    fn("get_weather", "Current weather and forecast for a city", city="City name"),
    fn("send_email", "Send an email message to someone", to="Recipient address", body="The text"),
    fn("createCalendarEvent", "Put a meeting on the calendar", title="What", when="Start time"),
    fn("convert_currency", "Convert an amount between currencies", amount="How much", to="Target currency"),
    fn("search_flights", "Find flights between two airports", origin="From", destination="To"),
    fn("translate_text", "Translate text into another language", text="Text", language="Target language"),
    fn("stock_price", "Latest price of a stock ticker", ticker="Ticker symbol"),
    fn("set_timer", "Start a countdown timer", seconds="Duration"),
    fn("play_music", "Play a song or playlist", song="Song name"),
    fn("order_pizza", "Order a pizza for delivery", size="Size", toppings="Toppings"),
]
NOTE = fn("add_note", "Save a short note", defer=False, text="The note")
SEARCH_TOOL = {"type": "tool_search"}


def call(name: str, **args: Any) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


@pytest.fixture
async def store_client(tmp_path: Path, backend: ScriptedBackend) -> AsyncIterator[tuple[openai.AsyncOpenAI, Store]]:
    c, store = make_client(tmp_path, backend)
    yield c, store
    await c.close()
    store.close()


@pytest.fixture
def client(store_client: tuple[openai.AsyncOpenAI, Store]) -> openai.AsyncOpenAI:
    return store_client[0]


def names(tools: tuple[Tool, ...]) -> list[str]:
    return [t.name for t in tools]


def catalog() -> tool_search.ToolSet:
    return tool_search.tool_set([SEARCH_TOOL, *CATALOG])


@pytest.mark.parametrize(
    ("query", "best"),
    [
        ("weather in Paris", "get_weather"),
        ("send an email to Bob", "send_email"),
        ("schedule a meeting in my calendar", "createCalendarEvent"),  # camelCase and a plural
        ("how many euros is 10 dollars, currency", "convert_currency"),
        ("translate this into French", "translate_text"),
        ("flights from Oslo", "search_flights"),
    ],
)
def test_keywords_alone_rank_the_best_match_first(query: str, best: str) -> None:
    found = catalog().search(query)
    assert found and found[0].name == best, names(found)


@pytest.mark.parametrize(
    ("query", "best"),
    [
        ("mail Bob", "send_email"),  # no word in common: only the embeddings see it
        ("is it raining in Oslo", "get_weather"),
        ("how many yen is that", "convert_currency"),
        ("wake me in ten minutes", "set_timer"),
        ("weather in Paris", "get_weather"),  # and keyword hits still win
        ("schedule a meeting in my calendar", "createCalendarEvent"),
    ],
)
def test_embeddings_find_what_keywords_miss(query: str, best: str) -> None:
    found = catalog().search(query, embeddings.shared())
    assert found and found[0].name == best, names(found)
    assert len(found) <= tool_search.TOP_K


def test_a_query_that_matches_no_keyword_loads_nothing_without_embeddings() -> None:
    assert catalog().search("quantum chromodynamics") == ()
    assert json.loads(tool_search.result_message("c1", []).content)["tools"] == []


async def test_server_search_loads_the_tool_and_the_model_calls_it(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue(call("tool_search", query="weather forecast"), call("get_weather", city="Paris"))
    kinds: list[str] = []
    async with client.responses.stream(model="scripted", input="Weather in Paris?",
                                       tools=[SEARCH_TOOL, NOTE, *CATALOG]) as stream:  # type: ignore[list-item]  # fmt: skip
        async for event in stream:
            kinds.append(event.type)
        r = await stream.get_final_response()
    assert [o.type for o in r.output] == ["tool_search_call", "tool_search_output", "function_call"]
    search, output, fc = r.output
    assert search.execution == "server" and search.arguments == {"query": "weather forecast"}  # type: ignore[union-attr]
    assert output.call_id == search.call_id  # type: ignore[union-attr]
    assert output.tools[0].name == "get_weather"  # type: ignore[union-attr]
    assert fc.name == "get_weather" and json.loads(fc.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert kinds.count("response.output_item.done") == 3 and kinds[-1] == "response.completed"
    first, second = backend.requests
    assert names(first.tools) == ["add_note", "tool_search"]  # the deferred tools stay out of the prompt
    assert names(second.tools)[:2] == ["add_note", "get_weather"] and "send_email" not in names(second.tools)
    assert second.messages[-2].tool_calls[0].name == "tool_search"
    assert json.loads(second.messages[-1].content)["tools"][0]["name"] == "get_weather"
    assert r.usage is not None and r.usage.output_tokens == 8 + 7  # both rounds' words (the scripted tokens)

    # The follow-up answers the call; the loaded tool is still loaded, from the stored history.
    backend.enqueue("It is sunny in Paris.")
    again = await client.responses.create(
        model="scripted", previous_response_id=r.id, tools=[SEARCH_TOOL, NOTE, *CATALOG],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "sunny"}],  # type: ignore[union-attr]
    )  # fmt: skip
    assert again.output_text == "It is sunny in Paris."
    assert "get_weather" in names(backend.requests[-1].tools)


async def test_echoed_output_items_keep_the_tools_loaded_without_a_store(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue(call("tool_search", query="email"), call("send_email", to="bob@example.com", body="hi"))
    tools: Any = [SEARCH_TOOL, *CATALOG]
    r = await client.responses.create(model="scripted", input="Email Bob hi", tools=tools, store=False)
    fc = r.output[-1]
    backend.enqueue("Sent.")
    items = [{"role": "user", "content": "Email Bob hi"}, *[o.model_dump(exclude_none=True) for o in r.output],
             {"type": "function_call_output", "call_id": fc.call_id, "output": "ok"}]  # type: ignore[union-attr]  # fmt: skip
    again = await client.responses.create(model="scripted", input=items, tools=tools, store=False)  # type: ignore[arg-type]
    assert again.output_text == "Sent."
    assert "send_email" in names(backend.requests[-1].tools)


async def test_client_executed_search_returns_the_call_and_takes_the_client_s_tools(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue(call("tool_search", query="pizza"))
    tools: Any = [{"type": "tool_search", "execution": "client", "description": "Find tools in our catalog"}]
    r = await client.responses.create(model="scripted", input="Order me a pizza", tools=tools)
    (search,) = r.output
    assert search.type == "tool_search_call" and search.execution == "client"
    assert search.arguments == {"query": "pizza"}
    assert backend.requests[0].tools[0].description == "Find tools in our catalog"

    backend.enqueue(call("order_pizza", size="large", toppings="basil"))
    pizza = {k: v for k, v in CATALOG[-1].items() if k != "defer_loading"}
    again = await client.responses.create(
        model="scripted", previous_response_id=r.id, tools=tools,
        input=[{"type": "tool_search_output", "call_id": search.call_id, "execution": "client", "tools": [pizza]}],
    )  # fmt: skip
    assert [o.type for o in again.output] == ["function_call"] and again.output[0].name == "order_pizza"  # type: ignore[union-attr]
    assert names(backend.requests[-1].tools) == ["order_pizza", "tool_search"]


async def test_searches_are_capped_then_the_model_must_answer(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.respond = lambda req: (  # a new query each round (a repeated one would not run again)
        call("tool_search", query=f"nothing like it {len(req.messages)}")
        if "tool_search" in names(req.tools)
        else "I found no tool."
    )
    r = await client.responses.create(model="scripted", input="Do the impossible", tools=[SEARCH_TOOL, *CATALOG])  # type: ignore[list-item]
    kinds = [o.type for o in r.output]
    assert kinds == ["tool_search_call", "tool_search_output"] * ToolSettings().max_steps + ["message"]
    assert r.output_text == "I found no tool." and r.status == "completed"
    assert len(backend.requests) == ToolSettings().max_steps + 1


async def test_max_output_tokens_spans_the_rounds(client: openai.AsyncOpenAI, backend: ScriptedBackend) -> None:
    backend.enqueue(call("tool_search", query="weather"), call("get_weather", city="Oslo"))
    r = await client.responses.create(model="scripted", input="Weather?", tools=[SEARCH_TOOL, *CATALOG],  # type: ignore[list-item]
                                      max_output_tokens=9)  # fmt: skip
    assert backend.requests[1].params.max_tokens == 2  # 7 of the 9 went to the search
    assert r.status == "incomplete"


async def test_the_budget_is_shared_by_three_rounds(client: openai.AsyncOpenAI, backend: ScriptedBackend) -> None:
    backend.enqueue(call("tool_search", query="weather"), call("tool_search", query="email"), "Done now")
    r = await client.responses.create(model="scripted", input="Weather, then mail it", max_output_tokens=20,  # type: ignore[list-item]
                                      tools=[SEARCH_TOOL, *CATALOG])  # fmt: skip
    assert [q.params.max_tokens for q in backend.requests] == [20, 20 - 7, 20 - 7 - 7]
    assert r.status == "completed" and r.output_text == "Done now"
    assert r.usage is not None and r.usage.output_tokens == 7 + 7 + 2


async def test_whitespace_before_a_search_is_no_part_of_the_answer(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue([TextDelta("\n\n"), TextDelta(call("tool_search", query="weather"))], [TextDelta("Sunny.")])
    r = await client.responses.create(model="scripted", input="Weather?", tools=[SEARCH_TOOL, *CATALOG])  # type: ignore[list-item]
    assert [o.type for o in r.output] == ["tool_search_call", "tool_search_output", "message"]
    assert r.output_text == "Sunny."


async def test_a_client_function_named_tool_search_is_a_function_call(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue(call("tool_search", query="cats"))
    mine = fn("tool_search", "Search my photo library", defer=False, query="What to look for")
    r = await client.responses.create(model="scripted", input="Find cats", tools=[mine])  # type: ignore[list-item]
    assert [o.type for o in r.output] == ["function_call"] and r.output[0].name == "tool_search"  # type: ignore[union-attr]


async def test_tool_choice_may_name_a_tool_an_earlier_search_loaded(
    client: openai.AsyncOpenAI, backend: ScriptedBackend
) -> None:
    backend.enqueue(call("tool_search", query="weather"), "Which city?")
    tools: Any = [SEARCH_TOOL, *CATALOG]
    first = await client.responses.create(model="scripted", input="Weather?", tools=tools)
    backend.enqueue(call("get_weather", city="Oslo"))
    again = await client.responses.create(model="scripted", input="Oslo", tools=tools, previous_response_id=first.id,
                                          tool_choice={"type": "function", "name": "get_weather"})  # fmt: skip
    assert again.output[0].type == "function_call" and backend.requests[-1].tool_name == "get_weather"


async def test_deferred_tools_cost_no_input_tokens_until_loaded(client: openai.AsyncOpenAI) -> None:
    eager = [{k: v for k, v in t.items() if k != "defer_loading"} for t in CATALOG]
    loaded = await client.responses.input_tokens.count(model="scripted", input="hi", tools=eager)  # type: ignore[arg-type]
    deferred = await client.responses.input_tokens.count(model="scripted", input="hi", tools=[SEARCH_TOOL, *CATALOG])  # type: ignore[list-item]
    bare = await client.responses.input_tokens.count(model="scripted", input="hi")
    assert bare.input_tokens < deferred.input_tokens < loaded.input_tokens / 3


BAD = [
    ([CATALOG[0]], "tools"),  # defer_loading without a tool_search tool
    ([SEARCH_TOOL, SEARCH_TOOL, *CATALOG], "tools.1"),
    ([SEARCH_TOOL, NOTE], "tools"),  # a hosted search with nothing to search
    ([SEARCH_TOOL, fn("tool_search", "mine", defer=False), *CATALOG], "tools"),
    ([{"type": "tool_search", "execution": "remote"}, *CATALOG], "tools.execution"),
]


@pytest.mark.parametrize(("tools", "param"), BAD)
async def test_bad_tool_sets_get_openai_errors(client: openai.AsyncOpenAI, tools: list[Any], param: str) -> None:
    r = await client._client.post("/responses", json={"model": "scripted", "input": "hi", "tools": tools})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


BAD_ITEMS = [
    ({"type": "tool_search_output", "call_id": "c1", "tools": [{"type": "function"}]}, "input.0.tools.0.name"),
    (
        {"type": "tool_search_output", "call_id": "c1", "tools": [{"type": "function", "name": "a b"}]},
        "input.0.tools.0.name",
    ),
    ({"type": "tool_search_output", "call_id": "c1", "tools": "get_weather"}, "input.0.tools"),
    ({"type": "tool_search_output", "call_id": "c1", "tools": [7]}, "input.0.tools.0"),
    ({"type": "tool_search_call", "arguments": {"query": "x"}}, "input.0.call_id"),
    ({"type": "tool_search_call", "call_id": "c1", "arguments": {}, "execution": "elsewhere"}, "input.0.execution"),
]


@pytest.mark.parametrize(("item", "param"), BAD_ITEMS)
async def test_bad_tool_search_items_get_openai_errors(
    client: openai.AsyncOpenAI, item: dict[str, Any], param: str
) -> None:
    r = await client._client.post("/responses", json={"model": "scripted", "input": [item]})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param
