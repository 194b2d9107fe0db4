"""Small edits modes make to a request's messages."""

from __future__ import annotations

from dataclasses import replace

from ponder.types import ChatRequest, Message


def with_system(chat: ChatRequest, text: str) -> ChatRequest:
    """Put `text` before the request's own system prompt (or add one)."""
    msgs = list(chat.messages)
    if msgs and msgs[0].role in ("system", "developer"):
        msgs[0] = replace(msgs[0], content=f"{text}\n\n{msgs[0].content}")
    else:
        msgs.insert(0, Message("system", text))
    return replace(chat, messages=tuple(msgs))


def with_user_note(chat: ChatRequest, text: str) -> ChatRequest:
    """Append `text` to the last user message: small models heed it there far more
    than in a system prompt."""
    msgs = list(chat.messages)
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i].role == "user":
            msgs[i] = replace(msgs[i], content=f"{msgs[i].content}\n\n{text}")
            return replace(chat, messages=tuple(msgs))
    return chat
