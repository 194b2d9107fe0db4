"""Pure values shared by every layer: messages, requests and the event vocabulary.

Nothing here knows about HTTP, OpenAI's JSON shapes or llama.cpp. Wire schemas
convert into these types at the edge; backends consume a `ChatRequest` and yield
`Event`s; encoders turn events back into JSON or SSE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "cancelled", "tool_calls"]
ToolChoice = Literal["auto", "none", "required"]

LIVE_ONLY = ("agent.delta", "best")  # progress that only matters while it streams: never kept


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the API carries it


MediaKind = Literal["image", "audio", "file"]


@dataclass(frozen=True)
class Media:
    """An image, a sound or a document a message carries, as the client sent it.

    Backends that take the kind natively get it as is; for the others
    `ponder.media.perceive` turns it into labelled text first."""

    kind: MediaKind
    data: bytes
    mime: str  # image/png, audio/wav, application/pdf, ...
    name: str = ""  # a file name, where the client gave one
    url: str = ""  # an http(s) image not fetched yet (`data` is empty until it is)
    param: str = ""  # where it sits in the request (messages.0.content.1), for errors


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # assistant turns that called tools
    tool_call_id: str | None = None  # tool turns: the call this is the result of
    media: tuple[Media, ...] = ()  # images, audio and files, before the text


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, its JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings. `None` means "the backend's default"."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # Structured output: {"type": "json_object"}, or {"type": "json_schema", "schema": {...}}.
    # Embedded engines enforce it with a grammar; remote engines get it as is.
    response_format: Mapping[str, Any] | None = None
    grammar: str | None = None  # GBNF the reply must match (set by backends: forced tool calls)
    logprobs: int | None = None  # None: none; N: each token's logprob and its N likeliest alternatives
    # Never end at an end-of-generation token: write on to max_tokens (or a stop). As
    # vLLM's and llama-server's `ignore_eos`; a grammar's end still ends the reply.
    ignore_eos: bool = False


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    # Text the assistant's reply is forced to start with; the model continues it.
    # Only for backends with `capabilities.prefill`; modes use it for reasoning phases.
    prefill: str = ""
    tools: tuple[Tool, ...] = ()
    # "none": the model sees the tools but its reply is not parsed for calls.
    # `tool_name` forces a call of that one tool (OpenAI's named tool_choice).
    tool_choice: ToolChoice = "auto"
    tool_name: str | None = None
    parallel_tool_calls: bool = True
    # For engines that enforce a reasoning budget themselves (`capabilities.thinking_budget`):
    # None leaves the engine's default, 0 turns thinking off, N caps it at N tokens.
    thinking: int | None = None


# --- events ------------------------------------------------------------------


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log probability, and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class TextDelta:
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()  # the tokens behind `text`, when asked for


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ToolCallEvent:
    """One complete tool call the model made."""

    call: ToolCall


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    tool_calls: int = 0  # calls of server-side tools, run here

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.tool_calls + other.tool_calls,
        )


NO_USAGE = Usage(0, 0)


@dataclass(frozen=True)
class AgentEvent:
    """Progress of a multi-agent run (plan, agent start/delta/done, synthesis).

    `kind` is one of "plan", "agent.start", "agent.delta", "agent.done",
    "synthesis.start"; `agent` is the sub-agent's index where it applies.
    """

    kind: str
    agent: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolRun:
    """A server-side tool the model called and the server ran: the call, what the
    model read back, and the details the wire shows (`data`). `agent` is the
    Contemplating sub-agent that made the call, if one did."""

    call: ToolCall
    kind: str  # calculator | file_search | code_interpreter | mcp | web_fetch | tool_search
    output: str
    error: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)
    agent: int | None = None

    @property
    def result(self) -> Message:
        return Message("tool", self.output, tool_call_id=self.call.id)


@dataclass(frozen=True)
class Done:
    finish_reason: FinishReason
    usage: Usage


Event = TextDelta | ReasoningDelta | ToolCallEvent | ToolRun | AgentEvent | Done


@dataclass
class Completion:
    """A whole answer, gathered from a stream of events."""

    text: str
    reasoning: str
    finish_reason: FinishReason
    usage: Usage
    progress: list[AgentEvent] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tool_runs: list[ToolRun] = field(default_factory=list)


async def collect(events: object) -> Completion:
    """Drain an async iterator of events into one `Completion`."""
    text: list[str] = []
    reasoning: list[str] = []
    progress: list[AgentEvent] = []
    calls: list[ToolCall] = []
    logprobs: list[TokenLogprob] = []
    runs: list[ToolRun] = []
    done: Done | None = None
    async for event in events:  # type: ignore[attr-defined]
        if isinstance(event, TextDelta):
            text.append(event.text)
            logprobs += event.logprobs
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCallEvent):
            calls.append(event.call)
        elif isinstance(event, ToolRun):
            runs.append(event)
        elif isinstance(event, AgentEvent):
            if event.kind not in LIVE_ONLY:  # live deltas only matter to a live stream
                progress.append(event)
        elif isinstance(event, Done):
            done = event
    if done is None:
        raise RuntimeError("event stream ended without a Done event")
    return Completion("".join(text), "".join(reasoning), done.finish_reason, done.usage, progress, calls, logprobs,
                      runs)  # fmt: skip
