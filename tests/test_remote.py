"""The remote backend against a real OpenAI-compatible engine on loopback:
llama-cpp-python's own server (`python -m llama_cpp.server`) on the tiny model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import pytest_asyncio

from ponder.backends.base import api_base
from ponder.backends.remote import RemoteBackend
from ponder.errors import InvalidRequest, UpstreamError
from ponder.types import ChatRequest, Message, SamplingParams, TextDelta, collect
from tests.conftest import BIN, free_port, llama_server, ponder_env, start, stop

pytestmark = pytest.mark.e2e
in_module_loop = pytest.mark.asyncio(loop_scope="module")
HELLO = (Message("user", "Say hello."),)


@pytest.fixture(scope="module")
def engine_url(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = llama_server(tiny_model, port, tmp_path_factory.mktemp("logs") / "llama-cpp-server.log")
    yield f"http://127.0.0.1:{port}/v1"
    stop(proc)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def remote(engine_url: str) -> AsyncIterator[RemoteBackend]:
    backend = RemoteBackend(engine_url, upstream_model="smollm2")
    yield backend
    await backend.close()


@in_module_loop
async def test_streams_text_and_finishes(remote: RemoteBackend) -> None:
    events = [e async for e in remote.stream(ChatRequest("x", HELLO, SamplingParams(max_tokens=6, temperature=0)))]
    text = [e for e in events if isinstance(e, TextDelta)]
    assert len(text) >= 2, "tokens arrive as separate deltas"
    done = await collect(_replay(events))
    assert done.text.strip() and done.finish_reason == "length"
    assert done.usage.completion_tokens == 6


@in_module_loop
async def test_a_servers_root_url_is_taken_as_its_api(engine_url: str) -> None:
    """http://host:port, as people type it, means http://host:port/v1; a URL with a path is kept."""
    assert api_base("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/v1"
    assert api_base("https://gpu.example/proxy/v1/") == "https://gpu.example/proxy/v1"
    backend = RemoteBackend(engine_url.removesuffix("/v1"), upstream_model="smollm2")
    try:
        done = await collect(backend.stream(ChatRequest("x", HELLO, SamplingParams(max_tokens=4, temperature=0))))
        assert done.text.strip() and done.usage.completion_tokens == 4
    finally:
        await backend.close()


LONG = (Message("user", "lorem ipsum " * 3000),)


@in_module_loop
async def test_a_stream_the_engine_drops_is_an_error_not_an_empty_answer(remote: RemoteBackend) -> None:
    # llama_cpp.server answers 200 and then sends nothing when the prompt is too long.
    with pytest.raises(UpstreamError, match="ended the stream without finishing"):
        await collect(remote.stream(ChatRequest("x", LONG, SamplingParams(max_tokens=4))))


@in_module_loop
async def test_upstream_request_errors_keep_status_param_and_code(ponder_server: str) -> None:
    # Ponder itself is an engine that refuses before streaming, as vLLM does.
    backend = RemoteBackend(ponder_server, upstream_model="smollm2-135m")
    try:
        with pytest.raises(InvalidRequest) as e:
            await anext(backend.stream(ChatRequest("x", LONG, SamplingParams(max_tokens=4))))
        assert (e.value.status, e.value.param, e.value.code) == (400, "messages", "context_length_exceeded")
        assert "4096" in e.value.message
    finally:
        await backend.close()


@in_module_loop
async def test_ignore_eos_is_sent_only_when_asked() -> None:
    backend = RemoteBackend("http://127.0.0.1:9/v1")  # vLLM and llama-server take it; OpenAI would refuse it
    try:
        assert backend._body(ChatRequest("x", HELLO, SamplingParams(ignore_eos=True)))["ignore_eos"] is True
        assert "ignore_eos" not in backend._body(ChatRequest("x", HELLO))
    finally:
        await backend.close()


@in_module_loop
async def test_unreachable_engine_is_a_clear_502() -> None:
    backend = RemoteBackend(f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(UpstreamError, match=r"remote engine at http://127\.0\.0\.1:\d+/v1 failed: ConnectError"):
            await anext(backend.stream(ChatRequest("x", HELLO)))
    finally:
        await backend.close()


def test_ponder_serve_fronts_a_remote_engine(
    engine_url: str, data_dir: Path, tiny_model: Path, voice_models: Any, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[models.upstream]\nbackend = "remote"\nbase_url = "{engine_url}"\nmodel = "smollm2"\n')
    port = free_port()
    env = ponder_env(data_dir, PONDER_CONFIG=str(config))
    cmd = [str(BIN / "ponder"), "serve", "--model", "upstream", "--port", str(port), "--log-level", "warning"]
    proc = start(cmd, env, f"http://127.0.0.1:{port}/health", tmp_path / "serve.log")
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert "upstream" in [m.id for m in client.models.list()]
        chunks = list(client.chat.completions.create(
            model="upstream", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, stream=True,
        ))  # fmt: skip
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="upstream", messages=[{"role": "user", "content": "lorem " * 4000}])
        assert e.value.status_code == 502 and "ended the stream" in str(e.value)
    finally:
        stop(proc)


async def _replay(events: list) -> AsyncIterator:  # type: ignore[type-arg]
    for e in events:
        yield e
