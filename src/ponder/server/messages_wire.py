"""Anthropic's Messages API on the wire: the request schema, its reading into a
`ChatRequest`, and events back into a message or its SSE stream. The only code that
knows those shapes (the routes are `messages.py`).

Read as Anthropic documents it: `system` (a string or text blocks), `messages` of
text, image (base64 or URL), document (a PDF or plain text), tool_use and
tool_result blocks; `max_tokens` (required), `stop_sequences`, `temperature`,
`top_p`, `tools` and `tool_choice`, `output_config` (its `effort`, and a JSON
schema as `format`); `thinking` chooses the mode (enabled: Thinking with
`budget_tokens` as its budget; disabled: Instant; adaptive or absent: the
configured default), unless Ponder's own `mode` field names one. Earlier turns' thinking blocks
are dropped, as Anthropic drops them. Server tools of Anthropic's own
(`web_search_…`) are refused by name; Ponder's server-side tools
(`{"type": "calculator"}`, …) work as in the other dialects.

Out: the reasoning as a `thinking` block (with an empty signature: nothing here
signs it), the answer as a `text` block, each tool call as a `tool_use` block.
Streams follow Anthropic's sequence (message_start, content_block_start / delta /
stop per block, message_delta with the stop reason and usage, message_stop), with
`ping` events that also carry Ponder's progress (agents, tool runs) in a `ponder`
field, which Anthropic's clients skip. The engines here do not say whether a
reply ended at a stop sequence or at the model's own end, so both are "end_turn"
and `stop_sequence` stays null.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from ponder.config import TOOL_KINDS, EffortName, ModeName
from ponder.errors import InvalidRequest, PonderError, Unsupported, invalid_value
from ponder.formats import structured
from ponder.media import parts
from ponder.server.encode import ponder_json, progress_json, run_json
from ponder.server.protocol import BASE64, JSON_SCHEMA, TOOL_NAME, Contemplation, WireRequest, tool_def
from ponder.types import (
    NO_USAGE,
    AgentEvent,
    ChatRequest,
    Completion,
    Done,
    Event,
    Media,
    Message,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallEvent,
    ToolChoice,
    ToolRun,
    Usage,
)

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Ponder's server-side tools, named by type as in the other dialects
HOSTED = TOOL_KINDS

# The shapes content blocks take, for the OpenAPI schema: validation is the code's (`_blocks`).
_SOURCE: dict[str, Any] = {"type": "object", "required": ["type"], "properties": {
    "type": {"enum": ["base64", "url", "text"]}, "media_type": {"type": "string"}, "data": BASE64,
    "url": {"type": "string"}}}  # fmt: skip
BLOCKS: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object",
    "required": ["type"], "properties": {
        "type": {"enum": ["text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"]},
        "text": {"type": "string"}, "source": _SOURCE, "id": {"type": "string"}, "name": {"type": "string"},
        "input": {"type": "object"}, "tool_use_id": {"type": "string"}, "is_error": {"type": "boolean"},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}}}}]}  # fmt: skip


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["user", "assistant"]
    content: Annotated[str | list[dict[str, Any]], WithJsonSchema(BLOCKS)]


class TextBlock(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["text"]
    text: str


class AnthropicTool(BaseModel):
    """A client tool ({name, description, input_schema}), or a server-side one by `type`."""

    model_config = ConfigDict(strict=True, extra="allow")
    type: str | None = None
    name: str | None = None
    description: str | None = None
    input_schema: Annotated[dict[str, Any] | None, WithJsonSchema({"anyOf": [JSON_SCHEMA, {"type": "null"}]})] = None


class AnthropicToolChoice(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=1)


class OutputFormat(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    effort: EffortName | None = None
    format: OutputFormat | None = None


class MessagesRequest(WireRequest):
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    thinking: ThinkingConfig | None = None
    metadata: dict[str, Any] | None = None
    output_config: OutputConfig | None = None
    # Ponder's own (through the SDK's extra_body)
    mode: ModeName | None = None
    thought_compression: bool | None = None
    contemplation: Contemplation | None = None
    seed: int | None = None

    def chosen_mode(self) -> tuple[str | None, int | None]:
        """(mode, thinking budget) from `mode`, else from `thinking`."""
        t = self.thinking
        budget = t.budget_tokens if t and t.type == "enabled" else None
        if t and t.type == "enabled" and budget is None:
            raise InvalidRequest("Missing required parameter: 'thinking.budget_tokens'.",
                                 param="thinking.budget_tokens", code="missing_required_parameter")  # fmt: skip
        if self.mode is not None:
            return self.mode, budget
        if t is None or t.type == "adaptive":
            return None, None
        return ("thinking", budget) if t.type == "enabled" else ("instant", None)

    def hosted_tools(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, t.model_dump(exclude_none=True)) for i, t in enumerate(self.tools or []) if t.type in HOSTED]

    @property
    def effort(self) -> str | None:
        return self.output_config.effort if self.output_config else None

    def to_internal(self, hosted: tuple[Tool, ...] = ()) -> ChatRequest:
        shape = self.output_config.format if self.output_config else None
        wanted = {"type": "json_schema", "json_schema": {"name": "output", "schema": shape.schema_}} if shape else None
        params = SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                                seed=self.seed, stop=tuple(self.stop_sequences or ()),
                                response_format=structured.check(wanted, "output_config.format"))  # fmt: skip
        messages: list[Message] = []
        if self.system:
            text = self.system if isinstance(self.system, str) else "\n\n".join(b.text for b in self.system)
            messages.append(Message("system", text))
        for i, m in enumerate(self.messages):
            messages += _turn(i, m)
        tools = self._tools() + hosted
        choice, name, parallel = self._choice(tools)
        return ChatRequest(self.model, tuple(messages), params, tools=tools, tool_choice=choice, tool_name=name,
                           parallel_tool_calls=parallel)  # fmt: skip

    def _tools(self) -> tuple[Tool, ...]:
        out = []
        for i, t in enumerate(self.tools or []):
            if t.type in HOSTED:
                continue
            if t.type not in (None, "custom"):
                raise Unsupported(f"tools of type {t.type!r} are Anthropic's own server tools, which Ponder does not "
                                  f"run; Ponder's are {', '.join(HOSTED)}", param=f"tools.{i}.type")  # fmt: skip
            if t.name is None:
                raise InvalidRequest("Missing required parameter: 'name'.", param=f"tools.{i}.name",
                                     code="missing_required_parameter")  # fmt: skip
            if not _valid_name(t.name):
                raise invalid_value(f"tools.{i}.name", "a tool name is 1-64 letters, digits, _ or -")
            if t.input_schema is None:
                raise InvalidRequest("Missing required parameter: 'input_schema'.", param=f"tools.{i}.input_schema",
                                     code="missing_required_parameter")  # fmt: skip
            out.append(tool_def(i, t.name, t.description, t.input_schema, param=f"tools.{i}.input_schema"))
        return tuple(out)

    def _choice(self, tools: tuple[Tool, ...]) -> tuple[ToolChoice, str | None, bool]:
        c = self.tool_choice
        if c is None:
            return "auto", None, True
        parallel = not c.disable_parallel_tool_use
        if c.type in ("any", "tool") and not tools:
            raise invalid_value("tool_choice", "it needs tools to choose from")
        if c.type == "tool":
            if c.name not in {t.name for t in tools}:
                raise invalid_value("tool_choice.name", f"{c.name!r} is not among the tools")
            return "required", c.name, parallel
        return {"auto": "auto", "any": "required", "none": "none"}[c.type], None, parallel  # type: ignore[return-value]


def _valid_name(name: str) -> bool:
    return re.match(TOOL_NAME, name) is not None


def _turn(index: int, m: AnthropicMessage) -> list[Message]:
    """One wire message as internal ones: tool results become tool messages (first,
    in order), the rest one message of the turn's role."""
    where = f"messages.{index}.content"
    if isinstance(m.content, str):
        return [Message(m.role, m.content)]
    out: list[Message] = []
    texts: list[str] = []
    media: list[Media] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(m.content):
        at = f"{where}.{j}"
        kind = block.get("type")
        if kind == "text":
            texts.append(_str(block, "text", at))
        elif kind in ("image", "document"):
            if m.role != "user":
                raise invalid_value(at, f"{kind} blocks go in user messages")
            media.append(_media(kind, block.get("source"), block, f"{at}.source"))
        elif kind == "tool_use":
            if m.role != "assistant":
                raise invalid_value(at, "tool_use blocks go in assistant messages")
            args = block.get("input", {})
            if not isinstance(args, dict):
                raise invalid_value(f"{at}.input", "a tool call's input is an object")
            calls.append(ToolCall(_str(block, "id", at), _str(block, "name", at), json.dumps(args)))
        elif kind == "tool_result":
            if m.role != "user":
                raise invalid_value(at, "tool_result blocks go in user messages")
            out.append(Message("tool", _result_text(block, at), tool_call_id=_str(block, "tool_use_id", at)))
        elif kind in ("thinking", "redacted_thinking"):
            continue  # an earlier turn's reasoning: not context, as Anthropic's models take it
        else:
            raise invalid_value(f"{at}.type", f"unknown content block type {kind!r}")
    if texts or media or calls or not out:
        out.append(Message(m.role, "\n\n".join(texts), tool_calls=tuple(calls), media=tuple(media)))
    return out


