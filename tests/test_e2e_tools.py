"""Server-side tools end to end: a real `ponder serve` on the tiny model, with a
real knowledge index and the real MCP test server in its config. The 135M model
is for plumbing, so calls are forced with `tool_choice`; what is checked is that
each tool really ran on what the model sent and that the result reached the
answer's stream, usage and citations."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from ponder.modes.tools import execute
from ponder.tools import calculator, knowledge
from ponder.tools.calculator import evaluate
from ponder.types import ToolCall
from tests.conftest import BIN, TINY, free_port, ponder_env, start, stop

pytestmark = pytest.mark.e2e
SERVER = Path(__file__).parent / "mcp_server.py"
NOTES = "e2e-notes"


@pytest.fixture(scope="module")
def client(
    data_dir: Path, tiny_model: Path, voice_models: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    """`ponder serve` with the MCP test server (stdio) configured and a small corpus
    indexed, as a user would: `ponder index`, then the server."""
    tmp = tmp_path_factory.mktemp("tools")
    (tmp / "notes").mkdir()
    (tmp / "notes" / "reactor.md").write_text(
        "The Zorblax reactor is cooled by liquid sodium. The emergency cooling code of the Zorblax reactor is 4471."
    )
    (tmp / "notes" / "garden.txt").write_text("The community garden grows tomatoes and basil. Watering is at 6 am.")
    config = tmp / "config.toml"
    config.write_text(f'[mcp.warehouse]\ncommand = ["{sys.executable}", "{SERVER}", "stdio"]\n')
    env = ponder_env(data_dir, PONDER_CONFIG=str(config), PONDER_N_CTX="4096")
    index = knowledge.Index(data_dir / "knowledge.db")
    index.add(tmp / "notes", NOTES)
    index.close()
    port = free_port()
    cmd = [str(BIN / "ponder"), "serve", "--model", TINY, "--port", str(port), "--log-level", "warning"]
    proc = start(cmd, env, f"http://127.0.0.1:{port}/health", tmp / "serve.log")
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=300)
    stop(proc)


def test_the_calculator_runs_on_what_the_model_wrote(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "What is 12 * 34?"}], max_tokens=200, temperature=0,
        tools=[{"type": "calculator"}], tool_choice={"type": "function", "function": {"name": "calculator"}},  # type: ignore[list-item,typeddict-item]
    )  # fmt: skip
    runs = [p for p in r.model_extra["ponder"]["progress"] if p["type"] == "tool.call"]  # type: ignore[index]
    assert runs and runs[0]["tool"] == "calculator"
    expression = json.loads(runs[0]["arguments"]).get("expression", "")
    if runs[0]["error"]:  # the model's call was not arithmetic: it read exactly why, as the tool says it here
        again = asyncio.run(execute(calculator.hosted(), ToolCall("c", "calculator", runs[0]["arguments"])))
        assert again.error and runs[0]["output"] == again.output
    else:
        assert float(runs[0]["output"]) == pytest.approx(float(evaluate(expression)))
    assert r.usage is not None and r.usage.model_extra["tool_calls"] == len(runs)  # type: ignore[index]
    assert r.choices[0].message.content


def test_knowledge_search_answers_with_a_citation(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model=TINY, input="What is the emergency cooling code of the Zorblax reactor?", max_output_tokens=200,
        tools=[{"type": "file_search", "vector_store_ids": [NOTES]}], tool_choice={"type": "file_search"},  # type: ignore[list-item,typeddict-item]
        temperature=0,
    )  # fmt: skip
    search = r.output[0]
    assert search.type == "file_search_call" and search.results  # type: ignore[union-attr]
    assert search.results[0].filename == "reactor.md"  # type: ignore[union-attr]
    message = [o for o in r.output if o.type == "message"][-1]
    answer = message.content[0]  # type: ignore[union-attr]
    assert "4471" in answer.text  # type: ignore[union-attr]
    cited = [a.filename for a in answer.annotations]  # type: ignore[union-attr]
    assert cited[0] == "reactor.md"  # (the tiny model may echo every passage; test_tools checks the unused go uncited)


def test_mcp_tools_are_called_through_the_server(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model=TINY, input="How many widgets are in stock?", max_output_tokens=200, temperature=0,
        tools=[{"type": "mcp", "server_label": "warehouse", "allowed_tools": ["warehouse_stock"]}],  # type: ignore[list-item]
        tool_choice={"type": "mcp", "server_label": "warehouse", "name": "warehouse_stock"},  # type: ignore[arg-type]
    )  # fmt: skip
    mcp: Any = r.output[0]
    assert mcp.type == "mcp_call" and mcp.server_label == "warehouse" and mcp.name == "warehouse_stock"
    item = json.loads(mcp.arguments).get("item")
    # whatever the model asked for, the answer is the real server's
    expected = "widgets: 4183 units in aisle 7" if item == "widgets" else f"unknown item {item!r}"
    assert expected in (mcp.output or mcp.error)
    assert r.output[-1].type == "message"


def test_a_contemplating_sub_agent_uses_a_tool_in_the_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "What is 7 * 8?"}], stream=True, max_tokens=400, seed=7,
        tools=[{"type": "calculator"}], tool_choice={"type": "function", "function": {"name": "calculator"}},  # type: ignore[list-item,typeddict-item]
        extra_body={"mode": "contemplating", "contemplation": {"agents": 2, "agent_budget": 48}},
    )  # fmt: skip
    ext = [c.model_extra["ponder"] for c in stream if c.model_extra and "ponder" in c.model_extra]
    runs = [e for e in ext if e["type"] == "tool.call"]
    # each agent's first round is forced to call it; the tiny model sometimes writes a call too broken to parse
    # (then that agent answers in text), so at least one agent's call must be in the stream
    assert runs and {e["agent"] for e in runs} <= {0, 1} and all(e["tool"] == "calculator" for e in runs)
    done = [i for i, e in enumerate(ext) if e["type"] == "agent.done"]
    assert len(done) == 2 and ext.index(runs[0]) < max(done)
