"""Wire schemas for the OpenAI-compatible API (requests only; responses are built
by `encode.py`). Validation is strict about types, as OpenAI is: `"0.5"` is not a
temperature. Unknown fields are accepted and ignored, so clients that send newer
fields still work; fields Ponder cannot honour yet are refused by name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ponder.errors import Unsupported
from ponder.formats import structured
from ponder.types import ChatRequest, Message, SamplingParams

MAX_CHOICES = 16  # n: each choice is a whole run of the mode


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["image_url", "input_audio", "file", "refusal"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | OtherPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    include_usage: bool = False


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
    # Accepted so the error can name them; not implemented yet.
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None

    def to_internal(self) -> ChatRequest:
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
        )
        messages = tuple(_message(i, m) for i, m in enumerate(self.messages))
        return ChatRequest(model=self.model, messages=messages, params=params)

    def _refuse_unsupported(self) -> None:
        if self.tools:
            raise Unsupported("tool calling is not supported yet", param="tools")
        if self.logprobs:
            raise Unsupported("logprobs are not supported yet", param="logprobs")


def _message(index: int, m: ChatMessage) -> Message:
    if isinstance(m.content, list):
        for part in m.content:
            if isinstance(part, OtherPart):
                raise Unsupported(
                    f"content parts of type {part.type!r} are not supported by this model",
                    param=f"messages.{index}.content",
                )
        text = "".join(p.text for p in m.content if isinstance(p, TextPart))
    else:
        text = m.content or ""
    return Message(role=m.role, content=text, name=m.name)
