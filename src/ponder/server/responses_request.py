"""The Responses API's request side: the request body, its input items (checked,
then turned into messages) and its tools.

Text goes in (input_text / output_text, and reasoning items), and in user messages
images, audio and files (input_image / input_audio / input_file), with function
calls, tool searches and server-side tools' items echoed back; other content and
item types are refused by name.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from ponder.config import TOOL_KINDS, EffortName, ModeName
from ponder.errors import InvalidRequest, Unsupported, invalid_value
from ponder.formats import structured
from ponder.media import parts as parts_of
from ponder.server import tool_search
from ponder.server.protocol import (
    AUDIO_IN,
    FILE_DATA,
    IMAGE_URL,
    JSON_SCHEMA,
    TOOL_NAME,
    Contemplation,
    NamedToolChoice,
    ToolName,
    WireRequest,
    flat_tool,
    tool_choice,
)
from ponder.tools import FUNCTION_NAMES, is_hosted, knowledge, sandbox
from ponder.types import Media, Message, Tool, ToolCall, ToolChoice

# The shapes of input items and tools, for the OpenAPI schema only: both are checked
# by the code below (see protocol's docstring).
_STR: dict[str, Any] = {"type": "string"}
_NULL: dict[str, Any] = {"type": "null"}
_TEXT_PART: dict[str, Any] = {"type": "object", "required": ["type", "text"], "properties": {
    "type": {"enum": ["input_text", "output_text"]}, "text": _STR}}  # fmt: skip
_CONTENT_PART: dict[str, Any] = {"anyOf": [
    _TEXT_PART,
    {"type": "object", "required": ["type", "image_url"], "properties": {
        "type": {"const": "input_image"}, "image_url": IMAGE_URL, "detail": {"enum": ["auto", "low", "high"]}}},
    {"type": "object", "required": ["type", "input_audio"],
     "properties": {"type": {"const": "input_audio"}, "input_audio": AUDIO_IN}},
    {"type": "object", "required": ["type", "file_data"],
     "properties": {"type": {"const": "input_file"}, "file_data": FILE_DATA, "filename": _STR}},
]}  # fmt: skip
_INPUT_ITEM: dict[str, Any] = {"anyOf": [
    {"type": "object", "required": ["role", "content"], "properties": {
        "type": {"const": "message"}, "role": {"enum": ["user", "system", "developer", "assistant"]},
        "content": {"anyOf": [_STR, {"type": "array", "items": _CONTENT_PART}]}}},
    {"type": "object", "required": ["type", "call_id", "name", "arguments"], "properties": {
        "type": {"const": "function_call"}, "call_id": _STR, "name": _STR, "arguments": _STR}},
    {"type": "object", "required": ["type", "call_id", "output"], "properties": {
        "type": {"const": "function_call_output"}, "call_id": _STR,
        "output": {"anyOf": [_STR, {"type": "array", "items": _TEXT_PART}]}}},
    {"type": "object", "required": ["type"], "properties": {
        "type": {"const": "reasoning"}, "summary": {"type": "array"}}},
    {"type": "object", "required": ["type", "call_id"], "properties": {
        "type": {"enum": ["tool_search_call", "tool_search_output"]}, "call_id": _STR,
        "execution": {"enum": ["server", "client"]}, "arguments": {"type": "object"}, "tools": {"type": "array"}}},
    {"type": "object", "required": ["type"], "properties": {
        "type": {"enum": ["mcp_call", "file_search_call", "code_interpreter_call"]}, "id": _STR, "name": _STR,
        "arguments": _STR, "output": _STR, "queries": {"type": "array", "items": _STR}, "code": _STR,
        "results": {"type": "array", "items": {"type": "object"}}, "outputs": {"type": "array", "items": {
            "type": "object", "properties": {"type": {"enum": ["logs", "image"]}, "logs": _STR}}}}},
]}  # fmt: skip
INPUT: dict[str, Any] = {
    "anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1, "items": _INPUT_ITEM}]
}
TOOLS: dict[str, Any] = {"anyOf": [{"type": "array", "items": {"anyOf": [
    {"type": "object", "required": ["type", "name"], "properties": {
        "type": {"const": "function"}, "name": {"type": "string", "pattern": TOOL_NAME}, "description": _STR,
        "parameters": JSON_SCHEMA, "strict": {"type": "boolean"}, "defer_loading": {"type": "boolean"}}},
    {"type": "object", "required": ["type"], "properties": {"type": {"enum": [*TOOL_KINDS, "tool_search"]}}},
]}}, {"type": "null"}]}  # fmt: skip
TEXT_FORMAT: dict[str, Any] = {"anyOf": [
    {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
    {"type": "object", "required": ["type", "name", "schema"], "properties": {
        "type": {"const": "json_schema"}, "name": _STR, "schema": JSON_SCHEMA, "strict": {"type": "boolean"}}},
    {"type": "null"},
]}  # fmt: skip


class Reasoning(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    effort: EffortName | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: Annotated[dict[str, Any] | None, WithJsonSchema(TEXT_FORMAT)] = None


class ResponsesRequest(WireRequest):
    model: str = Field(min_length=1)
    input: Annotated[str | list[dict[str, Any]], WithJsonSchema(INPUT)] = Field(min_length=1)
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    reasoning: Reasoning | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    tools: Annotated[list[dict[str, Any]] | None, WithJsonSchema(TOOLS)] = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextFormat | None = None
    # Ponder's modes, as in Chat Completions.
    mode: ModeName | None = None
    thinking_budget: int | None = Field(default=None, ge=0)
    thought_compression: bool | None = None
    contemplation: Contemplation | None = None
    seed: int | None = None

    def response_format(self) -> Any:
        """`text.format`, in Chat Completions' shape (the Responses one is flat)."""
        fmt = dict((self.text.format or {}) if self.text else {})
        if fmt.get("type") == "json_schema":
            fmt = {"type": "json_schema", "json_schema": {k: v for k, v in fmt.items() if k != "type"}}
        return structured.check(fmt or None, param="text.format")


