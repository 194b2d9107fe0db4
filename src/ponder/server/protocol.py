"""Wire schemas for the OpenAI-compatible API (requests only; responses are built
by `encode.py`). Validation is strict about types, as OpenAI is: `"0.5"` is not a
temperature. Unknown fields are accepted and ignored, so clients that send newer
fields still work; fields Ponder cannot honour yet are refused by name.

Where a field is checked by code rather than by its type (content parts, tools, a
response_format), its OpenAPI schema still describes the shapes it takes, for the
API's readers and for the fuzzer (tests/test_fuzz_api.py); validation is the code's.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from ponder.config import EffortName, ModeName, ToolKind
from ponder.errors import InvalidRequest, Unsupported, invalid_value
from ponder.formats import structured
from ponder.media import parts
from ponder.types import ChatRequest, Media, Message, SamplingParams, Tool, ToolCall, ToolChoice

MAX_CHOICES = 16  # n: each choice is a whole run of the mode
TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # what OpenAI accepts as a function name
MAX_DEPTH = 100  # how deep a request's JSON may nest (a tool's schema nests two levels a step)
_SURROGATE = re.compile("[\ud800-\udfff]")


def plain_json(value: Any, where: str = "", depth: int = 0) -> Any:
    """A request body as JSON means it: Python's parser also reads NaN and Infinity,
    which no reply could carry back, so they are refused; a lone surrogate (half of an
    emoji a client cut in two) cannot be UTF-8, so it becomes U+FFFD, as a decoder
    would make it; and nesting is bounded, so no later step recurses past its limit."""
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        literal = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        raise InvalidRequest(f"We could not parse the JSON body of your request: {literal} is not a JSON number.",
                             param=where or None, code="invalid_json")  # fmt: skip
    if not isinstance(value, dict | list):
        return value
    if depth >= MAX_DEPTH:
        raise InvalidRequest(f"The request nests deeper than {MAX_DEPTH} levels.", param=where or None,
                             code="invalid_value")  # fmt: skip
    at = f"{where}." if where else ""
    if isinstance(value, list):
        return [plain_json(v, f"{at}{i}", depth + 1) for i, v in enumerate(value)]
    return {plain_json(k): plain_json(v, f"{at}{k}", depth + 1) for k, v in value.items()}


class WireRequest(BaseModel):
    """A request body (the top level: its parts are checked with it, by `plain_json`)."""

    model_config = ConfigDict(strict=True, extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _plain_json(cls, data: Any) -> Any:
        return plain_json(data)


def _data_url(kinds: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^data:{kinds};base64,[A-Za-z0-9+/]*={{0,2}}$"}


# The shapes a checked-by-code field takes, for the OpenAPI schema (see the module docstring).
BASE64: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$"}
IMAGE_URL = _data_url("image/(png|jpeg|gif|webp)")
AUDIO_IN: dict[str, Any] = {"type": "object", "required": ["data", "format"], "properties": {
    "data": BASE64, "format": {"enum": ["wav", "mp3", "flac", "ogg", "webm", "m4a"]}}}  # fmt: skip
FILE_DATA: dict[str, Any] = {
    "anyOf": [_data_url("(application/pdf|text/plain|text/markdown|text/csv|application/json)"), BASE64]
}
JSON_SCHEMA: dict[str, Any] = {"type": "object", "description": "A JSON schema", "properties": {
    "type": {"enum": ["object", "string", "number", "integer", "boolean", "array", "null"]},
    "properties": {"type": "object", "additionalProperties": {"type": "object"}},
    "required": {"type": "array", "items": {"type": "string"}}, "$schema": {"type": "string"},
}}  # fmt: skip
RESPONSE_FORMAT: dict[str, Any] = {"anyOf": [
    {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
    {"type": "object", "required": ["type", "json_schema"], "properties": {
        "type": {"const": "json_schema"},
        "json_schema": {"type": "object", "required": ["name", "schema"], "properties": {
            "name": {"type": "string"}, "schema": JSON_SCHEMA, "strict": {"type": "boolean"}}}}},
    {"type": "null"},
]}  # fmt: skip


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    """A media part (or a refusal): its fields are checked by `ponder.media.parts`."""

    model_config = ConfigDict(strict=True, extra="allow", json_schema_extra={"properties": {
        "type": {"enum": ["image_url", "input_audio", "file", "refusal"]},
        "image_url": {"type": "object", "required": ["url"], "properties": {
            "url": IMAGE_URL, "detail": {"enum": ["auto", "low", "high"]}}},
        "input_audio": AUDIO_IN,
        "file": {"type": "object", "properties": {"file_data": FILE_DATA, "filename": {"type": "string"}}},
        "refusal": {"type": "string"},
    }})  # fmt: skip
    type: Literal["image_url", "input_audio", "file", "refusal"]


class FunctionCall(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    name: str
    arguments: str


class ToolCallIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | OtherPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None  # assistant
    tool_call_id: str | None = None  # tool


class FunctionDef(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: Annotated[dict[str, Any] | None, WithJsonSchema({"anyOf": [JSON_SCHEMA, {"type": "null"}]})] = None
    strict: bool | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["function"]
    function: FunctionDef


class HostedToolDef(BaseModel):
    """A server-side tool (`ponder.tools`): {"type": "calculator"}, {"type": "file_search"}, …"""

    model_config = ConfigDict(strict=True, extra="allow")
    type: ToolKind


class ToolName(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["function"]
    function: ToolName


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    include_usage: bool = False


class AudioOut(BaseModel):
    """`audio` for `modalities: ["text", "audio"]`: the answer spoken, beside its text."""

    model_config = ConfigDict(strict=True, extra="allow")
    voice: str | dict[str, Any]
    format: Literal["wav", "mp3", "flac", "opus", "aac", "pcm16"]


class Contemplation(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    agents: int | None = Field(default=None, ge=1, le=16)
    agent_budget: int | None = Field(default=None, ge=1)
    strategy: Literal["auto", "attempts", "subtasks"] | None = None


class ChatCompletionRequest(WireRequest):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    # Ponder's modes (also accepted through the SDK's extra_body).
    mode: ModeName | None = None
    reasoning_effort: EffortName | None = None
    thinking_budget: int | None = Field(default=None, ge=0)
    thought_compression: bool | None = None
    contemplation: Contemplation | None = None
    tools: list[ToolDef | HostedToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: Annotated[dict[str, Any] | None, WithJsonSchema(RESPONSE_FORMAT)] = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOut | None = None
    # vLLM's and llama-server's extra field: write on past end-of-generation tokens, to max_tokens.
    ignore_eos: bool | None = None

    def spoken_turns(self) -> list[tuple[int, str]]:
        """(index, audio id) of assistant turns given as a spoken answer's audio id
        and no content, as OpenAI's clients send them back."""
        out = []
        for i, m in enumerate(self.messages):
            audio = (m.model_extra or {}).get("audio")
            if m.role == "assistant" and not m.content and isinstance(audio, dict):
                if not isinstance(audio.get("id"), str):
                    raise invalid_value(f"messages.{i}.audio.id", "give the id of a spoken answer")
                out.append((i, audio["id"]))
        return out

    def speaks(self) -> AudioOut | None:
        """The spoken answer's voice and format, when the request asks for one."""
        if "audio" not in (self.modalities or []):
            return None
        if self.audio is None:
            raise InvalidRequest("Missing required parameter: 'audio' (modalities asks for audio: give "
                                 '{"voice": …, "format": …}).', param="audio",
                                 code="missing_required_parameter")  # fmt: skip
        return self.audio

    def hosted_tools(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, t.model_dump()) for i, t in enumerate(self.tools or []) if isinstance(t, HostedToolDef)]

    def to_internal(self, hosted: tuple[Tool, ...] = ()) -> ChatRequest:
        """The request, with the functions of its server-side tools (`hosted`) offered beside its own."""
        self._refuse_unsupported()
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        params = SamplingParams(
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=tuple(stop),
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            response_format=structured.check(self.response_format),
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            ignore_eos=bool(self.ignore_eos),
        )
        messages = tuple(_message(i, m) for i, m in enumerate(self.messages))
        tools = tuple(tool_def(i, t.function.name, t.function.description, t.function.parameters)
                      for i, t in enumerate(self.tools or []) if isinstance(t, ToolDef)) + hosted  # fmt: skip
        choice, name = tool_choice(self.tool_choice, tools)
        return ChatRequest(model=self.model, messages=messages, params=params, tools=tools, tool_choice=choice,
                           tool_name=name, parallel_tool_calls=self.parallel_tool_calls is not False)  # fmt: skip

    def _refuse_unsupported(self) -> None:
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs set to true.", param="top_logprobs", code="invalid_value")


