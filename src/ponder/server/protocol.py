"""Wire schemas for the OpenAI-compatible API (requests only; responses are built
by `encode.py`). Validation is strict about types, as OpenAI is: `"0.5"` is not a
temperature. Unknown fields are accepted and ignored, so clients that send newer
fields still work; fields Ponder cannot honour yet are refused by name.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from ponder.errors import InvalidRequest, Unsupported, invalid_value
from ponder.formats import structured
from ponder.media import parts
from ponder.types import ChatRequest, Media, Message, SamplingParams, Tool, ToolCall, ToolChoice

MAX_CHOICES = 16  # n: each choice is a whole run of the mode
TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # what OpenAI accepts as a function name


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
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
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["function"]
    function: FunctionDef


class HostedToolDef(BaseModel):
    """A server-side tool (`ponder.tools`): {"type": "calculator"}, {"type": "file_search"}, …"""

    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["calculator", "file_search", "code_interpreter", "web_fetch", "mcp"]


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


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

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
    mode: Literal["instant", "thinking", "contemplating"] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    thinking_budget: int | None = Field(default=None, ge=0)
    thought_compression: bool | None = None
    contemplation: Contemplation | None = None
    tools: list[ToolDef | HostedToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOut | None = None

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
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        where = param or f"tools.{index}.function.parameters"
        raise InvalidRequest(f"Invalid JSON schema for tool '{name}': {e.message}", param=where,
                             code="invalid_value") from e  # fmt: skip
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
