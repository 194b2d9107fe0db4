"""Events -> OpenAI Chat Completions JSON and SSE. The only code that knows those shapes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ponder.errors import PonderError
from ponder.formats import openai
from ponder.tools import knowledge
from ponder.types import (
    NO_USAGE,
    AgentEvent,
    Completion,
    Done,
    Event,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallEvent,
    ToolRun,
    Usage,
)


def usage_json(u: Usage) -> dict[str, Any]:
    out = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }
    return out | ({"tool_calls": u.tool_calls} if u.tool_calls else {})


def _finish(reason: str) -> str:
    return reason if reason in ("length", "tool_calls") else "stop"


def logprob_json(lp: TokenLogprob) -> dict[str, Any]:
    def one(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {**one(lp.token, lp.logprob), "top_logprobs": [one(t, x) for t, x in lp.top]}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_json(model: str, completions: list[Completion], mode: str, logprobs: bool = False,
                    audio: Sequence[dict[str, Any] | None] = (), id: str = "") -> dict[str, Any]:  # fmt: skip
    """`audio`: each choice's spoken answer, where the request asked for one; `id`: the
    completion's id (a new one when not given)."""
    choices = []
    for i, c in enumerate(completions):
        message: dict[str, Any] = {"role": "assistant", "content": c.text, "refusal": None}
        if i < len(audio) and audio[i] is not None:
            message["audio"] = audio[i]
        if c.reasoning:
            message["reasoning_content"] = message["reasoning"] = c.reasoning
        cited = citations(c.text, [r for r in c.tool_runs if r.agent is None])
        if cited:
            message["annotations"] = cited
        if c.tool_calls:
            message["tool_calls"] = [openai.call_json(call) for call in c.tool_calls]
            message["content"] = c.text if c.text.strip() else None  # whitespace before the calls is no content
        lps = {"content": [logprob_json(lp) for lp in c.logprobs], "refusal": None} if logprobs else None
        choices.append({"index": i, "message": message, "finish_reason": _finish(c.finish_reason), "logprobs": lps})
    choice = (lambda i: {"choice": i}) if len(completions) > 1 else (lambda i: {})
    progress = [{**progress_json(e), **choice(i)} for i, c in enumerate(completions) for e in c.progress]
    progress += [{**run_json(r), **choice(i)} for i, c in enumerate(completions) for r in c.tool_runs]
    return {
        "id": id or completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage_json(sum((c.usage for c in completions), NO_USAGE)),
        "ponder": ponder_json(mode, progress),
    }


def ponder_json(mode: str, progress: list[dict[str, Any]]) -> dict[str, Any]:
    """A response's `ponder` field: its mode, how sure of the answer it is (the last
    evidence's calibrated confidence, in [0, 1]; None without one; with several
    choices, the first's: each choice's own is in its evidence), and its progress."""
    sure = [p.get("confidence") for p in progress if p["type"] == "evidence" and p.get("choice", 0) == 0]
    return {"mode": mode, "confidence": sure[-1] if sure else None, "progress": progress}


def progress_json(e: AgentEvent) -> dict[str, Any]:
    """Ponder's SSE extension: progress of a multi-agent run, in a `ponder` field."""
    out: dict[str, Any] = {"type": e.kind}
    if e.agent is not None:
        out["agent"] = e.agent
    return {**out, **e.data}


def run_json(r: ToolRun) -> dict[str, Any]:
    """A server-side tool call in Ponder's progress extension (both APIs)."""
    out: dict[str, Any] = {"type": "tool.call"}
    if r.agent is not None:
        out["agent"] = r.agent
    out |= {"tool": r.kind, "name": r.call.name, "arguments": r.call.arguments, "output": r.output, "error": r.error}
    if r.data.get("label"):
        out["server_label"] = r.data["label"]
    if r.kind == "file_search":
        out["results"] = list(r.data.get("results", ()))
    return out


def citations(text: str, runs: Sequence[ToolRun]) -> list[dict[str, Any]]:
    """The passages of the file searches in `runs` that `text` used."""
    used = [p for r in runs if r.kind == "file_search" for p in r.data.get("results", ())]
    asked = " ".join(q for r in runs for q in r.data.get("queries", ()))
    return knowledge.cite(text, used, asked) if used else []


class ChunkEncoder:
    """Turns one request's events into SSE `data:` lines, in order. With n > 1 the
    events of all choices come interleaved, each with its choice's index."""

    def __init__(self, model: str, include_usage: bool, mode: str = "instant", n: int = 1, id: str = ""):
        self.model = model
        self.mode = mode
        self.include_usage = include_usage
        self.id = id or completion_id()
        self.created = int(time.time())
        self._open = n
        self._usage = NO_USAGE
        self._n = n
        self._calls = [0] * n  # tool calls streamed so far, per choice
        self._text = [""] * n  # answer text so far, per choice (for citations)
        self._runs: list[list[ToolRun]] = [[] for _ in range(n)]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, ext: dict[str, Any] | None = None,
               index: int = 0, logprobs: dict[str, Any] | None = None) -> str:  # fmt: skip
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}],
        }
        if self.include_usage:
            body["usage"] = None
        if ext is not None:
            body["ponder"] = ext
        return sse(body)

    def start(self) -> str:
        ext = {"type": "mode", "mode": self.mode}
        return "".join(self._chunk({"role": "assistant", "content": ""}, ext=ext, index=i) for i in range(self._n))

    def event(self, index: int, event: Event) -> str:
        if isinstance(event, TextDelta):
            self._text[index] += event.text
            lps = {"content": [logprob_json(lp) for lp in event.logprobs]} if event.logprobs else None
            return self._chunk({"content": event.text}, index=index, logprobs=lps)
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text, "reasoning": event.text}, index=index)
        if isinstance(event, ToolCallEvent):  # whole calls, one delta each
            self._calls[index] += 1
            return self._chunk({"tool_calls": [openai.call_json(event.call, self._calls[index] - 1)]}, index=index)
        if isinstance(event, AgentEvent):  # an empty delta to plain clients; progress to ours
            return self._chunk({}, ext=progress_json(event), index=index)
        if isinstance(event, ToolRun):
            if event.agent is None:
                self._runs[index].append(event)
            return self._chunk({}, ext=run_json(event), index=index)
        if isinstance(event, Done):
            cited = citations(self._text[index], self._runs[index])
            out = self._chunk({}, ext={"type": "citations", "annotations": cited}, index=index) if cited else ""
            out += self._chunk({}, _finish(event.finish_reason), index=index)
            self._usage += event.usage
            self._open -= 1
            if self._open:  # other choices are still going
                return out
            if self.include_usage:
                usage = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                         "model": self.model, "system_fingerprint": None, "choices": [],
                         "usage": usage_json(self._usage)}  # fmt: skip
                out += sse(usage)
            return out + "data: [DONE]\n\n"
        raise TypeError(f"no wire form for {event!r}")

    def audio(self, index: int, audio: dict[str, Any]) -> str:
        """The spoken answer (modalities: audio), in one delta before the choice finishes."""
        return self._chunk({"audio": audio}, index=index)

    def text(self, index: int) -> str:
        return self._text[index]

    @staticmethod
    def error(e: PonderError) -> str:
        return sse(e.to_body()) + "data: [DONE]\n\n"


def sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"
