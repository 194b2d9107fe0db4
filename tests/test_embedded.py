"""The embedded backend on the real tiny model (SmolLM2-135M): sampling controls,
stop sequences, prefix reuse, context limits and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest
import pytest_asyncio

from ponder.backends.embedded import EmbeddedBackend
from ponder.config import EngineSettings
from ponder.errors import ContextLengthExceeded
from ponder.types import ChatRequest, Done, Message, SamplingParams, TextDelta, collect

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
STORY = (Message("user", "Write a very long story about a dragon who learns to bake bread."),)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend(tiny_model: Path, engine_settings: EngineSettings) -> AsyncIterator[EmbeddedBackend]:
    b = EmbeddedBackend(tiny_model, engine_settings)
    yield b
    await b.close()


def req(messages: tuple[Message, ...] = STORY, **params: object) -> ChatRequest:
    return ChatRequest("tiny", messages, SamplingParams(**params))  # type: ignore[arg-type]


async def test_streams_text_then_done_with_usage(backend: EmbeddedBackend) -> None:
    events = [e async for e in backend.stream(req(max_tokens=16, temperature=0))]
    assert isinstance(events[-1], Done)
    assert all(isinstance(e, TextDelta) for e in events[:-1])
    assert "".join(e.text for e in events[:-1]).strip()
    usage = events[-1].usage
    assert usage.completion_tokens == 16 and events[-1].finish_reason == "length"
    engine = await backend.load()
    assert usage.prompt_tokens == len(engine.prompt_tokens(STORY))


async def test_seed_makes_sampling_repeatable(backend: EmbeddedBackend) -> None:
    a = await collect(backend.stream(req(max_tokens=24, temperature=1.0, seed=7)))
    b = await collect(backend.stream(req(max_tokens=24, temperature=1.0, seed=7)))
    others = [await collect(backend.stream(req(max_tokens=24, temperature=1.0, seed=s))) for s in (8, 9)]
    assert a.text == b.text
    assert any(o.text != a.text for o in others), "different seeds should give some different text"


async def test_stop_sequence_cuts_the_answer(backend: EmbeddedBackend) -> None:
    full = await collect(backend.stream(req(max_tokens=40, temperature=0)))
    words = full.text.split()
    assert len(words) > 6
    stop = words[5]
    cut = await collect(backend.stream(req(max_tokens=40, temperature=0, stop=(stop,))))
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]


async def test_follow_up_turn_reuses_the_cached_prefix(backend: EmbeddedBackend) -> None:
    history = (Message("system", "You are terse."), Message("user", "Name three colours. " * 30))
    first = await collect(backend.stream(req(history, max_tokens=24, temperature=0)))
    follow = (*history, Message("assistant", first.text), Message("user", "And three animals?"))
    second = await collect(backend.stream(req(follow, max_tokens=8, temperature=0)))
    assert second.usage.cached_tokens >= first.usage.prompt_tokens - 1
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens - 4


async def test_prefill_is_the_start_of_the_reply(backend: EmbeddedBackend) -> None:
    engine = await backend.load()
    plain = engine.prompt_tokens(STORY)
    filled = engine.prompt_tokens(STORY, "Once upon a time, a dragon")
    assert filled[: len(plain)] == plain
    assert engine.llm.detokenize(filled[len(plain) :]).decode() == "Once upon a time, a dragon"
    chat = ChatRequest("tiny", STORY, SamplingParams(max_tokens=4, temperature=0), prefill="Once upon a time, a dragon")
    done = await collect(backend.stream(chat))
    assert done.usage.prompt_tokens == len(filled)


async def test_too_long_a_context_is_refused_before_any_work(tiny_model: Path) -> None:
    small = EmbeddedBackend(tiny_model, EngineSettings(n_ctx=256, n_threads=2))
    try:
        with pytest.raises(ContextLengthExceeded, match="256"):
            await anext(small.stream(req((Message("user", "word " * 400),))))
        with pytest.raises(ContextLengthExceeded, match="max_tokens"):
            await anext(small.stream(req(max_tokens=1000)))
    finally:
        await small.close()


async def test_closing_the_stream_stops_the_engine(backend: EmbeddedBackend) -> None:
    reference = await collect(backend.stream(req(max_tokens=300, temperature=0)))
    assert reference.usage.completion_tokens == 300, "the reference run must be long for this test to mean much"

    engine = await backend.load()
    async with aclosing(backend.stream(req(max_tokens=300, temperature=0))) as events:
        for _ in range(3):
            await anext(events)
    for _ in range(100):
        if backend.busy == 0:
            break
        await asyncio.sleep(0.05)
    assert backend.busy == 0
    prompt = len(engine.prompt_tokens(STORY))
    assert engine.llm.n_tokens < prompt + 20, "decoding went on after the consumer left"
