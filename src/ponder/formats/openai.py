"""OpenAI's Chat Completions shapes of messages, tools and tool calls, built in one
place. Remote engines take them on the wire, chat templates take the same dicts
(with a call's arguments parsed, since templates format them themselves), the
encoder streams calls in them, and the Hermes prompt lists tools in them."""

from __future__ import annotations

import base64
import json
from typing import Any

from ponder.types import Media, Message, Tool, ToolCall


def tool_json(t: Tool) -> dict[str, Any]:
    return {"type": "function", "function": {"name": t.name, "description": t.description,
                                             "parameters": dict(t.parameters)}}  # fmt: skip


def call_json(c: ToolCall, index: int | None = None, parsed: bool = False) -> dict[str, Any]:
    """A call (with its `index` in a stream delta; its arguments as an object with `parsed`)."""
    args: Any = _parsed(c.arguments) if parsed else c.arguments
    out = {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": args}}
    return out if index is None else {"index": index, **out}


def message_json(m: Message, *, parsed: bool = False) -> dict[str, Any]:
    """A message; media a backend takes natively become content parts before the text.
    `parsed`: a call's arguments as an object (what chat templates take)."""
    content: str | list[dict[str, Any]] = m.content
    if m.media:
        content = [media_part(x) for x in m.media] + ([{"type": "text", "text": m.content}] if m.content else [])
    out: dict[str, Any] = {"role": m.role, "content": content}
    if m.name:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [call_json(c, parsed=parsed) for c in m.tool_calls]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


def media_part(m: Media) -> dict[str, Any]:
    data = base64.b64encode(m.data).decode()
    if m.kind == "image":
        return {"type": "image_url", "image_url": {"url": f"data:{m.mime};base64,{data}"}}
    if m.kind == "audio":
        return {"type": "input_audio", "input_audio": {"data": data, "format": m.name.rpartition(".")[2] or "wav"}}
    return {"type": "file", "file": {"file_data": f"data:{m.mime};base64,{data}", "filename": m.name}}


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
