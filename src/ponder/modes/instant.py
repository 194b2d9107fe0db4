"""Instant: a direct answer, no reasoning phase.

A native reasoning model may think anyway; its reasoning is dropped, not shown."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.formats.reasoning import ThinkSplitter
from ponder.modes.messages import with_user_note
from ponder.modes.prompts import load
from ponder.types import ChatRequest, Done, Event, TextDelta, ToolCallEvent


async def instant(backend: Backend, chat: ChatRequest) -> AsyncGenerator[Event, None]:
    splitter = ThinkSplitter()
    calling = bool(chat.tools) and chat.tool_choice != "none"  # a turn that may call tools is no direct answer
    asked = chat if calling else with_user_note(chat, load("instant")["user_note"])
    asked = replace(asked, thinking=0)  # a hybrid model (Qwen3) behind an engine that can switches thinking off
    async with aclosing(backend.stream(asked)) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                _, answer = splitter.feed(event.text)
                if answer:
                    yield event if answer == event.text else TextDelta(answer)  # keeps the logprobs
            elif isinstance(event, ToolCallEvent):
                yield event
            elif isinstance(event, Done):
                _, answer = splitter.flush()
                if answer:
                    yield TextDelta(answer)
                yield event
