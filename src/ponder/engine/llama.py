"""The simple llama.cpp engine: one loaded GGUF, one generation at a time.

Used when `n_seq_max = 1`, and as the reference the batched engine is tested and
measured against (`engine/batched.py` serves several sequences at once).

It knows how to turn messages into prompt tokens (with the chat template stored in
the GGUF) and how to decode one request token by token, emitting events through a
callback. It does not know about asyncio or HTTP: `EmbeddedBackend` runs it on its
own worker thread.

Prefix reuse: llama-cpp-python's `Llama.generate` keeps the KV cache of the tokens
it last saw and re-evaluates only the part of a new prompt after the longest common
prefix. Because a chat's next turn starts with the previous turn's prompt and
answer, a follow-up only pays for the new message.
"""

from __future__ import annotations

import codecs
import random
import threading
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from ponder.engine.common import (
    ChatTemplate,
    LogprobTracker,
    check_fits,
    check_score,
    common_prefix,
    eog_tokens,
    log_softmax,
    with_defaults,
)
from ponder.formats import structured
from ponder.formats.stops import StopMatcher
from ponder.types import Done, Event, FinishReason, Message, SamplingParams, TextDelta, Tool, Usage


class LlamaEngine:
    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        n_batch: int = 512,
        n_ubatch: int = 512,
        defaults: SamplingParams | None = None,
    ):
        self.path = path
        self.defaults = defaults or SamplingParams()
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_batch=n_batch,
            n_ubatch=n_ubatch,
            verbose=False,
        )
        self.n_ctx = self.llm.n_ctx()
        model = self.llm._model
        self._vocab = model.vocab
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        self._template = ChatTemplate(
            self.llm.metadata.get("tokenizer.chat_template"),
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    # 1. messages -> prompt tokens ------------------------------------------------

    @property
    def template(self) -> ChatTemplate:
        return self._template

    def prompt_tokens(self, messages: Sequence[Message], prefill: str = "", tools: Sequence[Tool] = ()) -> list[int]:
        """The chat template's prompt, then `prefill`: the start of the assistant's reply."""
        text, add_bos = self._template.render(messages, prefill, tools)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def check_fits(self, n_prompt: int, max_tokens: int | None) -> None:
        check_fits(self.n_ctx, n_prompt, max_tokens)

    # 2. decode -------------------------------------------------------------------

    def generate(
        self,
        tokens: list[int],
        params: SamplingParams,
        cancel: threading.Event,
        emit: Callable[[Event], None],
    ) -> None:
        """Decode one answer for `tokens`, emitting TextDelta events then one Done."""
        p = with_defaults(params, self.defaults)
        llm = self.llm
        cached = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        cached = min(cached, len(tokens) - 1)  # the last prompt token is always re-run
        llm.set_seed(p.seed if p.seed is not None else random.getrandbits(31))
        budget = min(p.max_tokens or self.n_ctx, self.n_ctx - len(tokens))

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(p.stop)
        finish: FinishReason = "length"
        n = 0
        logprobs = LogprobTracker(llm.n_vocab(), p.logprobs, lambda t: llm.detokenize([t]))
        grammar = _grammar(p)
        never_end = self._never_end() if p.ignore_eos and grammar is None else None
        gen = llm.generate(tokens, **self._sampler_args(p), grammar=grammar, logits_processor=never_end)
        try:
            for token in gen:
                if cancel.is_set():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                n += 1
                # the last decode's logits are the ones this token was sampled from
                logprobs.add(llama_cpp.llama_get_logits_ith(llm.ctx, -1), token)
                text = stops.feed(decoder.decode(llm.detokenize([token])))
                if text:
                    emit(TextDelta(text, logprobs.take()))
                if stops.stopped:
                    finish = "stop"
                    break
                if n >= budget:
                    break
        finally:
            gen.close()
        tail = stops.flush() if stops.stopped else stops.feed(decoder.decode(b"", final=True)) + stops.flush()
        if tail:
            emit(TextDelta(tail, logprobs.take()))
        emit(Done(finish, Usage(prompt_tokens=len(tokens), completion_tokens=n, cached_tokens=max(cached, 0))))

    def score(self, tokens: list[int], start: int, cancel: threading.Event) -> list[float]:
        """The log-probability of each of `tokens[start:]` given the tokens before it.
        The whole prompt is decoded afresh, with logits at the positions that score."""
        check_score(tokens, start, self.llm.n_vocab())
        self.check_fits(len(tokens), None)
        ctx, n_batch, n_vocab = self.llm.ctx, self.llm.n_batch, self.llm.n_vocab()
        scores: list[float] = []
        self.forget()  # generate() keeps its own record of what the cache holds
        batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        try:
            for first in range(0, len(tokens), n_batch):
                if cancel.is_set():
                    break
                chunk = tokens[first : first + n_batch]
                wanted = []
                for i, token in enumerate(chunk):
                    pos = first + i
                    batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.seq_id[i][0] = token, pos, 1, 0
                    batch.logits[i] = start - 1 <= pos < len(tokens) - 1
                    if batch.logits[i]:
                        wanted.append((i, tokens[pos + 1]))
                batch.n_tokens = len(chunk)
                if (rc := llama_cpp.llama_decode(ctx, batch)) != 0:
                    raise RuntimeError(f"llama_decode failed with status {rc}")
                scores += [float(log_softmax(llama_cpp.llama_get_logits_ith(ctx, i), n_vocab)[t]) for i, t in wanted]
        finally:
            llama_cpp.llama_batch_free(batch)
            self.forget()
        if len(scores) != len(tokens) - start:
            raise RuntimeError("the scoring request was cancelled")
        return scores

    def forget(self) -> None:
        """Drop the cached prompt (callers do not overlap: the backend runs one request at a time)."""
        self.llm.reset()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.llm.ctx), True)

    @cached_property
    def _eog(self) -> npt.NDArray[np.intp]:
        return np.array(eog_tokens(self._vocab), dtype=np.intp)

    def _never_end(self) -> llama_cpp.LogitsProcessorList:
        """`ignore_eos`: end-of-generation tokens get a logit of -inf, so no sampler picks them."""
        eog = self._eog

        def never_end(_ids: Any, scores: Any) -> Any:
            scores[eog] = -np.inf
            return scores

        return llama_cpp.LogitsProcessorList([never_end])

    @staticmethod
    def _sampler_args(p: SamplingParams) -> dict[str, Any]:
        return {
            "temp": p.temperature if p.temperature is not None else 0.7,
            "top_p": p.top_p if p.top_p is not None else 0.95,
            "top_k": 40,
            "min_p": 0.05,
            "repeat_penalty": 1.0,
            "frequency_penalty": p.frequency_penalty or 0.0,
            "presence_penalty": p.presence_penalty or 0.0,
        }


def _grammar(p: SamplingParams) -> llama_cpp.LlamaGrammar | None:
    text = p.grammar or (structured.gbnf(p.response_format) if p.response_format is not None else None)
    return llama_cpp.LlamaGrammar.from_string(text, verbose=False) if text else None
