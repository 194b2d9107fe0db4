"""The batched engine on the real tiny model (SmolLM2-135M): the same answers as
`LlamaEngine`, requests decoded together, prefixes shared and reused, cancellation
and errors per request."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest

from ponder.engine.batched import BatchedEngine, EngineClosed
from ponder.engine.common import common_prefix
from ponder.engine.llama import LlamaEngine
from ponder.engine.slots import SlotTable
from ponder.errors import ContextLengthExceeded, InvalidRequest
from ponder.types import Done, Event, Message, SamplingParams, TextDelta, TokenLogprob

pytestmark = pytest.mark.e2e
N_SEQ = 4
STORY = (Message("user", "Write a very long story about a dragon who learns to bake bread."),)
QUESTIONS = ("Tell me about cats.", "What is Python?", "Describe the sea at night.", "Write a poem about bread.")
SHORT = "What is 2+2? Answer with a number only."  # the tiny model ends within a few tokens
JOIN_S = 120  # a hung engine fails the test instead of hanging the run
ROUNDING = 0.15  # nats a log-probability may move when other kernels or batch rows compute it
NEAR_TIE = 0.5  # nats between the two likeliest tokens, where rounding may pick either
# One thread: with an OpenMP build, two threads on a 2-core machine that is busy with
# anything else wait on each other at every op barrier (seconds per token).
THREADS = 1


@dataclass
class Answer:
    text: str = ""
    events: list[Event] = field(default_factory=list)

    @property
    def done(self) -> Done:
        assert isinstance(self.events[-1], Done), self.events[-1:]
        return self.events[-1]


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[BatchedEngine]:
    e = BatchedEngine(tiny_model, n_ctx=1024, n_threads=THREADS, n_seq_max=N_SEQ)
    yield e
    e.close()


def ask(engine: BatchedEngine, question: str, system: str | None = None) -> list[int]:
    messages = [Message("system", system)] if system else []
    return engine.prompt_tokens([*messages, Message("user", question)])


def run(
    engine: BatchedEngine | LlamaEngine,
    tokens: list[int],
    cancel: threading.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
    **params: object,
) -> Answer:
    answer = Answer()

    def emit(event: Event) -> None:
        answer.events.append(event)
        if on_event:
            on_event(event)

    engine.generate(tokens, SamplingParams(**params), cancel or threading.Event(), emit)  # type: ignore[arg-type]
    assert sum(isinstance(e, Done) for e in answer.events) == 1
    answer.text = "".join(e.text for e in answer.events if isinstance(e, TextDelta))
    return answer


def tokens_of(answer: Answer) -> list[TokenLogprob]:
    return [t for e in answer.events if isinstance(e, TextDelta) for t in e.logprobs]


def together(*jobs: Callable[[], Answer]) -> list[Answer]:
    """Run the jobs on their own threads, started at once; re-raise the first error."""
    results = outcomes(*jobs)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if isinstance(r, Answer)]


def outcomes(*jobs: Callable[[], Answer]) -> list[Answer | BaseException | None]:
    results: list[Answer | BaseException | None] = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        start.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
        assert not t.is_alive(), "generate() did not return"
    return results


def test_greedy_output_equals_llama_engine(engine: BatchedEngine, tiny_model: Path) -> None:
    single = LlamaEngine(tiny_model, n_ctx=1024, n_threads=THREADS)
    tokens = single.prompt_tokens(STORY)
    assert engine.prompt_tokens(STORY) == tokens
    expected = run(single, tokens, max_tokens=48, temperature=0, ignore_eos=True)
    got = run(engine, tokens, max_tokens=48, temperature=0, ignore_eos=True)
    assert got.text == expected.text and got.text.strip()
    assert got.done == expected.done
    assert got.done.usage.completion_tokens == 48 and got.done.finish_reason == "length"


def test_ignore_eos_writes_on_in_its_own_sequence_only(engine: BatchedEngine) -> None:
    prompt = ask(engine, SHORT)
    on, off = together(
        lambda: run(engine, prompt, max_tokens=40, temperature=0, ignore_eos=True),
        lambda: run(engine, prompt, max_tokens=40, temperature=0),
    )
    assert (on.done.finish_reason, on.done.usage.completion_tokens) == ("length", 40)
    assert off.done.finish_reason == "stop" and off.done.usage.completion_tokens < 20, off.text
    sampled = run(engine, prompt, max_tokens=40, temperature=1.0, seed=5, ignore_eos=True)
    assert (sampled.done.finish_reason, sampled.done.usage.completion_tokens) == ("length", 40)


def test_prefill_text_starts_the_reply(engine: BatchedEngine) -> None:
    plain = engine.prompt_tokens(STORY)
    started = engine.prompt_tokens(STORY, prefill="Chapter 1: The Dragon")
    assert started[: len(plain)] == plain and len(started) > len(plain)
    reply = run(engine, started, max_tokens=12, temperature=0)
    assert reply.text.strip() and not reply.text.startswith("Chapter 1")


def test_concurrent_requests_are_decoded_together(engine: BatchedEngine) -> None:
    prompts = [ask(engine, q) for q in QUESTIONS]
    for p in prompts:  # cache each prompt, so that both runs below decode only its last token
        run(engine, p, max_tokens=1, temperature=0)
    greedy = {"max_tokens": 24, "temperature": 0, "ignore_eos": True, "logprobs": 3}  # raw logits: EOS may lead
    alone = [run(engine, p, **greedy) for p in prompts]

    order: list[int] = []  # which request each event belonged to, in emission order
    lock = threading.Lock()

    def job(i: int) -> Callable[[], Answer]:
        def record(event: Event) -> None:
            with lock:
                order.append(i)

        return lambda: run(engine, prompts[i], on_event=record, **greedy)

    both = together(*(job(i) for i in range(len(prompts))))
    switches = sum(x != y for x, y in pairwise(order))
    assert switches > 3 * len(prompts), f"requests ran one after another, not in shared batches: {order}"
    # llama.cpp's kernels round a batch of rows differently from a single row (flash
    # attention, tinyBLAS), so with this tiny model a near-tie can flip a greedy token,
    # and how often depends on which rows happen to share a step. Crossed or misplaced
    # sequences would do more than flip a token: each answer must be its own prompt's
    # answer from the start, the same token for token up to where they part, and part
    # only at a near-tie, each run's token one of the other's likeliest.
    for i, b in enumerate(both):
        shared = [common_prefix(b.text, a.text) for a in alone]
        assert shared[i] >= 5 and shared.count(max(shared)) == 1 and shared[i] == max(shared), (b.text, alone)
        mine, theirs = tokens_of(alone[i]), tokens_of(b)
        parted = common_prefix([t.token for t in mine], [t.token for t in theirs])
        assert len(mine) == len(theirs) == 24 == b.done.usage.completion_tokens
        if parted == len(mine):
            continue
        first, second = mine[parted], theirs[parted]
        assert second.token in dict(first.top) and first.token in dict(second.top), (first, second)
        assert abs(first.logprob - dict(first.top)[second.token]) < NEAR_TIE, (first, second)
        assert abs(second.logprob - dict(second.top)[first.token]) < NEAR_TIE, (first, second)


def test_more_requests_than_slots_wait_their_turn(engine: BatchedEngine) -> None:
    prompts = [ask(engine, f"Count to {n}.") for n in range(N_SEQ + 2)]
    answers = together(*(lambda p=p: run(engine, p, max_tokens=6, temperature=0, ignore_eos=True) for p in prompts))
    assert [a.done.usage.completion_tokens for a in answers] == [6] * len(prompts)


def test_concurrent_requests_with_a_shared_prefix_prefill_it_once(engine: BatchedEngine) -> None:
    system = "You are a careful analyst at the Zebra Institute. " * 12  # unseen by earlier tests
    prompt = ask(engine, "Is a zebra white with black stripes?", system)
    answers = together(*(lambda: run(engine, prompt, max_tokens=12, temperature=0) for _ in range(N_SEQ)))
    cached = sorted(a.done.usage.cached_tokens for a in answers)
    assert cached[0] < len(prompt) // 2, "the first request prefills the prompt"
    assert cached[1:] == [len(prompt) - 1] * (N_SEQ - 1), "the others copy it (all but the last token)"
    # Not necessarily the same text: the leader's first token comes from logits computed
    # inside a long prefill batch, the followers' from a short one, and near-ties can flip.
    assert all(a.text.strip() and a.done.usage.completion_tokens > 0 for a in answers)


def test_follow_up_turn_reuses_its_idle_slot(engine: BatchedEngine) -> None:
    history = [Message("system", "You are terse."), Message("user", "Name three colours. " * 30)]
    first = run(engine, engine.prompt_tokens(history), max_tokens=24, temperature=0)
    for q in QUESTIONS[:2]:  # other requests meanwhile take other slots, not this one
        run(engine, ask(engine, q), max_tokens=4, temperature=0)
    follow = [*history, Message("assistant", first.text), Message("user", "And three animals?")]
    second = run(engine, engine.prompt_tokens(follow), max_tokens=8, temperature=0)
    assert second.done.usage.cached_tokens >= first.done.usage.prompt_tokens - 1
    assert second.done.usage.prompt_tokens > first.done.usage.prompt_tokens + first.done.usage.completion_tokens - 4


def test_least_recently_used_slot_is_evicted(engine: BatchedEngine) -> None:
    tail = "then spell it backwards, then count its letters and list its vowels and its consonants."
    prompts = [ask(engine, f"Pick word {n} of the dictionary, {tail}") for n in range(N_SEQ + 1)]
    for p in prompts:
        run(engine, p, max_tokens=2, temperature=0)
    latest = run(engine, prompts[-1], max_tokens=2, temperature=0)
    assert latest.done.usage.cached_tokens == len(prompts[-1]) - 1
    oldest = run(engine, prompts[0], max_tokens=2, temperature=0)
    assert oldest.done.usage.cached_tokens < len(prompts[0]) - 1, "the oldest cache should have been evicted"


def test_forget_drops_the_cache_and_a_cold_prompt_answers_alike(engine: BatchedEngine, tiny_model: Path) -> None:
    tokens = engine.prompt_tokens(STORY)
    for q in QUESTIONS[:2]:  # other slots hold something, so the cells are not simply in order
        run(engine, ask(engine, q), max_tokens=8, temperature=0)
    engine.forget()
    cold = [run(engine, tokens, max_tokens=48, temperature=0, ignore_eos=True)]
    warm = run(engine, tokens, max_tokens=2, temperature=0)
    assert warm.done.usage.cached_tokens == len(tokens) - 1  # the repeat was served from the cache
    engine.forget()
    cold.append(run(engine, tokens, max_tokens=48, temperature=0, ignore_eos=True))
    assert cold[1].done.usage.cached_tokens == 0
    assert cold[1].text == cold[0].text and tokens_of(cold[1]) == tokens_of(cold[0])
    single = LlamaEngine(tiny_model, n_ctx=1024, n_threads=THREADS)
    run(single, tokens, max_tokens=2, temperature=0)
    single.forget()
    again = run(single, tokens, max_tokens=48, temperature=0, ignore_eos=True)
    assert again.done.usage.cached_tokens == 0 and again.text == cold[0].text


def test_cancel_stops_only_that_request(engine: BatchedEngine) -> None:
    cancel = threading.Event()
    deltas = 0

    def cancel_after_three(event: Event) -> None:
        nonlocal deltas
        deltas += isinstance(event, TextDelta)
        if deltas == 3:
            cancel.set()

    story = engine.prompt_tokens(STORY)
    long = {"max_tokens": 60, "temperature": 0, "ignore_eos": True}
    answers = together(
        lambda: run(engine, story, cancel=cancel, on_event=cancel_after_three, **long),
        lambda: run(engine, ask(engine, QUESTIONS[0]), **long),
        lambda: run(engine, ask(engine, QUESTIONS[1]), **long),
    )
    assert answers[0].done.finish_reason == "cancelled"
    assert answers[0].done.usage.completion_tokens == 3
    for other in answers[1:]:
        assert (other.done.finish_reason, other.done.usage.completion_tokens) == ("length", 60)


def test_stop_strings_and_max_tokens(engine: BatchedEngine) -> None:
    story = engine.prompt_tokens(STORY)
    full = run(engine, story, max_tokens=40, temperature=0, ignore_eos=True)
    words = full.text.split()
    assert len(words) > 6
    cut = run(engine, story, max_tokens=40, temperature=0, ignore_eos=True, stop=(words[5],))
    assert cut.done.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(words[5])]
    short = run(engine, story, max_tokens=7, temperature=0, ignore_eos=True)
    assert short.done.finish_reason == "length" and short.done.usage.completion_tokens == 7
    assert full.text.startswith(short.text)


def test_a_seed_makes_sampling_repeatable(engine: BatchedEngine) -> None:
    story = engine.prompt_tokens(STORY)
    a, b = (run(engine, story, max_tokens=24, temperature=1.0, seed=7) for _ in range(2))
    others = [run(engine, story, max_tokens=24, temperature=1.0, seed=s) for s in (8, 9)]
    assert a.text == b.text
    assert any(o.text != a.text for o in others), "different seeds should give some different text"


def test_errors_reach_the_calling_thread(engine: BatchedEngine) -> None:
    with pytest.raises(ContextLengthExceeded, match="1024"):
        run(engine, [1] * 1500, max_tokens=4)
    with pytest.raises(InvalidRequest):
        run(engine, [], max_tokens=4)

    def explode(event: Event) -> None:
        raise ValueError("the consumer broke")

    story = engine.prompt_tokens(STORY)
    broken, fine = outcomes(
        lambda: run(engine, story, on_event=explode, max_tokens=40, temperature=0),
        lambda: run(engine, ask(engine, QUESTIONS[2]), max_tokens=40, temperature=0, ignore_eos=True),
    )
    assert isinstance(broken, ValueError) and "consumer broke" in str(broken)
    assert isinstance(fine, Answer) and fine.done.usage.completion_tokens == 40
    after = run(engine, ask(engine, QUESTIONS[3]), max_tokens=5, temperature=0, ignore_eos=True)
    assert after.done.usage.completion_tokens == 5, "the engine goes on after one request failed"


def test_closed_engine_refuses_work(tiny_model: Path) -> None:
    e = BatchedEngine(tiny_model, n_ctx=256, n_threads=THREADS, n_seq_max=2)
    tokens = e.prompt_tokens(STORY)
    assert run(e, tokens, max_tokens=2, temperature=0).done.usage.completion_tokens == 2
    e.close()
    with pytest.raises(EngineClosed):
        run(e, tokens, max_tokens=2)
    with pytest.raises(EngineClosed):
        e.prompt_tokens(STORY)


def test_slot_plans_without_a_model() -> None:
    table = SlotTable(3)
    chat = list(range(100))
    first = table.plan(chat)
    assert first is not None and first.reuse == 0
    first.slot.tokens = [*chat, 500, 501]  # the answer went into the cache too
    table.release(first.slot)

    # the next turn extends the same slot in place
    follow_up = table.plan([*chat, 500, 501, 502, 7, 8])
    assert follow_up is not None and follow_up.slot is first.slot and follow_up.reuse == 102
    assert follow_up.source is first.slot and not follow_up.wait
    table.release(first.slot)

    # another chat sharing only the system prompt copies it into a fresh slot, keeping this one
    other = table.plan([*chat[:40], 900, *range(1000, 1060)])
    assert other is not None and other.slot is not first.slot
    assert other.source is first.slot and other.reuse == 40

    # a request arriving while `other` still prefills waits for it rather than computing it twice
    twin = table.plan([*chat[:40], 900, *range(1000, 1060)])
    assert twin is not None and twin.wait and twin.source is other.slot and twin.reuse == 100
    again = table.plan(chat)
    assert again is not None and again.slot is first.slot and again.reuse == len(chat) - 1
    assert table.plan(chat) is None, "every slot is busy"


def test_score_gives_the_log_probabilities_generation_reported(engine: BatchedEngine, tiny_model: Path) -> None:
    """Scoring a reply the model wrote itself gives back the log-probability of each of
    its tokens, on both engines, alone and beside other requests."""
    prompt = ask(engine, QUESTIONS[0])
    engine.forget()
    reply = run(engine, prompt, max_tokens=12, temperature=0, ignore_eos=True, logprobs=0)
    written = [t.logprob for t in tokens_of(reply)]
    full = engine.prompt_tokens([Message("user", QUESTIONS[0])], prefill=reply.text)
    assert full[: len(prompt)] == prompt and len(full) == len(prompt) + len(written)
    engine.forget()
    cold = engine.score(full, len(prompt), threading.Event())
    assert cold == pytest.approx(written, abs=1e-3)  # the same cold computation
    # LlamaEngine runs other kernels (no flash attention, one row at a time), whose
    # rounding moves a log-probability by a few hundredths
    single = LlamaEngine(tiny_model, n_ctx=1024, n_threads=THREADS)
    assert single.score(full, len(prompt), threading.Event()) == pytest.approx(written, abs=ROUNDING)
    # four replies scored at once after one shared question: each reuses at most the
    # question, and gets one score per token of its own reply
    others = [engine.prompt_tokens([Message("user", QUESTIONS[0])], prefill=f" {word} is the answer.")
              for word in ("Cats", "Dogs", "Nothing")]  # fmt: skip
    scores: list[list[float]] = [[] for _ in range(4)]
    jobs = [full, *others]

    def score(i: int) -> Answer:
        scores[i] = engine.score(jobs[i], len(prompt), threading.Event())
        return Answer()

    together(*(lambda i=i: score(i) for i in range(4)))
    assert [len(s) for s in scores] == [len(j) - len(prompt) for j in jobs]
    assert scores[0] == pytest.approx(written, abs=ROUNDING)
    assert all(x <= 0 for s in scores for x in s)
    with pytest.raises(InvalidRequest):
        engine.score(prompt, len(prompt), threading.Event())  # nothing to score
