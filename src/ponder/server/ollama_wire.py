"""Ollama's API on the wire: the request schemas of /api/chat, /api/generate, /api/show,
/api/pull and /api/embed, their reading into a `ChatRequest`, and events back into
Ollama's NDJSON lines or one JSON object. The only code that knows those shapes (the
routes are `ollama.py`).

Read as Ollama documents it: `messages` (system, user, assistant, tool turns; `images`
as base64, their type told by their first bytes; an assistant's `tool_calls` with
arguments as an object; a tool turn's `tool_name`), or /api/generate's `prompt`,
`system` and `images`; `tools` in OpenAI's function shape (and Ponder's server-side
tools by `type`, as in the other dialects); `format` ("json" or a JSON schema);
`options` (temperature, top_p, seed, stop, num_predict, the penalties; num_ctx, top_k
and the rest of Ollama's are accepted and ignored, as is `keep_alive`); `think` chooses
the mode (true: Thinking; false: Instant; "low" | "medium" | "high": Thinking at that
effort; absent: the configured default), unless Ponder's own `mode` field names one.
Earlier turns' thinking is dropped. What Ollama does with a model's own prompt
template (`raw`, `template`, `suffix`, `context`) Ponder cannot, and refuses.

Out: the reasoning in `thinking`, the answer in `content` (/api/generate: `response`),
each tool call in `tool_calls`; the last line (or the one object) has `done: true`,
`done_reason` ("stop" or "length") and Ollama's counts and durations in nanoseconds.
Ollama has no shape for server-side tool runs or Contemplating's progress: they are
left out. No `context` comes back (Ponder keeps no token history between calls).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from ponder.config import ModeName
from ponder.errors import InvalidRequest, PonderError, Unsupported, invalid_value
from ponder.formats import structured
from ponder.media import parts
from ponder.server.messages_wire import tool_use_json
from ponder.server.protocol import BASE64, JSON_SCHEMA, Contemplation, HostedToolDef, ToolDef, WireRequest, tool_def
from ponder.types import (
    ChatRequest,
    Completion,
    Done,
    Event,
    Media,
    Message,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallEvent,
    Usage,
)

# Ponder's embeddings (`ponder.embeddings`) are this one model's, whatever model serves chat.
EMBEDDER = "multilingual-e5-small"
# Every model here reads images (those it cannot see are read to it), calls tools and thinks (a mode).
CAPABILITIES = ["completion", "tools", "thinking", "vision"]
_IMAGES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
    b"BM": "image/bmp",
    b"II*\x00": "image/tiff",
    b"MM\x00*": "image/tiff",
}
FORMAT: dict[str, Any] = {"anyOf": [{"enum": ["", "json"]}, JSON_SCHEMA, {"type": "null"}]}
Image = Annotated[str, WithJsonSchema(BASE64)]


class Options(BaseModel):
    """The options Ponder honours, typed; Ollama's others are accepted and ignored."""

    model_config = ConfigDict(strict=True, extra="allow")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: list[str] | None = None
    num_predict: int | None = Field(default=None, ge=-2)  # -1: no limit; -2: to the context's end; 0: unset
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    num_ctx: int | None = Field(default=None, ge=1)  # the server's context size holds
    top_k: int | None = Field(default=None, ge=0)


