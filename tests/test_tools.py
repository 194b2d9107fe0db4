"""Server-side tools: the calculator, the agent loop around every mode, knowledge
search over a real SQLite index with real e5 embeddings, the code sandbox, and a
real MCP server (tests/mcp_server.py) over stdio and HTTP. The model is the
scripted backend here; test_e2e_tools.py runs the tiny real model."""

from __future__ import annotations

import asyncio
import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ponder.backends.registry import Registry
from ponder.backends.scripted import ScriptedBackend
from ponder.config import McpServer, Settings, ToolSettings
from ponder.formats import structured
from ponder.models import ModelStore
from ponder.modes.tools import execute
from ponder.server.app import create_app
from ponder.store import SqliteStore
from ponder.tools import Hosted, Result, ToolFailed, fetch, knowledge
from ponder.tools.calculator import evaluate
from ponder.tools.mcp import Pool
from ponder.types import Tool, ToolCall
from tests.conftest import free_port
from tests.test_sandbox import skip_without_sandbox

SERVER = Path(__file__).parent / "mcp_server.py"
DOCS = {
    "reactor.md": "# Zorblax reactor handbook\n\nThe Zorblax reactor is cooled by liquid sodium. Its emergency "
    "cooling code is 4471.\n\nMaintenance is every second Tuesday, led by Priya Raman.",
    "garden.txt": "The community garden grows tomatoes, basil and runner beans. Watering starts at 6 am.",
    "recipes/bread.md": "Sourdough needs a starter fed the night before, 500 g flour and 350 g water.",
}


def call(name: str, **args: Any) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


def stdio_server() -> McpServer:
    return McpServer("warehouse", command=(sys.executable, str(SERVER), "stdio"))


def make_client(settings: Settings, backend: ScriptedBackend) -> tuple[openai.AsyncOpenAI, Any]:
    registry = Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), {"scripted": backend})
    app = create_app(registry, store=SqliteStore(settings.data_dir / "ponder.db"))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost/v1")
    return openai.AsyncOpenAI(base_url="http://localhost/v1", api_key="unused", http_client=http, max_retries=0), app


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
async def served(tmp_path: Path, backend: ScriptedBackend, docs: Path) -> AsyncIterator[tuple[openai.AsyncOpenAI, Any]]:
    """A client of an app whose knowledge index holds DOCS, with code execution on
    and the test MCP server configured over stdio."""
    settings = Settings(data_dir=tmp_path / "home", default_model="scripted",
                        tools=ToolSettings(code_execution=True, mcp={"warehouse": stdio_server()}))  # fmt: skip
    index = knowledge.Index(settings.data_dir / "knowledge.db")
    index.add(docs)
    index.close()
    client, app = make_client(settings, backend)
    yield client, app
    await app.state.tools.close()
    await client.close()


# --- the calculator --------------------------------------------------------------------


def test_calculator_is_exact_and_refuses_everything_else() -> None:
    assert evaluate("(17 * 23 + 4) / 3") == pytest.approx(131.6666666)
    assert evaluate("2^10 + 1,000") == 2024 and evaluate("max(3, 7) * factorial(4)") == 168
    assert evaluate("max(2, 3,100)") == 100  # commas in a call separate arguments
    for bad, why in [("__import__('os').system('true')", "not allowed"), ("x + 1", "not allowed"),
                     ("9 ** 9 ** 9", "too large"), ("1 / 0", "division by zero"), ("2 +", "not an arithmetic"),
                     ("factorial(10**6)", "whole number"), ("10**5000", "too large"),
                     ("(10**1000)**1000", "too large"), ("factorial(1000) * factorial(1000)", "too large"),
                     ("round(1, -10**9)", "at most 100 digits"), ("(-8)**(1/3)", "no real value")]:  # fmt: skip
        with pytest.raises(ToolFailed, match=why):
            evaluate(bad)


# --- the loop ------------------------------------------------------------------------