def _str(block: dict[str, Any], field: str, at: str) -> str:
    value = block.get(field)
    if not isinstance(value, str):
        raise InvalidRequest(f"Missing required parameter: '{field}'." if value is None else
                             f"Invalid value for '{at}.{field}': a string.", param=f"{at}.{field}",
                             code="missing_required_parameter" if value is None else "invalid_value")  # fmt: skip
    return value


def _result_text(block: dict[str, Any], at: str) -> str:
    content = block.get("content", "")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        if any(not isinstance(b, dict) or b.get("type") != "text" for b in content):
            raise Unsupported("tool results carry text here (an image in a tool result is not supported)",
                              param=f"{at}.content")  # fmt: skip
        text = "\n\n".join(_str(b, "text", f"{at}.content") for b in content)
    else:
        raise invalid_value(f"{at}.content", "a string or text blocks")
    return f"Error: {text}" if block.get("is_error") else text


def _media(kind: str, source: Any, block: dict[str, Any], at: str) -> Media:
    if not isinstance(source, dict):
        raise InvalidRequest("Missing required parameter: 'source'.", param=at, code="missing_required_parameter")
    stype = source.get("type")
    if stype == "url":
        url = source.get("url")
        if kind == "document":
            raise Unsupported("documents by URL are not supported: send the PDF as base64", param=f"{at}.url")
        return parts.image(url, f"{at}.url")
    if kind == "document" and stype == "text":
        return Media("file", _str(source, "data", at).encode(), "text/plain", name=str(block.get("title") or ""),
                     param=at)  # fmt: skip
    if stype != "base64":
        raise invalid_value(f"{at}.type", f"{kind} sources here are base64{', text' if kind == 'document' else ''} "
                            "or url")  # fmt: skip
    mime = _str(source, "media_type", at)
    data = parts.b64(_str(source, "data", at), f"{at}.data")
    if kind == "image":
        if mime not in IMAGE_TYPES:
            raise invalid_value(f"{at}.media_type", f"an image is one of {', '.join(IMAGE_TYPES)}")
        return Media("image", data, mime, param=at)
    if mime != "application/pdf":
        raise invalid_value(f"{at}.media_type", "a base64 document is application/pdf")
    return Media("file", data, mime, name=str(block.get("title") or "document.pdf"), param=at)