class Function(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class OllamaToolCall(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    id: str | None = None
    function: Function


class OllamaMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[Image] | None = None
    tool_calls: list[OllamaToolCall] | None = None  # assistant
    tool_name: str | None = None  # tool: the tool whose result this is
    tool_call_id: str | None = None  # tool: the call it answers, where the client kept its id
    thinking: str | None = None  # an earlier answer's reasoning: dropped


class _Request(WireRequest):
    """What /api/chat and /api/generate share."""

    model: str = Field(min_length=1)
    stream: bool = True
    format: Annotated[str | dict[str, Any] | None, WithJsonSchema(FORMAT)] = None
    options: Options | None = None
    keep_alive: float | str | None = None
    think: bool | Literal["low", "medium", "high"] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # Ponder's own
    mode: ModeName | None = None
    thought_compression: bool | None = None
    contemplation: Contemplation | None = None

    def chosen_mode(self) -> tuple[str | None, str | None]:
        """(mode, effort): `think` as Ollama means it, unless `mode` names one."""
        effort = self.think if isinstance(self.think, str) else None
        if self.mode is not None:
            return self.mode, effort
        if self.think is None:
            return None, None
        return ("thinking", effort) if self.think is not False else ("instant", None)

    def params(self) -> SamplingParams:
        o = self.options or Options()
        return SamplingParams(
            max_tokens=o.num_predict if o.num_predict and o.num_predict > 0 else None,
            temperature=o.temperature,
            top_p=o.top_p,
            seed=o.seed,
            stop=tuple(o.stop or ()),
            frequency_penalty=o.frequency_penalty,
            presence_penalty=o.presence_penalty,
            response_format=self._format(),
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
        )

    def _format(self) -> Mapping[str, Any] | None:
        f = self.format
        if not f:
            return None
        if f == "json":
            return {"type": "json_object"}
        if isinstance(f, str):
            raise invalid_value("format", 'use "json" or a JSON schema')
        problem = structured.schema_problem(f)
        if problem is not None:
            raise InvalidRequest(f"Invalid JSON schema in 'format': {problem}", param="format", code="invalid_value")
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": f}}


class ChatBody(_Request):
    messages: list[OllamaMessage] = Field(default_factory=list)  # none: load the model, answer nothing
    tools: list[ToolDef | HostedToolDef] | None = None

    def hosted_tools(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, t.model_dump()) for i, t in enumerate(self.tools or []) if isinstance(t, HostedToolDef)]

    def functions(self) -> list[str]:
        return [t.function.name for t in self.tools or [] if isinstance(t, ToolDef)]

    def to_internal(self, model: str, hosted: tuple[Tool, ...] = ()) -> ChatRequest:
        tools = (
            tuple(
                tool_def(i, t.function.name, t.function.description, t.function.parameters)
                for i, t in enumerate(self.tools or [])
                if isinstance(t, ToolDef)
            )
            + hosted
        )
        return ChatRequest(model, _turns(self.messages), self.params(), tools=tools)


class GenerateBody(_Request):
    prompt: str | None = None  # none: load the model, answer nothing
    system: str | None = None
    images: list[Image] | None = None
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None

    def to_internal(self, model: str, hosted: tuple[Tool, ...] = ()) -> ChatRequest:
        for name in ("suffix", "template", "context", "raw"):
            if getattr(self, name):
                raise Unsupported(
                    f"'{name}' is not supported: Ponder formats every prompt with the model's own "
                    "chat template and keeps no token context; send messages to /api/chat for "
                    "a conversation",
                    param=name,
                )
        media = tuple(_image(b, f"images.{i}") for i, b in enumerate(self.images or []))
        system = [Message("system", self.system)] if self.system else []
        turns = (*system, Message("user", self.prompt or "", media=media))
        return ChatRequest(model, turns, self.params(), tools=hosted)


class ModelBody(WireRequest):
    """/api/show and /api/pull: the model by `model` (or `name`, as older clients send it)."""

    model: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)
    stream: bool = True
    insecure: bool | None = None
    verbose: bool | None = None

    @property
    def wanted(self) -> str:
        if wanted := self.model or self.name:
            return wanted
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")


class EmbedBody(WireRequest):
    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool | None = None
    dimensions: int | None = Field(default=None, ge=1)
    options: Options | None = None
    keep_alive: float | str | None = None


def _turns(messages: list[OllamaMessage]) -> tuple[Message, ...]:
    """Ollama's turns as internal ones. Ollama's tool calls need no ids: a call without
    one gets one here, and a tool turn answers the first call not yet answered of its
    `tool_name` (or the first not yet answered)."""
    out: list[Message] = []
    waiting: list[ToolCall] = []
    for i, m in enumerate(messages):
        at = f"messages.{i}"
        if m.images and m.role != "user":
            raise invalid_value(f"{at}.images", "images go in user messages")
        if m.tool_calls and m.role != "assistant":
            raise invalid_value(f"{at}.tool_calls", "tool calls go in assistant messages")
        if m.role == "tool":
            out.append(Message("tool", m.content or "", tool_call_id=_answered(m, waiting, i)))
            continue
        calls = tuple(
            ToolCall(c.id or f"call_{i}_{j}", c.function.name, json.dumps(c.function.arguments))
            for j, c in enumerate(m.tool_calls or [])
        )
        waiting = list(calls)  # what the tool turns that follow answer
        media = tuple(_image(b, f"{at}.images.{j}") for j, b in enumerate(m.images or []))
        out.append(Message(m.role, m.content or "", tool_calls=calls, media=media))
    return tuple(out)


def _answered(m: OllamaMessage, waiting: list[ToolCall], index: int) -> str:
    for call in waiting:
        if m.tool_call_id == call.id or (m.tool_call_id is None and m.tool_name in (None, call.name)):
            waiting.remove(call)
            return call.id
    return m.tool_call_id or f"call_{index}"


