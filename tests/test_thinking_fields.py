"""The request fields that switch an engine's own thinking on and off and cap it
(vLLM, SGLang), and the modes that set them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ponder.backends.base import Capabilities
from ponder.backends.remote import RemoteBackend
from ponder.backends.scripted import ScriptedBackend
from ponder.config import load_settings
from ponder.errors import ConfigError
from ponder.modes import ModeRequest, run
from ponder.types import ChatRequest, Message, ReasoningDelta, TextDelta, collect

ASK = ChatRequest("m", (Message("user", "What is 2+2?"),))


@pytest.mark.parametrize(
    ("flavor", "thinking", "fields"),
    [
        ("vllm", 512, {"chat_template_kwargs": {"enable_thinking": True}, "thinking_token_budget": 512}),
        ("vllm", 0, {"chat_template_kwargs": {"enable_thinking": False}}),
        ("sglang", 256, {"chat_template_kwargs": {"enable_thinking": True, "thinking_budget": 256}}),
        ("sglang", 0, {"chat_template_kwargs": {"enable_thinking": False}}),
        ("", 512, {}),  # an engine that takes no budget gets none
        ("vllm", None, {}),  # nothing asked: the engine's default
    ],
)
async def test_thinking_fields_per_engine(flavor: str, thinking: int | None, fields: dict[str, object]) -> None:
    backend = RemoteBackend("http://127.0.0.1:9/v1", thinking=flavor, extra_body={"chat_template_kwargs": {"x": 1}})
    body = backend._body(ChatRequest("m", ASK.messages, thinking=thinking))
    extra = {k: body[k] for k in ("chat_template_kwargs", "thinking_token_budget") if k in body}
    want = {**fields, "chat_template_kwargs": {"x": 1, **fields.get("chat_template_kwargs", {})}}  # type: ignore[dict-item]
    assert extra == want
    assert backend.capabilities.thinking_budget == bool(flavor)
    await backend.close()


class Engine(ScriptedBackend):
    """A remote-like engine (no prefill) that takes a thinking budget, and records it."""

    capabilities = Capabilities(native_reasoning=True, thinking_budget=True)


async def test_instant_turns_thinking_off_and_thinking_passes_its_budget() -> None:
    engine = Engine(respond=lambda r: [ReasoningDelta("hmm"), TextDelta("4")] if r.thinking else "4")
    await collect(run(engine, ModeRequest(ASK, "instant", budget=0)))
    await collect(run(engine, ModeRequest(ASK, "thinking", budget=300, compression=False, programs=False)))
    assert [r.thinking for r in engine.requests] == [0, 300]


def test_config_checks_the_flavor(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[models.q]\nbackend = "remote"\nbase_url = "http://x/v1"\nthinking = "vllm"\n')
    assert load_settings(config, env={}).models["q"].thinking == "vllm"
    config.write_text('[models.q]\nbackend = "remote"\nbase_url = "http://x/v1"\nthinking = "magic"\n')
    with pytest.raises(ConfigError, match="thinking"):
        load_settings(config, env={})
