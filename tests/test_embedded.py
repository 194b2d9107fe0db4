"""The embedded backend on the real tiny model (SmolLM2-135M): sampling controls,
stop sequences, prefix reuse, context limits and cancellation. Every test runs on
the default settings (the batched engine) and on `n_seq_max = 1` (the simple one);
none reads an engine's insides."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import llama_cpp
import pytest
import pytest_asyncio

from ponder.backends.embedded import EmbeddedBackend
from ponder.config import EngineSettings, ModeSettings
from ponder.engine.batched import BatchedEngine
from ponder.engine.llama import LlamaEngine
from ponder.errors import ContextLengthExceeded
from ponder.modes import answers, choices, resolve, run
from ponder.types import ChatRequest, Done, Event, Message, SamplingParams, TextDelta, collect

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
STORY = (Message("user", "Write a very long story about a dragon who learns to bake bread."),)
SHORT = (Message("user", "What is 2+2? Answer with a number only."),)  # the tiny model ends within a few tokens


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["default", "n_seq_max=1"])
async def backend(
    request: pytest.FixtureRequest, tiny_model: Path, engine_settings: EngineSettings
) -> AsyncIterator[EmbeddedBackend]:
    settings = engine_settings if request.param == "default" else replace(engine_settings, n_seq_max=1)
    b = EmbeddedBackend(tiny_model, settings)
    yield b
    await b.close()


def req(messages: tuple[Message, ...] = STORY, **params: object) -> ChatRequest:
    return ChatRequest("tiny", messages, SamplingParams(**params))  # type: ignore[arg-type]


async def test_the_default_batches_and_one_sequence_is_the_simple_engine(backend: EmbeddedBackend) -> None:
    engine = await backend.load()
    if backend.settings.n_seq_max == EngineSettings().n_seq_max:
        assert (backend.capacity, backend.capabilities.batching) == (4, True)
        assert isinstance(engine, BatchedEngine)
    else:
        assert (backend.capacity, backend.capabilities.batching) == (1, False)
        assert isinstance(engine, LlamaEngine)


async def test_requests_at_once_are_decoded_together_up_to_capacity(backend: EmbeddedBackend) -> None:
    order: list[int] = []  # which request each event belonged to, in arrival order

    async def one(i: int) -> None:
        async for _ in backend.stream(req((Message("user", f"Count to {i + 3}."),), max_tokens=16, temperature=0,
                                          ignore_eos=True)):  # fmt: skip
            order.append(i)

    await asyncio.gather(*(one(i) for i in range(3)))
    switches = sum(x != y for x, y in pairwise(order))
    if backend.capacity > 1:
        assert switches > 6, f"requests ran one after another, not in shared batches: {order}"
    else:
        assert switches == 2, f"the simple engine runs one request at a time: {order}"


async def test_ignore_eos_writes_on_to_max_tokens(backend: EmbeddedBackend) -> None:
    plain = await collect(backend.stream(req(SHORT, max_tokens=64, temperature=0)))
    assert plain.finish_reason == "stop" and plain.usage.completion_tokens < 32, plain.text
    on = await collect(backend.stream(req(SHORT, max_tokens=64, temperature=0, ignore_eos=True)))
    assert (on.finish_reason, on.usage.completion_tokens) == ("length", 64)
    sampled = await collect(backend.stream(req(SHORT, max_tokens=64, temperature=1.0, seed=3, ignore_eos=True)))
    assert (sampled.finish_reason, sampled.usage.completion_tokens) == ("length", 64)


async def test_ignore_eos_leaves_a_grammar_its_end(backend: EmbeddedBackend) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
              "additionalProperties": False}  # fmt: skip
    fmt = {"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}}
    done = await collect(backend.stream(req(SHORT, max_tokens=60, temperature=0, ignore_eos=True, response_format=fmt)))
    assert done.finish_reason == "stop" and done.text.strip().endswith("}"), done.text


async def test_streams_text_then_done_with_usage(backend: EmbeddedBackend) -> None:
    events = [e async for e in backend.stream(req(max_tokens=16, temperature=0, ignore_eos=True))]
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
    full = await collect(backend.stream(req(max_tokens=40, temperature=0, ignore_eos=True)))
    words = full.text.split()
    assert len(words) > 6
    stop = words[5]
    cut = await collect(backend.stream(req(max_tokens=40, temperature=0, ignore_eos=True, stop=(stop,))))
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]


async def test_follow_up_turn_reuses_the_cached_prefix(backend: EmbeddedBackend) -> None:
    history = (Message("system", "You are terse."), Message("user", "Name three colours. " * 30))
    first = await collect(backend.stream(req(history, max_tokens=24, temperature=0)))
    follow = (*history, Message("assistant", first.text), Message("user", "And three animals?"))
    second = await collect(backend.stream(req(follow, max_tokens=8, temperature=0)))
    assert second.usage.cached_tokens >= first.usage.prompt_tokens - 1
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens - 4


async def test_prefill_is_the_start_of_the_reply(backend: EmbeddedBackend, tiny_model: Path) -> None:
    engine = await backend.load()
    plain = engine.prompt_tokens(STORY)
    filled = engine.prompt_tokens(STORY, "Once upon a time, a dragon")
    assert filled[: len(plain)] == plain
    vocab = llama_cpp.Llama(str(tiny_model), vocab_only=True, verbose=False)  # the model's own tokenizer, alone
    assert vocab.detokenize(filled[len(plain) :]).decode() == "Once upon a time, a dragon"
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


async def test_closing_the_stream_stops_the_engine(backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await backend.load()
    ended: list[Done] = []  # the Done the engine itself emitted, which no consumer reads any more
    generate = engine.generate

    def watched(
        tokens: list[int], params: SamplingParams, cancel: threading.Event, emit: Callable[[Event], None]
    ) -> None:
        def tap(event: Event) -> None:
            if isinstance(event, Done):
                ended.append(event)
            emit(event)

        generate(tokens, params, cancel, tap)

    monkeypatch.setattr(engine, "generate", watched)
    async with aclosing(backend.stream(req(max_tokens=1500, temperature=0, ignore_eos=True))) as events:
        for _ in range(3):
            await anext(events)
    for _ in range(100):
        if backend.busy == 0:
            break
        await asyncio.sleep(0.05)
    assert backend.busy == 0
    (done,) = ended
    assert done.finish_reason == "cancelled"
    assert done.usage.completion_tokens < 20, "decoding went on after the consumer left"


async def test_a_multiple_choice_question_is_settled_by_reading_its_options(backend: EmbeddedBackend) -> None:
    """Contemplating on a lettered question: the model's letter and its options scored
    (no tokens written for them) decide it; the answer is one of the options."""
    question = "Question: Which animal says moo?\n\nChoices:\nA. A cow.\nB. A cat.\nC. A fish.\n\nAnswer: a letter."
    chat = ChatRequest("tiny", (Message("user", question),), SamplingParams(max_tokens=8))
    scores, read = await choices.score(backend, chat, choices.parse(question))  # type: ignore[arg-type]
    assert len(scores) == 3 and all(s < 0 for s in scores) and read >= 3
    assert backend.capabilities.scoring
    done = await collect(run(backend, resolve(chat, ModeSettings(), mode="contemplating")))
    assert [e.data["method"] for e in done.progress if e.kind == "agent.start"] == ["direct", "options"]
    synthesis = next(e for e in done.progress if e.kind == "synthesis.start")
    assert synthesis.data["method"] in ("agreement", "pooled") and synthesis.data["answer"] in ("a", "b", "c")
    assert done.text.strip()[0] in "ABC" and done.usage.completion_tokens <= 8
    # Thinking: the same two answers first; a chain only where they differ, and it decides between them
    done = await collect(run(backend, replace(resolve(chat, ModeSettings(), mode="thinking"), budget=64)))
    options = ("A cow.", "A cat.", "A fish.")
    said = answers.choice(done.text, 3, options)  # the tiny model may answer in an option's words
    assert done.reasoning.startswith("The first answer names ") and said in ("a", "b", "c"), done.text
    if synthesis.data["method"] == "agreement":  # Contemplating's two agreed: so do Thinking's, with no chain
        assert said == synthesis.data["answer"] and done.usage.reasoning_tokens == 0, (done.reasoning, done.text)


async def test_a_scoring_job_whose_caller_left_ends_quietly(tiny_model: Path, engine_settings: EngineSettings) -> None:
    """Ctrl-C on a bench, or a client gone: the caller of a score is cancelled while
    the engine still scores, and the job then ends in an error that nobody awaits.
    asyncio must not be left to print it as "Future exception was never retrieved"."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, object]] = []
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    b = EmbeddedBackend(tiny_model, engine_settings)
    try:
        await b.load()
        long = ChatRequest("tiny", STORY, SamplingParams(), prefill=" bread" * 1500)
        task = asyncio.create_task(b.score(long))
        async with asyncio.timeout(60):
            while b.busy == 0 and not task.done():
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            while b.busy:  # the job sees the cancel at its next step and ends with EngineClosed
                await asyncio.sleep(0.01)
        del task
        gc.collect()
        await asyncio.sleep(0)
    finally:
        await b.close()
        loop.set_exception_handler(handler)
    assert [c["message"] for c in seen] == []
