"""The Responses API's response side: the response object, whole or as stream
events, built from a mode's events. (The request side is `responses_request`.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ponder.modes.summary import SummaryDelta
from ponder.server import tool_search
from ponder.server.encode import citations, ponder_json, progress_json, run_json
from ponder.server.responses_request import ResponsesRequest, item_id
from ponder.types import (
    LIVE_ONLY,
    NO_USAGE,
    AgentEvent,
    Done,
    Event,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallEvent,
    ToolRun,
    Usage,
)

# --- the response object ---------------------------------------------------------------

Item = Event | SummaryDelta  # what a Responses run yields


def usage_json(u: Usage) -> dict[str, Any]:
    out = {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }
    return out | ({"tool_calls": u.tool_calls} if u.tool_calls else {})


def run_item(r: ToolRun) -> dict[str, Any]:
    """A server-side tool call as an output item of OpenAI's kind for it:
    `file_search_call`, `code_interpreter_call`, or `mcp_call` (MCP tools, and
    Ponder's own calculator, whose server_label is "ponder")."""
    status = "failed" if r.error else "completed"
    if r.kind == "file_search":
        results = [
            {"file_id": p["file_id"], "filename": p["filename"], "score": p["score"], "text": p["text"],
             "attributes": {"path": p["path"], "page": p["page"]}}
            for p in r.data.get("results", ())
        ]  # fmt: skip
        return {"id": item_id("fs"), "type": "file_search_call", "queries": list(r.data.get("queries", ())),
                "results": results, "status": status}  # fmt: skip
    if r.kind == "code_interpreter":
        outputs = list(r.data.get("outputs", ())) or [{"type": "logs", "logs": r.output}]
        return {"id": item_id("ci"), "type": "code_interpreter_call", "code": r.data.get("code", ""),
                "container_id": "sandbox", "outputs": outputs, "status": status}  # fmt: skip
    return {"id": item_id("mcp"), "type": "mcp_call", "server_label": r.data.get("label") or "ponder",
            "name": r.call.name, "arguments": r.call.arguments, "output": None if r.error else r.output,
            "error": r.output if r.error else None, "status": status}  # fmt: skip


@dataclass
class ResponseBuilder:
    """Builds one response, whole or as stream events, from a mode's events."""

    req: ResponsesRequest
    mode: str
    id: str = field(default_factory=lambda: item_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    output: list[dict[str, Any]] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = None
    status: str = "in_progress"
    error: dict[str, Any] | None = None
    finish: FinishReason = "stop"
    calls: list[ToolCall] = field(default_factory=list)
    runs: list[ToolRun] = field(default_factory=list)  # server-side tool calls of the response itself
    _seq: int = 0
    _open: dict[str, Any] | None = None  # the output item being streamed
    _blank: str = ""  # leading whitespace of a message not yet begun

    def __post_init__(self) -> None:
        # a call named tool_search is the client's to run only when its request has a client-run tool_search
        self._client_search = tool_search.execution_of(self.req.tools or []) == "client"

    def body(self) -> dict[str, Any]:
        r = self.req
        incomplete = {"reason": "max_output_tokens"} if self.status == "incomplete" else None
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": self.status,
            "error": self.error, "incomplete_details": incomplete, "instructions": r.instructions,
            "max_output_tokens": r.max_output_tokens, "model": r.model, "output": self.output,
            "parallel_tool_calls": r.parallel_tool_calls if r.parallel_tool_calls is not None else True,
            "previous_response_id": r.previous_response_id,
            "reasoning": {"effort": r.reasoning.effort if r.reasoning else None,
                          "summary": r.reasoning.summary if r.reasoning else None},
            "store": r.store, "temperature": r.temperature, "text": {"format": _format_json(r)},
            "tool_choice": r.tool_choice or "auto", "tools": r.tools or [], "top_p": r.top_p, "truncation": "disabled",
            "usage": usage_json(self.usage) if self.usage else None, "user": r.user, "metadata": r.metadata or {},
            "ponder": ponder_json(self.mode, self.progress),
        }  # fmt: skip

    @property
    def text(self) -> str:
        return "".join(p["text"] for it in self.output if it["type"] == "message" for p in it["content"])

    # events -> stream lines (and the body, as it grows) -------------------------------

    def start(self) -> str:
        return self._event("response.created", response=self.body()) + self._event(
            "response.in_progress", response=self.body()
        )

    def event(self, event: Item) -> str:
        if isinstance(event, SummaryDelta):
            return self._summary(event.text)
        if isinstance(event, ToolRun):
            return self._run(event)
        if isinstance(event, ReasoningDelta):
            return self._delta("reasoning", event.text)
        if isinstance(event, TextDelta):
            return self._delta("message", event.text)
        if isinstance(event, ToolCallEvent) and event.call.name == tool_search.SEARCH and self._client_search:
            self.calls.append(event.call)
            return self._close() + self._search(event.call, tool_search.arguments_of(event.call), "client")
        if isinstance(event, ToolCallEvent):
            return self._close() + self._call(event.call)
        if isinstance(event, AgentEvent):
            if event.kind in LIVE_ONLY:  # live only: not kept in the stored body
                return self._event("ponder.progress", progress=progress_json(event))
            self.progress.append(progress_json(event))
            return self._event("ponder.progress", progress=self.progress[-1])
        if isinstance(event, Done):
            out = self._cite() + self._close()
            if not any(it["type"] in ("message", "function_call", "tool_search_call") for it in self.output):
                out += self._delta("message", "") + self._close()
            self.usage, self.finish = event.usage, event.finish_reason
            length_cut = event.finish_reason == "length" and self.req.max_output_tokens is not None
            self.status = "incomplete" if length_cut else "completed"
            for it in self.output:
                if it["type"] == "message" and self.status == "incomplete":
                    it["status"] = "incomplete"
            return out + self._event(f"response.{self.status}", response=self.body())
        raise TypeError(f"no wire form for {event!r}")

    def fail(self, code: str, message: str) -> str:
        out = self._close()
        self.status, self.error = "failed", {"code": code, "message": message}
        return out + self._event("response.failed", response=self.body())

    def _delta(self, kind: str, text: str) -> str:
        out = ""
        if kind == "message" and (self._open is None or self._open["type"] != "message"):
            if text and not text.strip():  # whitespace before a call is no message; held until text follows
                self._blank += text
                return ""
            text, self._blank = self._blank + text, ""
        if self._open is not None and self._open["type"] != kind:
            out += self._close()
        if self._open is None:
            out += self._add(kind)
        item, index = self._open, len(self.output) - 1
        assert item is not None
        item["content"][0]["text"] += text
        if not text:
            return out
        name = "response.reasoning_text.delta" if kind == "reasoning" else "response.output_text.delta"
        extra: dict[str, Any] = {} if kind == "reasoning" else {"logprobs": []}
        return out + self._event(name, item_id=item["id"], output_index=index, content_index=0, delta=text, **extra)

    def _call(self, call: ToolCall) -> str:
        """A whole function call: added, its arguments in one delta, done."""
        self.calls.append(call)
        self._blank = ""
        item = {"id": item_id("fc"), "type": "function_call", "call_id": call.id, "name": call.name, "arguments": "",
                "status": "in_progress"}  # fmt: skip
        index = len(self.output)
        out = self._event("response.output_item.added", output_index=index, item=dict(item))
        ids = {"item_id": item["id"], "output_index": index}
        out += self._event("response.function_call_arguments.delta", **ids, delta=call.arguments)
        out += self._event("response.function_call_arguments.done", **ids, name=call.name, arguments=call.arguments)
        item.update(arguments=call.arguments, status="completed")
        self.output.append(item)
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _run(self, run: ToolRun) -> str:
        """A server-side tool call: an output item of its kind; a sub-agent's is progress."""
        if run.agent is not None:
            self.progress.append(run_json(run))
            return self._event("ponder.progress", progress=self.progress[-1])
        self.runs.append(run)
        if run.kind == tool_search.SEARCH:
            return self._close() + self._search(run.call, {"query": run.data.get("query", "")}, "server",
                                                tuple(run.data.get("load", ())))  # fmt: skip
        self._blank = ""
        return self._close() + self._items([run_item(run)])

    def _cite(self) -> str:
        """Citations of the passages file searches found, on the message being streamed."""
        item = self._open
        if item is None or item["type"] != "message":
            return ""
        part, out = item["content"][0], ""
        for c in citations(part["text"], self.runs):
            note = {k: c[k] for k in ("type", "file_id", "filename", "index")}
            part["annotations"].append(note)
            out += self._event("response.output_text.annotation.added", item_id=item["id"],
                               output_index=len(self.output) - 1, content_index=0,
                               annotation_index=len(part["annotations"]) - 1, annotation=note)  # fmt: skip
        return out

    def _summary(self, text: str) -> str:
        """Summary text for the reasoning item being streamed (opened if there is none)."""
        out = "" if self._open is not None and self._open["type"] == "reasoning" else self._delta("reasoning", "")
        item, index = self._open, len(self.output) - 1
        assert item is not None
        ids = {"item_id": item["id"], "output_index": index, "summary_index": 0}
        if not item["summary"]:
            item["summary"].append({"type": "summary_text", "text": ""})
            out += self._event("response.reasoning_summary_part.added", **ids, part=dict(item["summary"][0]))
        item["summary"][0]["text"] += text
        return out + self._event("response.reasoning_summary_text.delta", **ids, delta=text)

    def _search(self, call: ToolCall, args: Any, execution: str, found: tuple[Tool, ...] | None = None) -> str:
        """A tool search: the call, and (run here) its output, each added and done."""
        out, self._blank = "", ""
        items = [{"id": item_id("tsc"), "type": "tool_search_call", "call_id": call.id, "arguments": args,
                  "execution": execution, "status": "completed"}]  # fmt: skip
        if found is not None:
            tools = [tool_search.flat_json(t) for t in found]
            items.append({"id": item_id("tso"), "type": "tool_search_output", "call_id": call.id,
                          "execution": execution, "status": "completed", "tools": tools})  # fmt: skip
        return out + self._items(items)

    def _items(self, items: list[dict[str, Any]]) -> str:
        """Whole output items, each added and done."""
        out = ""
        for item in items:
            index = len(self.output)
            self.output.append(item)
            out += self._event("response.output_item.added", output_index=index, item={**item, "status": "in_progress"})
            out += self._event("response.output_item.done", output_index=index, item=item)
        return out

    def _add(self, kind: str) -> str:
        if kind == "reasoning":
            item: dict[str, Any] = {"id": item_id("rs"), "type": "reasoning", "summary": [], "status": "in_progress"}
            part: dict[str, Any] = {"type": "reasoning_text", "text": ""}
        else:
            item = {"id": item_id("msg"), "type": "message", "role": "assistant", "status": "in_progress"}
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        self.output.append({**item, "content": [part]})
        self._open = self.output[-1]
        index = len(self.output) - 1
        return self._event(
            "response.output_item.added", output_index=index, item={**item, "content": []}
        ) + self._event(
            "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=dict(part)
        )

    def _close(self) -> str:
        item, index = self._open, len(self.output) - 1
        if item is None:
            return ""
        self._open = None
        item["status"] = "completed"
        part = item["content"][0]
        done = "response.reasoning_text.done" if item["type"] == "reasoning" else "response.output_text.done"
        extra: dict[str, Any] = {} if item["type"] == "reasoning" else {"logprobs": []}
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        summary = ""
        if item["type"] == "reasoning" and item["summary"]:
            part_ids = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            written = item["summary"][0]
            summary = self._event("response.reasoning_summary_text.done", **part_ids, text=written["text"])
            summary += self._event("response.reasoning_summary_part.done", **part_ids, part=dict(written))
        return summary + (
            self._event(done, **ids, text=part["text"], **extra)
            + self._event("response.content_part.done", **ids, part=dict(part))
            + self._event("response.output_item.done", output_index=index, item=item)
        )

    def _event(self, kind: str, **data: Any) -> str:
        body = {"type": kind, "sequence_number": self._seq, **data}
        self._seq += 1
        return f"event: {kind}\ndata: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _format_json(r: ResponsesRequest) -> dict[str, Any]:
    fmt = (r.text.format if r.text else None) or {"type": "text"}
    return dict(fmt)


def build(req: ResponsesRequest, mode: str, events: list[Item], id: str = "") -> ResponseBuilder:
    """A whole (non-streamed) response from all of a run's events; `id`: its id, if made already."""
    b = ResponseBuilder(req, mode, id) if id else ResponseBuilder(req, mode)
    for event in events:
        b.event(event)
    if b.usage is None:
        b.usage = NO_USAGE
    return b