async def test_chat_runs_the_calculator_and_answers_with_its_result(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    replies = [call("calculator", expression="1234 * 5678"), "It is 7006652."]
    backend.enqueue(*replies)
    r = await client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "1234*5678?"}],
                                             tools=[{"type": "calculator"}])  # type: ignore[list-item]  # fmt: skip
    assert r.choices[0].message.content == "It is 7006652." and r.choices[0].finish_reason == "stop"
    first, second = backend.requests
    assert [t.name for t in first.tools] == ["calculator"]
    assert second.messages[-1].role == "tool" and second.messages[-1].content == "7006652"
    assert second.messages[-2].tool_calls[0].name == "calculator"
    progress = r.model_extra["ponder"]["progress"]  # type: ignore[index]
    assert progress == [{"type": "tool.call", "tool": "calculator", "name": "calculator", "error": False,
                         "arguments": '{"expression": "1234 * 5678"}', "output": "7006652"}]  # fmt: skip
    assert r.usage is not None and r.usage.model_extra["tool_calls"] == 1  # type: ignore[index]
    assert r.usage.completion_tokens == sum(len(x.split()) for x in replies)  # both rounds (a word a token)


async def test_a_tool_error_is_the_model_s_to_read_and_streams_as_progress(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    backend.enqueue(call("calculator", expression="1 / 0"), "That cannot be computed.")
    stream = await client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "1/0?"}], tools=[{"type": "calculator"}],  # type: ignore[list-item]
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [c async for c in stream]
    ext = [c.model_extra["ponder"] for c in chunks if c.model_extra and "ponder" in c.model_extra]
    runs = [e for e in ext if e["type"] == "tool.call"]
    assert runs and runs[0]["error"] is True and runs[0]["output"] == "Error: division by zero"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "That cannot be computed."
    assert backend.requests[1].messages[-1].content == "Error: division by zero"
    assert chunks[-1].usage is not None and chunks[-1].usage.model_extra["tool_calls"] == 1  # type: ignore[index]


async def test_the_loop_stops_at_max_steps_and_the_last_round_has_no_hosted_tools(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    backend.respond = lambda req: (  # a new sum every round
        call("calculator", expression=f"{len(req.messages)}+1") if req.tools else "Done."
    )
    r = await client.responses.create(model="scripted", input="add", tools=[{"type": "calculator"}])  # type: ignore[list-item]
    steps = ToolSettings().max_steps
    assert [o.type for o in r.output] == ["mcp_call"] * steps + ["message"]
    assert r.output[0].server_label == "ponder" and r.output[0].output == "2"  # type: ignore[union-attr]
    assert len(backend.requests) == steps + 1 and backend.requests[-1].tools == ()
    assert r.output_text == "Done." and r.usage.model_extra["tool_calls"] == steps  # type: ignore[union-attr]


async def test_a_repeated_call_is_not_run_again_and_the_model_answers(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    backend.respond = lambda req: call("calculator", expression="1+1") if req.tools else "It is 2."
    r = await client.responses.create(model="scripted", input="add", tools=[{"type": "calculator"}])  # type: ignore[list-item]
    assert [o.type for o in r.output] == ["mcp_call", "message"] and r.output_text == "It is 2."
    _, again, answer = backend.requests
    assert len(again.messages) == len(answer.messages) == 3  # the repeat was dropped, not answered
    assert [m.role for m in answer.messages] == ["user", "assistant", "tool"] and answer.tools == ()


async def test_client_functions_go_back_to_the_client_beside_hosted_tools(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    backend.enqueue(call("calculator", expression="20 + 1"), call("get_weather", city="Oslo"))
    r = await client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}],
                                             tools=[{"type": "calculator"}, weather])  # type: ignore[list-item]  # fmt: skip
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and msg.tool_calls is not None
    assert [c.function.name for c in msg.tool_calls] == ["get_weather"]  # type: ignore[union-attr]
    assert {t.name for t in backend.requests[0].tools} == {"calculator", "get_weather"}


async def test_a_failed_call_may_be_retried(served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend) -> None:
    client, _ = served
    backend.enqueue(call("calculator", expression="1/0"), call("calculator", expression="1/0"), "Cannot.")
    r = await client.responses.create(model="scripted", input="1/0", tools=[{"type": "calculator"}])  # type: ignore[list-item]
    assert [o.type for o in r.output] == ["mcp_call", "mcp_call", "message"]  # only a success is not run twice