# --- out ---------------------------------------------------------------------------


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def stop_reason(finish: str) -> str:
    return {"length": "max_tokens", "tool_calls": "tool_use"}.get(finish, "end_turn")


def usage_json(u: Usage) -> dict[str, Any]:
    return {"input_tokens": u.prompt_tokens - u.cached_tokens, "output_tokens": u.completion_tokens,
            "cache_read_input_tokens": u.cached_tokens, "cache_creation_input_tokens": 0}  # fmt: skip


def tool_use_json(call: ToolCall) -> dict[str, Any]:
    try:
        args = json.loads(call.arguments) if call.arguments.strip() else {}
    except json.JSONDecodeError:
        args = {"_raw": call.arguments}  # what the model wrote, where it did not write JSON
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": args if isinstance(args, dict) else
            {"value": args}}  # fmt: skip


def message_json(model: str, c: Completion, mode: str, id: str = "") -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if c.reasoning:
        content.append({"type": "thinking", "thinking": c.reasoning, "signature": ""})
    if c.text.strip() or not c.tool_calls:
        content.append({"type": "text", "text": c.text})
    content += [tool_use_json(call) for call in c.tool_calls]
    progress = [progress_json(e) for e in c.progress] + [run_json(r) for r in c.tool_runs]
    return {"id": id or message_id(), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason(c.finish_reason), "stop_sequence": None,
            "usage": usage_json(c.usage), "ponder": ponder_json(mode, progress)}  # fmt: skip


