"""One request inside the batched scheduler: its sampler, its text and its finish.

A `Job` is what a caller's thread hands over and waits on. A `Seq` is that job
while it holds a slot: the prompt tokens it still has to prefill, the token it
sampled last (fed back on the next step), a native llama.cpp sampler chain, and
the same text handling as `LlamaEngine` (an incremental UTF-8 decoder, then
`StopMatcher`). It knows nothing of batches or the KV cache; the scheduler
decides where its tokens go.
"""

from __future__ import annotations

import codecs
import ctypes
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import llama_cpp

from ponder.engine.common import LogprobTracker, eog_tokens, log_softmax
from ponder.engine.slots import Plan, Slot
from ponder.formats import structured
from ponder.formats.stops import StopMatcher
from ponder.types import Done, Event, FinishReason, SamplingParams, TextDelta, Usage

# The sampler settings LlamaEngine uses through Llama.generate, so that a seeded
# request samples the same tokens on either engine.
TOP_K = 40
MIN_P = 0.05
PENALTY_LAST_N = 64


@dataclass(eq=False)
class Job:
    tokens: list[int]
    params: SamplingParams  # already merged with the engine's defaults
    cancel: threading.Event
    emit: Callable[[Event], None]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    # Scoring instead of generating: the log-probability of each prompt token from
    # this index on, given the tokens before it, is appended to `scores`; nothing is sampled.
    score_from: int | None = None
    scores: list[float] = field(default_factory=list)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class Vocab:
    """Token pieces and end-of-generation checks, cached per token id."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p):
        self.ptr = vocab
        self.n_tokens = llama_cpp.llama_vocab_n_tokens(vocab)
        self._pieces: dict[int, bytes] = {}
        self._buf = ctypes.create_string_buffer(256)

    def piece(self, token: int) -> bytes:
        if (cached := self._pieces.get(token)) is None:
            n = llama_cpp.llama_token_to_piece(self.ptr, token, self._buf, len(self._buf), 0, False)
            if n < 0:  # longer than the buffer: grow it once and retry
                self._buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.ptr, token, self._buf, len(self._buf), 0, False)
            cached = self._pieces[token] = self._buf.raw[:n]
        return cached

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.ptr, token))

    @cached_property
    def never_end(self) -> ctypes.Array[llama_cpp.llama_logit_bias]:
        """A logit bias of -inf on every end-of-generation token (`ignore_eos`)."""
        eog = eog_tokens(self.ptr)
        return (llama_cpp.llama_logit_bias * len(eog))(*(llama_cpp.llama_logit_bias(t, -math.inf) for t in eog))


def make_sampler(p: SamplingParams, vocab: Vocab) -> llama_cpp.llama_sampler_p:
    """A native sampler chain: the response_format grammar (or, for `ignore_eos`, a
    logit bias of -inf on end-of-generation tokens), penalties, then greedy at
    temperature 0, else top-k / typical / top-p / min-p / temperature / a seeded draw.
    The grammar goes first, over the whole vocabulary, so it never runs out of tokens
    that the cut-offs after it left."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: llama_cpp.llama_sampler_p) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    grammar = p.grammar or (structured.gbnf(p.response_format) if p.response_format is not None else None)
    if grammar:
        add(llama_cpp.llama_sampler_init_grammar(vocab.ptr, grammar.encode(), b"root"))
    elif p.ignore_eos:  # under a grammar, its end is the reply's end: it may allow nothing else
        bias = vocab.never_end
        add(llama_cpp.llama_sampler_init_logit_bias(vocab.n_tokens, len(bias), bias))
    if p.frequency_penalty or p.presence_penalty:
        add(llama_cpp.llama_sampler_init_penalties(
            vocab.n_tokens, PENALTY_LAST_N, 1.0, p.frequency_penalty or 0.0, p.presence_penalty or 0.0))  # fmt: skip
    temp = p.temperature if p.temperature is not None else 0.7
    if temp == 0:
        add(llama_cpp.llama_sampler_init_greedy())
        return chain
    add(llama_cpp.llama_sampler_init_top_k(TOP_K))
    add(llama_cpp.llama_sampler_init_typical(1.0, 1))
    add(llama_cpp.llama_sampler_init_top_p(p.top_p if p.top_p is not None else 0.95, 1))
    add(llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
    add(llama_cpp.llama_sampler_init_temp(temp))
    add(llama_cpp.llama_sampler_init_dist(p.seed if p.seed is not None else random.getrandbits(31)))
    return chain


class Seq:
    def __init__(self, job: Job, plan: Plan, vocab: Vocab, n_ctx: int):
        self.job = job
        self.slot: Slot = plan.slot
        self.wait: Plan | None = plan if plan.wait else None  # a shared prefix still being prefilled
        self.pending: list[int] = []  # prompt tokens not yet in the KV cache
        self.chunk = 0  # how many of them the current batch holds
        self.next_token: int | None = None  # sampled, to be fed on the next step
        self.cached = 0
        self.n = 0
        self.budget = min(job.params.max_tokens or n_ctx, n_ctx - len(job.tokens))
        self.finished = False
        self.error: Exception | None = None  # raised in the caller's thread
        self._vocab = vocab
        self._sampler: llama_cpp.llama_sampler_p | None = make_sampler(job.params, vocab)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopMatcher(job.params.stop)
        self._logprobs = LogprobTracker(vocab.n_tokens, job.params.logprobs, vocab.piece)

    def start(self, reused: int) -> None:
        """The first `reused` prompt tokens are in the slot's cache; prefill the rest."""
        self.cached = reused
        self.pending = self.job.tokens[reused:]
        self.wait = None

    def sample(self, ctx: llama_cpp.llama_context_p, row: int) -> None:
        """Sample from batch row `row`'s logits; emit the token's text, or finish."""
        token = llama_cpp.llama_sampler_sample(self._sampler, ctx, row)
        if self._logprobs.top is not None and not self._vocab.is_eog(token):
            self._logprobs.add(llama_cpp.llama_get_logits_ith(ctx, row), token)  # the raw logits, not the sampler's
        if self.job.cancel.is_set():
            return self.finish("cancelled")
        if self._vocab.is_eog(token):
            return self.finish("stop")
        self.n += 1
        text = self._stops.feed(self._decoder.decode(self._vocab.piece(token)))
        if text:
            self.job.emit(TextDelta(text, self._logprobs.take()))
        if self._stops.stopped:
            return self.finish("stop")
        if self.n >= self.budget:
            return self.finish("length")
        self.next_token = token
        return None

    def score(self, ctx: llama_cpp.llama_context_p, row: int, token: int) -> None:
        """Record the log-probability of `token` under batch row `row`'s logits (the position before it)."""
        self.job.scores.append(
            float(log_softmax(llama_cpp.llama_get_logits_ith(ctx, row), self._vocab.n_tokens)[token])
        )

    @property
    def scored(self) -> bool:
        """A scoring job whose prompt is all in the cache: it has every score it asked for."""
        return self.job.score_from is not None and not self.pending and self.wait is None

    def finish(self, reason: FinishReason) -> None:
        """Emit held-back text and the one Done event. Idempotent."""
        if self.finished:
            return
        self.finished = True
        self.next_token = None
        stops = self._stops
        tail = stops.flush() if stops.stopped else stops.feed(self._decoder.decode(b"", final=True)) + stops.flush()
        if tail:
            self.job.emit(TextDelta(tail, self._logprobs.take()))
        usage = Usage(prompt_tokens=len(self.job.tokens), completion_tokens=self.n, cached_tokens=self.cached)
        self.job.emit(Done(reason, usage))

    def free(self) -> None:
        if self._sampler is not None:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None