async def test_a_slow_tool_times_out_into_an_error_result() -> None:
    async def slow(args: dict[str, Any]) -> Result:
        await asyncio.sleep(10)
        return Result("never")

    tool = Hosted("mcp", Tool("slow"), slow, timeout_s=0.2)
    started = time.monotonic()
    run = await execute(tool, ToolCall("c1", "slow", "{}"))
    assert run.error and "longer than 0.2s" in run.output and time.monotonic() - started < 9  # not the 10 s
    bad = await execute(tool, ToolCall("c2", "slow", "[1, 2]"))
    assert bad.error and bad.output == "Error: the arguments must be a JSON object"

    async def buggy(args: dict[str, Any]) -> Result:
        raise KeyError("oops")

    crash = await execute(Hosted("mcp", Tool("buggy"), buggy), ToolCall("c3", "buggy", "{}"))
    assert crash.error and crash.output == "Error: KeyError: 'oops'"  # a tool's bug is the model's to read


async def test_bad_tool_entries_get_openai_errors(served: tuple[openai.AsyncOpenAI, Any], tmp_path: Path) -> None:
    client, _ = served
    cases = [
        ({"type": "file_search", "vector_store_ids": ["nope"]}, "tools.0.vector_store_ids"),
        ({"type": "file_search", "max_num_results": 0}, "tools.0.max_num_results"),
        ({"type": "mcp", "server_label": "elsewhere"}, "tools.0.server_label"),
        ({"type": "mcp", "server_label": "warehouse", "server_url": "http://evil/"}, "tools.0.server_url"),
        ({"type": "web_search"}, "tools.0.type"),
        ({"type": "mcp", "server_label": ["warehouse"]}, "tools.0.server_label"),
    ]
    for tool, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            await client.responses.create(model="scripted", input="hi", tools=[tool])  # type: ignore[list-item]
        assert e.value.body["param"] == param, (tool, e.value.body)  # type: ignore[index]
    clash = {"type": "function", "name": "calculator", "parameters": {"type": "object"}}
    for extra in [{"tools": [{"type": "calculator"}, clash]}, {"tool_choice": {"type": []}, "tools": [clash]}]:
        with pytest.raises(openai.BadRequestError) as e:
            await client.responses.create(model="scripted", input="hi", **extra)  # type: ignore[arg-type]
        assert e.value.status_code == 400
    off, _ = make_client(Settings(data_dir=tmp_path / "off", default_model="scripted"), ScriptedBackend())
    with pytest.raises(openai.BadRequestError) as e:
        await off.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}],
                                          tools=[{"type": "code_interpreter"}])  # type: ignore[list-item]  # fmt: skip
    assert e.value.body["code"] == "tool_disabled" and e.value.body["param"] == "tools.0.type"  # type: ignore[index]
    await off.close()


# --- knowledge search ----------------------------------------------------------------


def test_index_search_is_hybrid_and_reindexing_skips_unchanged_files(tmp_path: Path, docs: Path) -> None:
    index = knowledge.Index(tmp_path / "k.db")
    first = index.add(docs)
    assert (first.added, first.unchanged) == (3, 0)
    (docs / "garden.txt").write_text("The garden now grows pumpkins. Watering starts at 7 am.")
    again = index.add(docs)
    assert (again.added, again.unchanged) == (1, 2)
    assert index.collections() == {"default": 3}
    assert index.search("emergency cooling code", ["default"], 1)[0].filename == "reactor.md"  # keywords
    assert index.search("what time do the plants get water", ["default"], 1)[0].filename == "garden.txt"  # meaning
    assert "pumpkins" in index.search("garden", ["default"], 1)[0].text  # the old passages are gone
    assert index.search("sourdough", ["other"], 3) == []
    index.close()


def test_citations_come_from_numbers_or_from_what_the_answer_repeats() -> None:
    used = [knowledge.Passage(1, "/d/reactor.md", None, "The emergency cooling code is 4471.").json(1),
            knowledge.Passage(2, "/d/garden.txt", None, "Watering starts at 6 am.").json(2)]  # fmt: skip
    cited = knowledge.cite("The code is 4471.", used, "cooling code")
    assert [c["filename"] for c in cited] == ["reactor.md"] and cited[0]["index"] == len("The code is ")
    assert [c["filename"] for c in knowledge.cite("See [2].", used)] == ["garden.txt"]
    assert knowledge.cite("4471, yes: 4471.", used)[0]["index"] == 0  # the first place it shows
    assert knowledge.cite("I do not know.", used, "cooling code") == []