def error_json(e: PonderError) -> dict[str, Any]:
    """An error in Anthropic's shape (with Ponder's `param`, which its clients ignore)."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
            503: "overloaded_error", 504: "timeout_error"}.get(e.status, "api_error")  # fmt: skip
    error: dict[str, Any] = {"type": kind, "message": e.message}
    if e.param:
        error["param"] = e.param
    return {"type": "error", "error": error}


class StreamEncoder:
    """One request's events as Anthropic's SSE events, in order: a block is opened
    when its kind of content starts and closed when another starts."""

    def __init__(self, model: str, mode: str, id: str = ""):
        self.model, self.mode = model, mode
        self.id = id or message_id()
        self._index = -1
        self._open: str | None = None  # the kind of the open block: thinking | text
        self._usage = NO_USAGE

    def start(self) -> str:
        message: dict[str, Any] = {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                                   "content": [], "stop_reason": None, "stop_sequence": None,
                                   "usage": usage_json(NO_USAGE)}  # fmt: skip
        start = _sse("message_start", {"type": "message_start", "message": message})
        return start + self._ping({"type": "mode", "mode": self.mode})

    def event(self, event: Event) -> str:
        if isinstance(event, TextDelta):
            return self._delta("text", {"type": "text_delta", "text": event.text}) if event.text else ""
        if isinstance(event, ReasoningDelta):
            return self._delta("thinking", {"type": "thinking_delta", "thinking": event.text}) if event.text else ""
        if isinstance(event, ToolCallEvent):
            use = tool_use_json(event.call)
            out = self._close()
            self._index += 1
            out += _sse("content_block_start", {"type": "content_block_start", "index": self._index,
                                                "content_block": {**use, "input": {}}})  # fmt: skip
            out += _sse("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                                "delta": {"type": "input_json_delta",
                                                          "partial_json": json.dumps(use["input"])}})  # fmt: skip
            return out + _sse("content_block_stop", {"type": "content_block_stop", "index": self._index})
        if isinstance(event, AgentEvent):
            return self._ping(progress_json(event))
        if isinstance(event, ToolRun):
            return self._ping(run_json(event))
        if isinstance(event, Done):
            self._usage += event.usage
            out = self._close()
            if self._index < 0:  # an empty answer is still one (empty) text block
                out += self._open_block("text") + self._close()
            delta = {"stop_reason": stop_reason(event.finish_reason), "stop_sequence": None}
            out += _sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage_json(self._usage)})
            return out + _sse("message_stop", {"type": "message_stop"})
        raise TypeError(f"no wire form for {event!r}")

    def error(self, e: PonderError) -> str:
        return _sse("error", error_json(e))

    def _delta(self, kind: str, delta: dict[str, Any]) -> str:
        out = "" if self._open == kind else self._close() + self._open_block(kind)
        return out + _sse("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _open_block(self, kind: str) -> str:
        self._index += 1
        self._open = kind
        block = {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": "",
                                                                      "signature": ""}  # fmt: skip
        return _sse("content_block_start", {"type": "content_block_start", "index": self._index,
                                            "content_block": block})  # fmt: skip

    def _close(self) -> str:
        if self._open is None:
            return ""
        out = ""
        if self._open == "thinking":
            out = _sse("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                               "delta": {"type": "signature_delta", "signature": ""}})  # fmt: skip
        self._open = None
        return out + _sse("content_block_stop", {"type": "content_block_stop", "index": self._index})

    @staticmethod
    def _ping(ponder: dict[str, Any]) -> str:
        return _sse("ping", {"type": "ping", "ponder": ponder})


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"