class TokenCountRequest(WireRequest):
    model: str | None = None
    tools: Annotated[list[dict[str, Any]] | None, WithJsonSchema(TOOLS)] = None
    input: Annotated[str | list[dict[str, Any]] | None, WithJsonSchema({"anyOf": [*INPUT["anyOf"], _NULL]})] = None
    instructions: str | None = None
    previous_response_id: str | None = None


# --- input -> messages ---------------------------------------------------------------

_ROLES = ("user", "system", "developer", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")


def input_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's input as stored input items (each with an id), checked."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for i, item in enumerate(value):
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            raise invalid_value(f"input.{i}.type", "an item's type is a string, such as 'message'")
        if not isinstance(item.get("id") or "", str):
            raise invalid_value(f"input.{i}.id", "an item's id is a string")
        if kind == "reasoning":  # reasoning echoed back from an earlier turn: accepted, not replayed
            continue
        if kind in ("function_call", "function_call_output"):
            items.append(_tool_item(i, kind, item))
            continue
        if kind in ("tool_search_call", "tool_search_output"):
            items.append(_search_item(i, kind, item))
            continue
        if kind in _RUN_ITEMS:  # a server-side tool's call echoed back: replayed as the call and its result
            items.append(_run_input(i, kind, item))
            continue
        if kind != "message":
            raise Unsupported(f"input items of type {kind!r} are not supported yet", param=f"input.{i}.type")
        role = item.get("role")
        if role not in _ROLES:
            raise invalid_value(f"input.{i}.role", f"use one of {', '.join(_ROLES)}")
        items.append({"id": item.get("id") or item_id("msg"), "type": "message", "role": role,
                      "content": _parts(i, item.get("content"), role), "status": "completed"})  # fmt: skip
    if not items:
        raise invalid_value("input", "it holds no message")
    return items


def _parts(i: int, content: Any, role: str) -> list[dict[str, Any]]:
    kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        return [{"type": kind, "text": content}]
    if not isinstance(content, list):
        raise invalid_value(f"input.{i}.content", "give a string or a list of content parts")
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid_value(f"input.{i}.content.{j}", "each content part is an object with a type")
        if part["type"] in parts_of.RESPONSES_KINDS and role == "user":
            parts_of.responses_part(part, f"input.{i}.content.{j}")  # checked now, read again by messages_of
            parts.append(dict(part))
            continue
        if part["type"] not in _TEXT_PARTS:
            raise Unsupported(f"content parts of type {part['type']!r} are not supported by this model",
                              param=f"input.{i}.content.{j}")  # fmt: skip
        if not isinstance(part.get("text"), str):
            raise invalid_value(f"input.{i}.content.{j}.text", "a text part needs its text")
        parts.append({"type": kind, "text": part["text"]})
    return parts


def _tool_item(i: int, kind: str, item: dict[str, Any]) -> dict[str, Any]:
    fields = ("call_id", "name", "arguments") if kind == "function_call" else ("call_id", "output")
    if kind == "function_call_output" and isinstance(item.get("output"), list):  # content parts: text only
        parts = item["output"]
        if not all(isinstance(p, dict) and p.get("type") in _TEXT_PARTS for p in parts):
            raise Unsupported("only text parts are supported in a function_call_output", param=f"input.{i}.output")
        item = {**item, "output": "".join(str(p.get("text", "")) for p in parts)}
    for f in fields:
        if not isinstance(item.get(f), str):
            raise InvalidRequest(f"Missing required parameter: 'input.{i}.{f}'.", param=f"input.{i}.{f}",
                                 code="missing_required_parameter")  # fmt: skip
    prefix = "fc" if kind == "function_call" else "fco"
    out = {"id": item.get("id") or item_id(prefix), "type": kind, **{f: item[f] for f in fields}}
    return {**out, "status": "completed"}


def _search_item(i: int, kind: str, item: dict[str, Any]) -> dict[str, Any]:
    """A tool search echoed back, or a client's answer to one (the tools it loads)."""
    if not isinstance(item.get("call_id"), str):
        raise InvalidRequest(f"Missing required parameter: 'input.{i}.call_id'.", param=f"input.{i}.call_id",
                             code="missing_required_parameter")  # fmt: skip
    execution = item.get("execution") or "server"
    if execution not in ("server", "client"):
        raise invalid_value(f"input.{i}.execution", "use 'server' or 'client'")
    out = {"id": item.get("id") or item_id("tsc" if kind == "tool_search_call" else "tso"), "type": kind,
           "call_id": item["call_id"], "execution": execution, "status": "completed"}  # fmt: skip
    if kind == "tool_search_call":
        return {**out, "arguments": item.get("arguments", {})}
    tools = item.get("tools")
    if not isinstance(tools, list):
        raise invalid_value(f"input.{i}.tools", "a tool_search_output lists the tools it loads")
    for j, t in enumerate(tools):
        flat_tool(j, t, f"input.{i}.tools")
    return {**out, "tools": tools}


_RUN_ITEMS = {"mcp_call": ("name", "arguments"), "file_search_call": ("queries",), "code_interpreter_call": ("code",)}


def _run_input(i: int, kind: str, item: dict[str, Any]) -> dict[str, Any]:
    """An echoed `mcp_call` / `file_search_call` / `code_interpreter_call`, checked."""
    for f in _RUN_ITEMS[kind]:
        ok = isinstance(item.get(f), list if f == "queries" else str)
        if not ok:
            raise InvalidRequest(f"Missing required parameter: 'input.{i}.{f}'.", param=f"input.{i}.{f}",
                                 code="missing_required_parameter")  # fmt: skip
    return {**item, "id": item.get("id") or item_id("tc")}


def _run_turn(it: dict[str, Any]) -> tuple[ToolCall, Message]:
    """The call and the result an echoed server-side tool item stands for."""
    kind, call_id = it["type"], it["id"]
    if kind == "mcp_call":
        call = ToolCall(call_id, it["name"], it["arguments"])
        return call, Message("tool", str(it.get("output") or it.get("error") or ""), tool_call_id=call_id)
    if kind == "file_search_call":
        call = ToolCall(call_id, knowledge.NAME, json.dumps({"query": " ".join(map(str, it["queries"]))}))
        found = [{**r, "attributes": r.get("attributes") if isinstance(r.get("attributes"), dict) else {}}
                 for r in _listed(it.get("results"))]  # fmt: skip
        return call, Message("tool", knowledge.shown(found), tool_call_id=call_id)
    call = ToolCall(call_id, sandbox.NAME, json.dumps({"code": it["code"]}))
    logs = "".join(o["logs"] for o in _listed(it.get("outputs")) if isinstance(o.get("logs"), str))
    return call, Message("tool", logs, tool_call_id=call_id)


def _listed(value: Any) -> list[dict[str, Any]]:
    """The objects in an echoed item's list (results, outputs); anything else is passed over."""
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def messages_of(items: list[dict[str, Any]]) -> list[Message]:
    """Input items as messages; consecutive calls become one assistant turn."""
    out: list[Message] = []
    for i, it in enumerate(items):
        if it["type"] in _RUN_ITEMS:
            call, result = _run_turn(it)
            out += [Message("assistant", "", tool_calls=(call,)), result]
            continue
        if it["type"] in ("function_call", "tool_search_call"):
            if it["type"] == "function_call":
                call = ToolCall(it["call_id"], it["name"], it["arguments"])
            else:
                call = ToolCall(it["call_id"], tool_search.SEARCH, json.dumps(it["arguments"], ensure_ascii=False))
            if out and out[-1].role == "assistant":  # one assistant turn: its text, then its calls
                out[-1] = replace(out[-1], tool_calls=(*out[-1].tool_calls, call))
            else:
                out.append(Message("assistant", "", tool_calls=(call,)))
        elif it["type"] == "function_call_output":
            out.append(Message("tool", it["output"], tool_call_id=it["call_id"]))
        elif it["type"] == "tool_search_output":
            out.append(tool_search.result_message(it["call_id"], it["tools"]))
        else:
            content = it["content"]
            media = tuple(parts_of.responses_part(p, f"input.{i}.content.{j}") for j, p in enumerate(content)
                          if p["type"] in parts_of.RESPONSES_KINDS)  # fmt: skip
            text = "".join(p["text"] for p in content if p["type"] not in parts_of.RESPONSES_KINDS)
            out.append(Message(it["role"], text, media=media))
    return out


def message_json(m: Message) -> dict[str, Any]:
    """A message as stored history."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.media:  # images or audio a native backend took as they were
        out["media"] = [{"kind": x.kind, "mime": x.mime, "name": x.name, "data": base64.b64encode(x.data).decode()}
                        for x in m.media]  # fmt: skip
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


def message_of(d: dict[str, Any]) -> Message:
    calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in d.get("tool_calls", []))
    media = tuple(Media(x["kind"], base64.b64decode(x["data"]), x["mime"], x["name"]) for x in d.get("media", []))
    return Message(d["role"], d["content"], tool_calls=calls, tool_call_id=d.get("tool_call_id"), media=media)


def tools_of(
    req: ResponsesRequest, messages: Sequence[Message], hosted: tuple[Tool, ...] = ()
) -> tuple[tool_search.ToolSet, ToolChoice, str | None]:
    """The request's tools (flat-shaped; some deferred behind tool_search, and loaded
    by searches earlier in `messages`), tool_choice and forced tool name."""
    tools = tool_search.tool_set(function_tools(req.tools)).loaded_by(messages)
    choice: str | NamedToolChoice | None = None
    if isinstance(req.tool_choice, dict):  # {"type": "function", "name": …} flat, or {"type": "tool_search"}
        kind = req.tool_choice.get("type")
        named = {tool_search.SEARCH: tool_search.SEARCH, **FUNCTION_NAMES}
        name = (named.get(kind) if isinstance(kind, str) else None) or req.tool_choice.get("name")
        choice = NamedToolChoice(type="function", function=ToolName(name=str(name)))
    else:
        choice = req.tool_choice
    kind, name = tool_choice(choice, tools.prompt_tools() + hosted)
    return tools, kind, name


def function_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The request's tools but the server-side ones (see `ponder.tools`)."""
    return [t for t in tools or [] if not is_hosted(t)]


def hosted_entries(tools: list[dict[str, Any]] | None) -> list[tuple[int, dict[str, Any]]]:
    return [(i, t) for i, t in enumerate(tools or []) if is_hosted(t)]


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"