def _message(index: int, m: ChatMessage) -> Message:
    media: list[Media] = []
    if isinstance(m.content, list):
        for j, part in enumerate(m.content):
            if not isinstance(part, OtherPart):
                continue
            where = f"messages.{index}.content.{j}"
            if part.type == "refusal":
                raise Unsupported("refusal content parts are not supported", param=where)
            if m.role != "user":
                raise invalid_value(where, f"{part.type} parts go in user messages, not {m.role} ones")
            media.append(parts.chat_part(part.model_dump(), where))
        text = "".join(p.text for p in m.content if isinstance(p, TextPart))
    else:
        text = m.content or ""
    if m.role == "tool" and not m.tool_call_id:
        raise InvalidRequest("Missing required parameter: 'tool_call_id' (a tool message answers one call).",
                             param=f"messages.{index}.tool_call_id", code="missing_required_parameter")  # fmt: skip
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or [])
    return Message(role=m.role, content=text, name=m.name, tool_calls=calls, tool_call_id=m.tool_call_id,
                   media=tuple(media))  # fmt: skip


def tool_def(
    index: int, name: str, description: str | None, parameters: dict[str, Any] | None, param: str | None = None
) -> Tool:
    """A function tool, its parameters checked as a JSON schema."""
    schema = parameters if parameters is not None else {"type": "object", "properties": {}}
    problem = structured.schema_problem(schema)
    if problem is not None:
        where = param or f"tools.{index}.function.parameters"
        raise InvalidRequest(f"Invalid JSON schema for tool '{name}': {problem}", param=where, code="invalid_value")
    return Tool(name, description or "", schema)