def _image(data: str, param: str) -> Media:
    """A base64 image (or a data URL, which some clients send), its type read from its first bytes."""
    raw = parts.data_url(data, param)[1] if data.startswith("data:") else parts.b64(data, param)
    mime = next((t for magic, t in _IMAGES.items() if raw.startswith(magic)), "")
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        mime = "image/webp"
    if not mime:
        raise invalid_value(param, "an image is base64 PNG, JPEG, GIF, WEBP, BMP or TIFF")
    return Media("image", raw, mime, param=param)


# --- out ---------------------------------------------------------------------------


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def stamp(seconds: float) -> str:
    """A file time (seconds since the epoch) as Ollama writes times."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def error_json(e: PonderError) -> dict[str, Any]:
    """Ollama's error: one message, which names the field at fault where it does not already."""
    where = f" (at '{e.param}')" if e.param and e.param not in e.message else ""
    return {"error": e.message + where}


def model_json(name: str, size: int, digest: str, modified: float, fmt: str, family: str = "") -> dict[str, Any]:
    """A model as /api/tags lists it. What Ollama reads from a GGUF's header (family,
    parameter size, quantization) Ponder does not know, and leaves empty."""
    details = {
        "parent_model": "",
        "format": fmt,
        "family": family,
        "families": [family] if family else None,
        "parameter_size": "",
        "quantization_level": "",
    }
    return {
        "name": name,
        "model": name,
        "modified_at": stamp(modified),
        "size": size,
        "digest": digest,
        "details": details,
    }


@dataclass
class Clock:
    """A request's times (monotonic ns): begun, its model ready, its first event."""

    start: int = field(default_factory=time.monotonic_ns)
    loaded: int = 0
    first: int = 0

    def stats(self, usage: Usage) -> dict[str, int]:
        end = time.monotonic_ns()
        loaded, first = self.loaded or self.start, self.first or end
        return {
            "total_duration": end - self.start,
            "load_duration": loaded - self.start,
            "prompt_eval_count": usage.prompt_tokens,
            "prompt_eval_duration": first - loaded,
            "eval_count": usage.completion_tokens,
            "eval_duration": end - first,
        }


class Reply:
    """One answer in Ollama's shape: a line per event as they come (`line`), or the
    whole of it (`whole`). `chat`: /api/chat's `message`; otherwise /api/generate's
    `response`."""

    def __init__(self, model: str, chat: bool, clock: Clock):
        self.model, self.chat, self.clock = model, chat, clock
        self._calls = 0

    def loaded(self) -> dict[str, Any]:
        """The answer to a request with nothing to answer: the model is ready."""
        return {**self._piece(""), "done": True, "done_reason": "load"}

    def line(self, event: Event) -> str:
        if isinstance(event, TextDelta):
            body = self._piece(event.text, logprobs=event.logprobs)
        elif isinstance(event, ReasoningDelta):
            body = self._piece("", thinking=event.text)
        elif isinstance(event, ToolCallEvent):
            body = self._piece("", calls=[event.call])
        elif isinstance(event, Done):
            body = self._done(self._piece(""), event.finish_reason, event.usage)
        else:  # server-side tool runs and agents' progress: Ollama has no shape for them
            return ""
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n"

    def whole(self, c: Completion) -> dict[str, Any]:
        return self._done(self._piece(c.text, c.reasoning, c.tool_calls, c.logprobs), c.finish_reason, c.usage)

    def error(self, e: PonderError) -> str:
        return json.dumps(error_json(e), ensure_ascii=False) + "\n"

    def _piece(
        self,
        text: str,
        thinking: str = "",
        calls: list[ToolCall] | None = None,
        logprobs: tuple[TokenLogprob, ...] | list[TokenLogprob] = (),
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "created_at": now()}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = [self._call(c) for c in calls]
            out["message"] = message
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        if logprobs:
            out["logprobs"] = [_logprob(lp) for lp in logprobs]
        return {**out, "done": False}

    def _call(self, call: ToolCall) -> dict[str, Any]:
        self._calls += 1
        return {
            "id": call.id,
            "function": {"index": self._calls - 1, "name": call.name, "arguments": tool_use_json(call)["input"]},
        }

    def _done(self, body: dict[str, Any], finish: str, usage: Usage) -> dict[str, Any]:
        reason = "length" if finish == "length" else "stop"  # a tool call ends a turn as "stop", as Ollama's do
        return {**body, "done": True, "done_reason": reason, **self.clock.stats(usage)}


def _logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {"token": lp.token, "logprob": lp.logprob, "top_logprobs": [{"token": t, "logprob": x} for t, x in lp.top]}
