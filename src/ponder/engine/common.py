"""What the llama.cpp engines share: the chat template, the context check, the
sampling defaults and prefix matching.

Pure functions and one small class over llama-cpp-python's Jinja2 formatter; they
know nothing of contexts, batches or threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from ponder.errors import ContextLengthExceeded, InvalidRequest
from ponder.types import Message, SamplingParams

# Used when a GGUF carries no chat template (rare for instruct models).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ChatTemplate:
    def __init__(self, template: str | None, eos_token: str, bos_token: str):
        self._formatter = Jinja2ChatFormatter(template=template or CHATML, eos_token=eos_token, bos_token=bos_token)

    def render(self, messages: Sequence[Message], prefill: str = "") -> tuple[str, bool]:
        """The prompt text, ending with `prefill` (the start of the reply, which the model
        continues), and whether the tokenizer must add a BOS token to it."""
        as_dicts: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        try:
            rendered = self._formatter(messages=as_dicts)
        except Exception as e:  # a template's own raise_exception(), e.g. role order
            raise InvalidRequest(f"the model's chat template rejected the messages: {e}", param="messages") from e
        return rendered.prompt + prefill, not rendered.added_special


def check_fits(n_ctx: int, n_prompt: int, max_tokens: int | None) -> None:
    wanted = n_prompt + (max_tokens or 0)
    if n_prompt >= n_ctx or wanted > n_ctx:
        extra = f" + {max_tokens} max_tokens" if max_tokens else ""
        raise ContextLengthExceeded(
            f"this model's context is {n_ctx} tokens, but the request needs "
            f"{n_prompt} prompt tokens{extra}. Shorten the messages or lower max_tokens.",
            param="messages",
        )


def with_defaults(params: SamplingParams, defaults: SamplingParams) -> SamplingParams:
    """`params`, with the engine's default temperature and top_p where the request set none."""
    return replace(
        params,
        temperature=params.temperature if params.temperature is not None else defaults.temperature,
        top_p=params.top_p if params.top_p is not None else defaults.top_p,
    )


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