def flat_tool(i: int, t: Any, where: str = "tools") -> Tool:
    """A function tool in the Responses API's flat shape (`{"type": "function", "name", …}`), checked."""
    if not isinstance(t, dict):
        raise invalid_value(f"{where}.{i}", "a tool is an object")
    if t.get("type") != "function":
        raise Unsupported(f"tools of type {t.get('type')!r} are not supported yet", param=f"{where}.{i}.type")
    name = t.get("name")
    if not isinstance(name, str) or not re.match(TOOL_NAME, name):
        raise invalid_value(f"{where}.{i}.name", "a function name is 1-64 letters, digits, _ or -")
    return tool_def(i, name, t.get("description"), t.get("parameters"), param=f"{where}.{i}.parameters")


def tool_choice(choice: str | NamedToolChoice | None, tools: tuple[Tool, ...]) -> tuple[ToolChoice, str | None]:
    """The internal tool_choice and forced tool name, checked against the tools."""
    if choice is None:
        return "auto", None
    if not tools and choice != "none":
        raise InvalidRequest("tool_choice needs tools to choose from.", param="tool_choice", code="invalid_value")
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in {t.name for t in tools}:
            raise InvalidRequest(f"tool_choice names '{choice.function.name}', which is not among the tools.",
                                 param="tool_choice", code="invalid_value")  # fmt: skip
        return "required", choice.function.name
    return choice, None  # type: ignore[return-value]
