"""Events -> OpenAI Chat Completions JSON and SSE. The only code that knows those shapes."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ponder.errors import PonderError
from ponder.types import AgentEvent, Completion, Done, Event, ReasoningDelta, TextDelta, Usage


def usage_json(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def completion_json(model: str, c: Completion, mode: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": c.text, "refusal": None}
    if c.reasoning:
        message["reasoning_content"] = message["reasoning"] = c.reasoning
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(c.finish_reason), "logprobs": None}],
        "usage": usage_json(c.usage),
        "ponder": {"mode": mode, "progress": [progress_json(e) for e in c.progress]},
    }


def progress_json(e: AgentEvent) -> dict[str, Any]:
    """Ponder's SSE extension: progress of a multi-agent run, in a `ponder` field."""
    out: dict[str, Any] = {"type": e.kind}
    if e.agent is not None:
        out["agent"] = e.agent
    return {**out, **e.data}


class ChunkEncoder:
    """Turns one request's events into SSE `data:` lines, in order."""

    def __init__(self, model: str, include_usage: bool, mode: str = "instant"):
        self.model = model
        self.mode = mode
        self.include_usage = include_usage
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, ext: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if self.include_usage:
            body["usage"] = None
        if ext is not None:
            body["ponder"] = ext
        return sse(body)

    def start(self) -> str:
        return self._chunk({"role": "assistant", "content": ""}, ext={"type": "mode", "mode": self.mode})

    def event(self, event: Event) -> str:
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text})
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text, "reasoning": event.text})
        if isinstance(event, AgentEvent):  # an empty delta to plain clients; progress to ours
            return self._chunk({}, ext=progress_json(event))
        if isinstance(event, Done):
            out = self._chunk({}, _finish(event.finish_reason))
            if self.include_usage:
                usage = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                         "model": self.model, "system_fingerprint": None, "choices": [],
                         "usage": usage_json(event.usage)}  # fmt: skip
                out += sse(usage)
            return out + "data: [DONE]\n\n"
        raise TypeError(f"no wire form for {event!r}")

    @staticmethod
    def error(e: PonderError) -> str:
        return sse(e.to_body()) + "data: [DONE]\n\n"


def sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"
