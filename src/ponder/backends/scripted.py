"""A scripted backend for tests of everything above the engine.

Replies are queued with `enqueue` and served in order: a string (streamed word by
word, one word = one token), a list of events, or an exception to raise. With
nothing queued it asks `respond(request)` if one was given (for concurrent callers,
whose order is not fixed), and otherwise echoes the last user message, which makes
it a usable `backend = "scripted"` model for end-to-end plumbing too. Every request
it receives is kept in `requests`; `max_active` records the most it served at once.
With `score`, it can score replies (`Backend.score`): `score(request)` gives the
log-probabilities of `request.prefill`'s tokens.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import replace

from ponder.backends.base import Backend, Capabilities
from ponder.formats import openai, toolcalls
from ponder.formats.stops import StopMatcher
from ponder.types import ChatRequest, Done, Event, FinishReason, Message, ReasoningDelta, TextDelta, Tool, Usage

Script = str | Sequence[Event] | BaseException


class ScriptedBackend(Backend):
    capabilities = Capabilities(native_reasoning=True, prefill=True)

    def __init__(
        self,
        *replies: Script,
        respond: Callable[[ChatRequest], Script] | None = None,
        delay: float = 0.0,
        score: Callable[[ChatRequest], Sequence[float]] | None = None,
    ):
        self.replies: deque[Script] = deque(replies)
        self._score = score
        if score is not None:
            self.capabilities = replace(self.capabilities, scoring=True)
        self.respond = respond
        self.requests: list[ChatRequest] = []
        self.delay = delay
        self.active = 0
        self.max_active = 0

    def enqueue(self, *replies: Script) -> None:
        self.replies.extend(replies)

    @property
    def busy(self) -> int:
        return self.active

    @property
    def capacity(self) -> int:
        return 64

    async def score(self, request: ChatRequest) -> tuple[float, ...]:
        if self._score is None:
            return await super().score(request)
        self.requests.append(request)
        return tuple(self._score(request))

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> int:
        """Words, as in the replies; a tool counts the words of its JSON definition."""
        return _count(messages) + sum(len(json.dumps(openai.tool_json(t)).split()) for t in tools)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """Like a model, tool calls in a reply are parsed out (Hermes format) when the
        request has tools."""
        events = self._stream(request)
        if request.tools and request.tool_choice != "none":
            events = toolcalls.split_calls(events, "hermes", request.tools)
        async with aclosing(events):
            async for event in events:
                yield event

    async def _stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        self.requests.append(request)
        if self.replies:
            script = self.replies.popleft()
        else:
            script = self.respond(request) if self.respond else _echo(request)
        if isinstance(script, BaseException):
            raise script
        events = list(_words(script)) if isinstance(script, str) else list(script)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            async for event in self._play(events, request):
                yield event
        finally:
            self.active -= 1

    async def _play(self, events: list[Event], request: ChatRequest) -> AsyncGenerator[Event, None]:
        stops = StopMatcher(request.params.stop)
        limit = request.params.max_tokens
        n_text = n_reason = 0
        finish: FinishReason = "stop"
        for event in events:
            if isinstance(event, Done):
                yield event
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            if isinstance(event, ReasoningDelta):
                n_reason += 1
                yield event
            elif isinstance(event, TextDelta):
                n_text += 1
                if text := stops.feed(event.text):
                    yield event if text == event.text else TextDelta(text)
                if stops.stopped:
                    break
            if limit is not None and n_text + n_reason >= limit:  # as engines do: the limit is "length"
                finish = "length"
                break
        if tail := stops.flush():
            yield TextDelta(tail)
        yield Done(finish, Usage(_count(request.messages), n_text + n_reason, reasoning_tokens=n_reason))


def _count(messages: Sequence[Message]) -> int:
    """One word is one token, as in the replies."""
    return sum(len(m.content.split()) for m in messages)


def _words(text: str) -> list[Event]:
    return [TextDelta(w) for w in re.findall(r"\s*\S+|\s+", text)]


def _echo(request: ChatRequest) -> str:
    users = [m.content for m in request.messages if m.role == "user"]
    return users[-1] if users else ""
