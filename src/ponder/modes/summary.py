"""Reasoning summaries, as the Responses API's `reasoning: {"summary": ...}` asks.

Once a run's reasoning is complete (at the first event after it), one more short
call asks the model to summarise it, and its text comes out as `SummaryDelta`s
before the run goes on to its answer. The summary's tokens count as output tokens.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Literal, TypeVar, cast

from ponder.backends.base import Backend
from ponder.modes.prompts import load, render
from ponder.types import AgentEvent, ChatRequest, Done, Message, ReasoningDelta, SamplingParams, TextDelta

Detail = Literal["auto", "concise", "detailed"]
E = TypeVar("E")


@dataclass(frozen=True)
class SummaryDelta:
    text: str


async def with_summary(
    events: AsyncIterator[E], backend: Backend, chat: ChatRequest, detail: Detail
) -> AsyncGenerator[E | SummaryDelta, None]:
    """`events` as they come, with the summary's deltas after the reasoning."""
    reasoning: list[str] = []
    extra = 0  # the summary's tokens
    async for event in events:
        if isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif reasoning and not isinstance(event, AgentEvent):
            async with aclosing(summarise(backend, chat, "".join(reasoning), detail)) as summary:
                async for part in summary:
                    if isinstance(part, Done):
                        extra += part.usage.completion_tokens
                    else:
                        yield part
            reasoning = []
        if isinstance(event, Done):
            usage = event.usage
            yield cast(E, replace(event, usage=replace(usage, completion_tokens=usage.completion_tokens + extra)))
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
    async with aclosing(backend.stream(call)) as events:
        async for event in events:
            if isinstance(event, TextDelta) and event.text:
                yield SummaryDelta(event.text)
            elif isinstance(event, Done):
                yield event
