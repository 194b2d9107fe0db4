"""The embedded llama.cpp engine: one loaded GGUF, one generation at a time.

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
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from ponder.errors import ContextLengthExceeded, InvalidRequest
from ponder.formats.stops import StopMatcher
from ponder.types import Done, Event, FinishReason, Message, SamplingParams, TextDelta, Usage

# Used when a GGUF carries no chat template (rare for instruct models).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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
        self._formatter = Jinja2ChatFormatter(
            template=self.llm.metadata.get("tokenizer.chat_template", CHATML),
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    # 1. messages -> prompt tokens ------------------------------------------------

    def prompt_tokens(self, messages: Sequence[Message], prefill: str = "") -> list[int]:
        as_dicts: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        try:
            rendered = self._formatter(messages=as_dicts)
        except Exception as e:  # a template's own raise_exception(), e.g. role order
            raise InvalidRequest(f"the model's chat template rejected the messages: {e}", param="messages") from e
        text = rendered.prompt + prefill  # the reply continues from the prefill
        return self.llm.tokenize(text.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    def check_fits(self, n_prompt: int, max_tokens: int | None) -> None:
        wanted = n_prompt + (max_tokens or 0)
        if n_prompt >= self.n_ctx or wanted > self.n_ctx:
            extra = f" + {max_tokens} max_tokens" if max_tokens else ""
            raise ContextLengthExceeded(
                f"this model's context is {self.n_ctx} tokens, but the request needs "
                f"{n_prompt} prompt tokens{extra}. Shorten the messages or lower max_tokens.",
                param="messages",
            )

    # 2. decode -------------------------------------------------------------------

    def generate(
        self,
        tokens: list[int],
        params: SamplingParams,
        cancel: threading.Event,
        emit: Callable[[Event], None],
    ) -> None:
        """Decode one answer for `tokens`, emitting TextDelta events then one Done."""
        p = self._merged(params)
        llm = self.llm
        cached = _common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        cached = min(cached, len(tokens) - 1)  # the last prompt token is always re-run
        llm.set_seed(p.seed if p.seed is not None else random.getrandbits(31))
        budget = min(p.max_tokens or self.n_ctx, self.n_ctx - len(tokens))

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(p.stop)
        finish: FinishReason = "length"
        n = 0
        gen = llm.generate(tokens, **self._sampler_args(p))
        try:
            for token in gen:
                if cancel.is_set():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                n += 1
                text = stops.feed(decoder.decode(llm.detokenize([token])))
                if text:
                    emit(TextDelta(text))
                if stops.stopped:
                    finish = "stop"
                    break
                if n >= budget:
                    break
        finally:
            gen.close()
        tail = stops.flush() if stops.stopped else stops.feed(decoder.decode(b"", final=True)) + stops.flush()
        if tail:
            emit(TextDelta(tail))
        emit(Done(finish, Usage(prompt_tokens=len(tokens), completion_tokens=n, cached_tokens=max(cached, 0))))

    def _merged(self, params: SamplingParams) -> SamplingParams:
        d = self.defaults
        return SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature if params.temperature is not None else d.temperature,
            top_p=params.top_p if params.top_p is not None else d.top_p,
            seed=params.seed,
            stop=params.stop,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
        )

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


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
