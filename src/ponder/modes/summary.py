"""Reasoning summaries, as the Responses API's `reasoning: {"summary": ...}` asks.

Once a run's reasoning is complete (at the first event after it), one more short
call asks the model to summarise it, and its text comes out as `SummaryDelta`s
before the run goes on to its answer. The call is an Instant one (a native
reasoning model's thinking is dropped); its prompt and output tokens are added to
the run's usage. It is not held to `max_output_tokens`: its own cap is small.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Literal, TypeVar, cast

from ponder.backends.base import Backend
from ponder.modes.instant import instant
from ponder.modes.prompts import load, render
from ponder.types import (
    NO_USAGE,
    AgentEvent,
    ChatRequest,
    Done,
    Message,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    Usage,
)

Detail = Literal["auto", "concise", "detailed"]
E = TypeVar("E")


@dataclass(frozen=True)
class SummaryDelta:
    text: str


async def with_summary(
    events: AsyncGenerator[E, None], backend: Backend, chat: ChatRequest, detail: Detail
) -> AsyncGenerator[E | SummaryDelta, None]:
    """`events` as they come, with the summary's deltas after the reasoning."""
    reasoning: list[str] = []
    extra = NO_USAGE  # the summary call's
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if isinstance(event, ReasoningDelta):
                reasoning.append(event.text)
            elif reasoning and not isinstance(event, AgentEvent):
                async with aclosing(summarise(backend, chat, "".join(reasoning), detail)) as summary:
                    async for part in summary:
                        if isinstance(part, Done):
                            extra += part.usage
                        else:
                            yield part
                reasoning = []
            if isinstance(event, Done):
                spent = Usage(extra.prompt_tokens, extra.completion_tokens)  # the summary is output, not reasoning
                yield cast(E, replace(event, usage=event.usage + spent))
            else:
                yield event


async def summarise(
    backend: Backend, chat: ChatRequest, reasoning: str, detail: Detail
) -> AsyncGenerator[SummaryDelta | Done, None]:
    prompts = load("summary")
    request = next((m.content for m in reversed(chat.messages) if m.role == "user"), "")
    ask = render(prompts["ask"], request=request, reasoning=reasoning.strip(), length=prompts["length"][detail])
    params = SamplingParams(max_tokens=prompts["max_tokens"][detail], temperature=0.0, seed=chat.params.seed)
    call = ChatRequest(chat.model, (Message("user", ask),), params)
    async with aclosing(instant(backend, call)) as events:
        async for event in events:
            if isinstance(event, TextDelta) and event.text:
                yield SummaryDelta(event.text)
            elif isinstance(event, Done):
                yield event
