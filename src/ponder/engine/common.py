"""What the llama.cpp engines share: the chat template, the context check, the
sampling defaults, the end-of-generation tokens and prefix matching.

Pure functions and one small class over llama-cpp-python's Jinja2 formatter; they
know nothing of contexts, batches or threads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from ponder.errors import ContextLengthExceeded, InvalidRequest
from ponder.formats import openai, toolcalls
from ponder.types import Message, SamplingParams, TokenLogprob, Tool

# Used when a GGUF carries no chat template (rare for instruct models).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ChatTemplate:
    def __init__(self, template: str | None, eos_token: str, bos_token: str):
        self.source = template or CHATML
        self._formatter = Jinja2ChatFormatter(template=self.source, eos_token=eos_token, bos_token=bos_token)
        self.knows_tools = toolcalls.template_knows_tools(template)
        self.tool_family = toolcalls.family_of(template)

    def render(self, messages: Sequence[Message], prefill: str = "", tools: Sequence[Tool] = ()) -> tuple[str, bool]:
        """The prompt text, ending with `prefill` (the start of the reply, which the model
        continues), and whether the tokenizer must add a BOS token to it.

        With `tools`, a template that knows tools gets them (and tool turns) natively;
        any other is taught the Hermes format in its system prompt, with tool turns as text."""
        if tools and not self.knows_tools:
            messages = _tools_as_text(messages, tools)
            tools = ()
        as_dicts: list[Any] = [openai.message_json(m, parsed=True) for m in messages]
        listed: Any = [openai.tool_json(t) for t in tools] or None
        try:
            rendered = self._formatter(messages=as_dicts, tools=listed)
        except Exception as e:  # a template's own raise_exception(), e.g. role order
            raise InvalidRequest(f"the model's chat template rejected the messages: {e}", param="messages") from e
        return rendered.prompt + prefill, not rendered.added_special


def _tools_as_text(messages: Sequence[Message], tools: Sequence[Tool]) -> list[Message]:
    """Tools in the system prompt, calls and results as Hermes-style text."""
    out = list(messages)
    guide = toolcalls.system_prompt(tools)
    if out and out[0].role in ("system", "developer"):
        out[0] = replace(out[0], content=f"{out[0].content}\n\n{guide}")
    else:
        out.insert(0, Message("system", guide))
    for i, m in enumerate(out):
        if m.tool_calls:
            calls = "".join(f"\n<tool_call>\n{json.dumps(openai.call_json(c, parsed=True)['function'])}\n</tool_call>"
                            for c in m.tool_calls)  # fmt: skip
            out[i] = Message("assistant", (m.content + calls).strip())
        elif m.role == "tool":
            out[i] = Message("user", f"<tool_response>\n{m.content}\n</tool_response>")
    return out


def check_fits(n_ctx: int, n_prompt: int, max_tokens: int | None) -> None:
    wanted = n_prompt + (max_tokens or 0)
    if n_prompt >= n_ctx or wanted > n_ctx:
        extra = f" + {max_tokens} max_tokens" if max_tokens else ""
        raise ContextLengthExceeded(
            f"this model's context is {n_ctx} tokens, but the request needs "
            f"{n_prompt} prompt tokens{extra}. Shorten the messages or lower max_tokens.",
            param="messages",
        )


def check_score(tokens: Sequence[int], start: int, n_vocab: int) -> None:
    """A scoring request needs a context before the scored tokens, at least one to
    score, and only token ids the vocabulary has."""
    if not 0 < start < len(tokens):
        raise InvalidRequest("nothing to score: the continuation is empty, or there is no context before it")
    if any(t < 0 or t >= n_vocab for t in tokens):
        raise InvalidRequest("the prompt holds a token id outside the vocabulary", param="messages")


def with_defaults(params: SamplingParams, defaults: SamplingParams) -> SamplingParams:
    """`params`, with the engine's default temperature and top_p where the request set none."""
    return replace(
        params,
        temperature=params.temperature if params.temperature is not None else defaults.temperature,
        top_p=params.top_p if params.top_p is not None else defaults.top_p,
    )


def eog_tokens(vocab: llama_cpp.llama_vocab_p) -> tuple[int, ...]:
    """Every token that ends a generation (EOS, EOT, `<|im_end|>`, …): what `ignore_eos`
    keeps the sampler from picking. One pass over the vocabulary (tens of milliseconds)."""
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    return tuple(t for t in range(n) if llama_cpp.llama_vocab_is_eog(vocab, t))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def log_softmax(logits: Any, n_vocab: int) -> npt.NDArray[np.float64]:
    """The log-probabilities of a raw logits row (a ctypes float pointer)."""
    row = np.ctypeslib.as_array(logits, shape=(n_vocab,)).astype(np.float64)
    peak = row.max()
    return row - (peak + np.log(np.exp(row - peak).sum()))


class LogprobTracker:
    """Logprobs of generated tokens, handed out with the text they became (a stop
    sequence may hold text back for a while; the tokens wait with it)."""

    def __init__(self, n_vocab: int, top: int | None, piece: Callable[[int], bytes]):
        self.n_vocab, self.top, self.piece = n_vocab, top, piece
        self._pending: list[TokenLogprob] = []

    def add(self, logits: Any, token: int) -> None:
        """Record `token`, sampled from the raw `logits` row (a ctypes float pointer)."""
        if self.top is None:
            return
        row = log_softmax(logits, self.n_vocab)
        alternatives: tuple[tuple[str, float], ...] = ()
        if self.top:
            idx = np.argpartition(row, -self.top)[-self.top :]
            idx = idx[np.argsort(-row[idx])]
            alternatives = tuple((self._text(int(i)), float(row[i])) for i in idx)
        self._pending.append(TokenLogprob(self._text(token), float(row[token]), alternatives))

    def take(self) -> tuple[TokenLogprob, ...]:
        out, self._pending = tuple(self._pending), []
        return out

    def _text(self, token: int) -> str:
        return self.piece(token).decode("utf-8", errors="replace")