async def test_file_search_answers_with_a_citation(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    backend.enqueue(call("file_search", query="Zorblax emergency cooling code"), "The code is 4471 [1].")
    r = await client.responses.create(model="scripted", input="What is the Zorblax cooling code?",
                                      tools=[{"type": "file_search"}])  # type: ignore[list-item]  # fmt: skip
    search, message = r.output
    assert search.type == "file_search_call" and search.queries == ["Zorblax emergency cooling code"]  # type: ignore[union-attr]
    assert search.results is not None and search.results[0].filename == "reactor.md"  # type: ignore[union-attr]
    read = backend.requests[1].messages[-1].content
    assert read.startswith("[1] (reactor.md)") and "4471" in read
    note = message.content[0].annotations[0]  # type: ignore[union-attr]
    assert note.type == "file_citation" and note.filename == "reactor.md"  # type: ignore[union-attr]


async def test_passages_are_numbered_across_searches(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    backend.enqueue(call("file_search", query="Zorblax cooling"), call("file_search", query="sourdough flour"),
                    "Use 500 g flour [2].")  # fmt: skip
    r = await client.responses.create(model="scripted", input="Bread?",
                                      tools=[{"type": "file_search", "max_num_results": 1}])  # type: ignore[list-item]  # fmt: skip
    assert backend.requests[2].messages[-1].content.startswith("[2] (bread.md)")
    assert [a.filename for a in r.output[-1].content[0].annotations] == ["bread.md"]  # type: ignore[union-attr]


# --- the sandbox (escape attempts: test_sandbox.py) -----------------------------------


async def test_code_interpreter_runs_in_the_loop(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    skip_without_sandbox()
    client, _ = served
    backend.enqueue(call("python", code="print(2**20)"), "1048576")
    r = await client.responses.create(model="scripted", input="2^20?", tools=[{"type": "code_interpreter"}])  # type: ignore[list-item]
    ci = r.output[0]
    assert ci.type == "code_interpreter_call" and ci.code == "print(2**20)"  # type: ignore[union-attr]
    assert ci.outputs[0].logs.strip() == "1048576"  # type: ignore[union-attr]
    assert backend.requests[1].messages[-1].content == "1048576"


# --- MCP -------------------------------------------------------------------------------


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[McpServer]:
    port = free_port()
    log = (tmp_path / "mcp.log").open("wb")
    proc = subprocess.Popen(["timeout", "300", sys.executable, str(SERVER), "http", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield McpServer("warehouse", url=f"http://127.0.0.1:{port}/mcp")
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_mcp_tools_are_listed_and_called_over_both_transports(
    transport: str, request: pytest.FixtureRequest
) -> None:
    server = stdio_server() if transport == "stdio" else request.getfixturevalue("http_server")
    pool = Pool({"warehouse": server})
    try:
        tools = {h.spec.name: h for h in await pool.hosted("warehouse")}
        assert set(tools) == {"warehouse_stock", "add", "wait"}
        assert tools["warehouse_stock"].spec.parameters["required"] == ["item"]
        got = await asyncio.gather(*(execute(tools["warehouse_stock"], ToolCall(f"c{i}", "warehouse_stock",
                                                                                  json.dumps({"item": item})))
                                     for i, item in enumerate(["widgets", "gears", "nails"])))  # fmt: skip
        assert [r.output for r in got[:2]] == ["widgets: 4183 units in aisle 7", "gears: 52 units in aisle 2"]
        assert got[2].error and "unknown item 'nails'" in got[2].output  # the server's error, as a result
        assert (await pool.hosted("warehouse", ["add"]))[0].spec.name == "add"
    finally:
        await pool.close()


async def test_an_mcp_call_that_times_out_leaves_the_connection_up() -> None:
    server = McpServer("warehouse", command=stdio_server().command, timeout_s=0.5)
    pool = Pool({"warehouse": server})
    try:
        tools = {h.spec.name: h for h in await pool.hosted("warehouse")}
        slow = await execute(tools["wait"], ToolCall("c1", "wait", '{"seconds": 3}'))
        assert slow.error and "the MCP server 'warehouse' answered" in slow.output
        live = pool._conns["warehouse"]._live
        quick = await execute(tools["add"], ToolCall("c2", "add", '{"a": 2, "b": 3}'))
        assert quick.output == "5.0" and pool._conns["warehouse"]._live is live  # no reconnect
    finally:
        await pool.close()


async def test_an_unreachable_mcp_server_is_a_502(tmp_path: Path) -> None:
    dead = McpServer("gone", url=f"http://127.0.0.1:{free_port()}/mcp")
    settings = Settings(data_dir=tmp_path, default_model="scripted", tools=ToolSettings(mcp={"gone": dead}))
    client, app = make_client(settings, ScriptedBackend())
    with pytest.raises(openai.APIStatusError) as e:
        await client.responses.create(model="scripted", input="hi", tools=[{"type": "mcp", "server_label": "gone"}])  # type: ignore[list-item]
    assert e.value.status_code == 502 and "cannot reach the MCP server 'gone'" in e.value.message
    await app.state.tools.close()
    await client.close()


async def test_mcp_calls_stream_as_mcp_call_items(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    backend.enqueue(call("warehouse_stock", item="bolts"), "990 bolts, aisle 3.")
    kinds = []
    async with client.responses.stream(model="scripted", input="How many bolts?",
                                       tools=[{"type": "mcp", "server_label": "warehouse"}]) as stream:  # type: ignore[list-item]  # fmt: skip
        async for event in stream:
            kinds.append(event.type)
        r = await stream.get_final_response()
    mcp = r.output[0]
    assert mcp.type == "mcp_call" and mcp.server_label == "warehouse" and mcp.name == "warehouse_stock"  # type: ignore[union-attr]
    assert mcp.output == "bolts: 990 units in aisle 3" and r.output_text == "990 bolts, aisle 3."  # type: ignore[union-attr]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.output_item.done"]  # fmt: skip


# --- Contemplating ---------------------------------------------------------------------


async def test_contemplating_sub_agents_use_the_tools_the_planner_gave_them(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    plan = {"parts": [{"task": "Compute 37 * 43", "tools": ["calculator"]},
                      {"task": "Name a prime number above 1000", "tools": []}]}  # fmt: skip

    def respond(req: Any) -> str:
        seen = " ".join(m.content for m in req.messages)
        names = [t.name for t in req.tools]
        if "split requests" in seen:
            assert "calculator: Evaluate" in seen  # the planner is told the tools
            schema = structured.check(req.params.response_format)  # and its reply may name only those
            assert schema is not None and structured.gbnf(schema)
            named = schema["json_schema"]["schema"]["properties"]["parts"]["items"]["anyOf"][1]
            assert "calculator" in named["properties"]["tools"]["items"]["enum"]
            return json.dumps(plan)
        if req.prefill:  # a reasoning phase
            return "Work it out."
        if "Your part: Compute 37 * 43" in seen:
            assert names == ["calculator"]
            return (
                "37 * 43 = 1591."
                if req.messages[-1].role == "tool" or "1591" in seen
                else call("calculator", expression="37 * 43")
            )
        if "Your part: Name a prime" in seen:
            assert names == []  # the planner gave this part no tools
            return "1009 is prime."
        return "Both parts: 1591 and 1009."

    backend.respond = respond
    stream = await client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "1. What is 37 * 43?\n2. Name a prime above 1000."}],
        tools=[{"type": "calculator"}], stream=True, extra_body={"mode": "contemplating", "reasoning_effort": "low"},  # type: ignore[list-item]
    )  # fmt: skip
    ext = [c.model_extra["ponder"] async for c in stream if c.model_extra and "ponder" in c.model_extra]
    starts = {e["agent"]: e for e in ext if e["type"] == "agent.start"}
    assert starts[0]["tools"] == ["calculator"] and "tools" not in starts[1]
    runs = [e for e in ext if e["type"] == "tool.call"]
    assert runs and runs[0]["agent"] == 0 and runs[0]["output"] == "1591"
    first_done = next(i for i, e in enumerate(ext) if e["type"] == "agent.done" and e["agent"] == 0)
    assert ext.index(runs[0]) < first_done  # live: the call shows before its agent finishes


# --- URL fetch -----------------------------------------------------------------------


class _Site(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        pages = {
            "/page": (200, "text/html", b"<html><head><title>Boilers</title><style>p{}</style></head>"
                      b"<body><p>The boiler is serviced in <b>March</b>.</p><script>x()</script></body></html>"),
            "/away": (302, "text/plain", b""),
            "/home": (302, "text/plain", b""),
            "/blob": (200, "application/octet-stream", b"\x00\x01"),
        }  # fmt: skip
        status, kind, body = pages.get(self.path, (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if self.path == "/away":
            self.send_header("Location", f"http://localhost:{self.server.server_port}/page")
        if self.path == "/home":
            self.send_header("Location", "/page")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


async def test_web_fetch_reads_allowed_hosts_only(site: str) -> None:
    tool = fetch.hosted(["127.0.0.1"])

    async def get(path: str) -> Any:
        return await execute(tool, ToolCall("c", "web_fetch", json.dumps({"url": site + path})))

    page = await get("/page")
    assert not page.error and page.output == "# Boilers\n\nThe boiler is serviced in March."
    assert (await get("/home")).output == page.output  # a redirect on the same host is followed
    away = await get("/away")  # to another host: refused
    assert away.error and "http://localhost:" in away.output and "not allowed" in away.output
    assert "not text" in (await get("/blob")).output and "HTTP 404" in (await get("/nothing")).output
    for broken in ("<svg " * 100_000, "<!--" * 100_000, "<" * 100_000):  # one linear pass, whatever the markup
        assert fetch.page_text("text/html", "<html><p>a</p>" + broken).startswith("a")
    other = await execute(tool, ToolCall("c", "web_fetch", json.dumps({"url": "file:///etc/passwd"})))
    assert other.error and "not allowed" in other.output


async def test_web_fetch_is_off_unless_config_names_hosts(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    with pytest.raises(openai.BadRequestError) as e:
        await client.responses.create(model="scripted", input="hi", tools=[{"type": "web_fetch"}])  # type: ignore[list-item]
    assert e.value.body["code"] == "tool_disabled"  # type: ignore[index]


async def test_tool_items_sent_back_as_input_replay_the_calls_and_results(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    backend.enqueue(call("calculator", expression="6 * 7"), "42.", "Yes, 42.")
    first = await client.responses.create(model="scripted", input="6*7?", tools=[{"type": "calculator"}], store=False)  # type: ignore[list-item]
    echoed = [o.model_dump(exclude_none=True) for o in first.output]
    again = [{"role": "user", "content": "6*7?"}, *echoed, {"role": "user", "content": "Sure?"}]
    await client.responses.create(model="scripted", input=again, store=False)  # type: ignore[arg-type]
    replay = backend.requests[-1].messages
    assert [m.role for m in replay] == ["user", "assistant", "tool", "assistant", "user"]
    assert replay[1].tool_calls[0].name == "calculator" and replay[2].content == "42"
    assert replay[3].content == "42."


async def test_input_tokens_count_the_server_side_tools_on_offer(served: tuple[openai.AsyncOpenAI, Any]) -> None:
    client, _ = served
    bare = await client.responses.input_tokens.count(model="scripted", input="one two three")
    with_tool = await client.responses.input_tokens.count(model="scripted", input="one two three",
                                                          tools=[{"type": "calculator"}])  # type: ignore[list-item]  # fmt: skip
    assert bare.input_tokens == 3 and with_tool.input_tokens > bare.input_tokens


async def test_a_follow_up_sees_what_the_tools_returned(
    served: tuple[openai.AsyncOpenAI, Any], backend: ScriptedBackend
) -> None:
    client, _ = served
    backend.enqueue(call("calculator", expression="6 * 7"), "42.", "Still 42.")
    first = await client.responses.create(model="scripted", input="6*7?", tools=[{"type": "calculator"}])  # type: ignore[list-item]
    await client.responses.create(model="scripted", input="Sure?", previous_response_id=first.id)
    history = backend.requests[-1].messages
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant", "user"]
    assert history[1].tool_calls[0].name == "calculator" and history[2].content == "42" and history[3].content == "42."


def test_passages_read_the_same_from_a_search_and_from_an_echoed_item() -> None:
    ours = knowledge.Passage(7, "/d/manual.pdf", 3, "Torque: 12 Nm.").json(2)
    echoed = {"file_id": "file-7", "filename": "manual.pdf", "text": "Torque: 12 Nm.", "attributes": {"page": 3}}
    assert knowledge.shown([ours]) == "[2] (manual.pdf, page 3)\nTorque: 12 Nm."
    assert knowledge.shown([echoed]) == "[1] (manual.pdf, page 3)\nTorque: 12 Nm."
    assert knowledge.shown([]) == "No passages matched."


# --- a tool asked for in words ---------------------------------------------------------


def test_a_tool_asked_for_in_words_is_recognised() -> None:
    from ponder.modes.tools import asked_for
    from ponder.tools import sandbox as sandbox_tool
    from ponder.tools.base import Toolbox
    from ponder.types import ChatRequest, Message

    box = Toolbox({"python": sandbox_tool.hosted()})

    def asks(text: str) -> str | None:
        return asked_for(ChatRequest("m", (Message("user", text),)), box)

    for text in ["Use Python to compute 987654321 * 123456789 exactly.", "Using code, count the vowels in 'banana'.",
                 "Compute the number of days between 2024-01-01 and 2024-03-01 in Python.",
                 "run a program to reverse the string 'stressed'", "Check with code whether 97 is prime."]:  # fmt: skip
        assert asks(text) == "python", text
    for text in ["Write a Python function that reverses a list.", "What is 6 times 7?",
                 "How do I reverse a list in Python?"]:  # fmt: skip
        assert asks(text) is None, text


async def test_thinking_calls_a_tool_asked_for_in_words_before_it_reasons() -> None:
    skip_without_sandbox()
    from ponder import modes
    from ponder.config import ModeSettings
    from ponder.tools import sandbox as sandbox_tool
    from ponder.tools.base import Toolbox
    from ponder.types import ChatRequest, Message, collect

    box = Toolbox({"python": sandbox_tool.hosted()})
    backend = ScriptedBackend(call("python", code="print(987654321 * 123456789)"), "working from the output",
                              "It is 121932631112635269.")  # fmt: skip
    chat = ChatRequest("m", (Message("user", "Use Python to compute 987654321 * 123456789 exactly."),), tools=box.specs)
    req = modes.resolve(chat, ModeSettings(), mode="thinking", toolbox=box, compression=False)
    done = await collect(modes.run(backend, req))
    first = backend.requests[0]
    assert first.tool_name == "python" and not first.prefill  # the call comes first, with no reasoning before it
    assert done.tool_runs[0].output.strip() == "121932631112635269"
    assert backend.requests[1].tool_name is None  # forced once: then it thinks with the result
    assert done.text == "It is 121932631112635269."


async def test_a_forced_call_that_failed_is_forced_once_more() -> None:
    skip_without_sandbox()
    from ponder import modes
    from ponder.config import ModeSettings
    from ponder.tools import sandbox as sandbox_tool
    from ponder.tools.base import Toolbox
    from ponder.types import ChatRequest, Message, collect

    box = Toolbox({"python": sandbox_tool.hosted()})
    broken, fixed = call("python", code="print(2 ** 10"), call("python", code="print(2 ** 10)")
    backend = ScriptedBackend(broken, fixed, "it is 1024", "1024.")
    chat = ChatRequest("m", (Message("user", "Use Python to compute 2 to the 10th power."),), tools=box.specs)
    req = modes.resolve(chat, ModeSettings(), mode="thinking", toolbox=box, compression=False)
    done = await collect(modes.run(backend, req))
    assert [r.data["exit_code"] for r in done.tool_runs] == [1, 0] and done.tool_runs[1].output.strip() == "1024"
    assert [r.tool_name for r in backend.requests[:3]] == ["python", "python", None]
    assert "SyntaxError" in backend.requests[1].messages[-1].content  # it read the error before the second call
    assert done.text == "1024."
    backend = ScriptedBackend(broken, broken, "it failed twice", "No answer.")
    done = await collect(modes.run(backend, modes.resolve(chat, ModeSettings(), mode="thinking", toolbox=box,
                                                          compression=False)))  # fmt: skip
    assert len(done.tool_runs) == 1, "the same broken call again is not run again"
    assert [r.tool_name for r in backend.requests[:3]] == ["python", "python", None] and done.text == "No answer."
