"""Instant: the model's own direct answer, as the bare model gives it.

The request goes to the model as the client sent it: no system prompt of ours and no
instruction about the answer's form. Asked to "give just the answer, no working", the
default model scored half what it scores bare on GSM8K (docs/modes.md), so Instant
adds nothing that changes what the model would say; it only makes it safe to show:

- a native reasoning model is asked not to think (an engine that can switch it off),
  and any `<think>` block it writes anyway is dropped;
- a loop (the same lines over and over) is cut where it starts, so no answer runs
  on to the context limit (`modes.watch`);
- `\\boxed{…}` wrappers are taken off the answer (`formats.clean`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.formats.clean import AnswerCleaner
from ponder.formats.reasoning import ThinkSplitter
from ponder.modes.watch import Watch, watched
from ponder.types import ChatRequest, Done, Event, TextDelta, ToolCallEvent


async def instant(
    backend: Backend, chat: ChatRequest, watch: Watch | None = None, clean_answer: bool = True
) -> AsyncGenerator[Event, None]:
    """`watch`: the caller's, to read the answer's confidence from; `clean_answer=False`
    leaves `\\boxed{}` in (for a caller that reads the answer before showing it)."""
    watch = watch if watch is not None else Watch()
    structured = chat.params.response_format is not None or chat.params.grammar is not None
    watch.loops = not structured  # a cut would break the grammar's syntax
    splitter = ThinkSplitter()
    cleaner = AnswerCleaner(restate=not structured) if clean_answer else None  # (no line added to JSON)
    asked = replace(chat, thinking=0)  # a hybrid model (Qwen3) behind an engine that can switches thinking off
    async for event in watched(backend.stream(asked), watch):
        if isinstance(event, TextDelta):
            _, answer = splitter.feed(event.text)
            shown = cleaner.feed(answer) if cleaner else answer
            if shown or event.logprobs:
                yield TextDelta(shown, event.logprobs)
        elif isinstance(event, ToolCallEvent):
            yield event
        elif isinstance(event, Done):
            _, answer = splitter.flush()
            shown = cleaner.feed(answer) + cleaner.flush() if cleaner else answer
            if shown:
                yield TextDelta(shown)
            yield event
