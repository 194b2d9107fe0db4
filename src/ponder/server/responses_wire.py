"""The Responses API's shapes: the request body, its input items -> messages, and
the response object and stream events built from a mode's events.

Text goes in and out (input_text / output_text, and reasoning items), with function
calls and tool searches; other content and tool items are refused by name.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ponder.errors import InvalidRequest, Unsupported, invalid_value
from ponder.formats import structured
from ponder.modes.summary import SummaryDelta
from ponder.server import tool_search
from ponder.server.encode import citations, progress_json, run_json
from ponder.server.protocol import Contemplation, NamedToolChoice, ToolName, flat_tool, tool_choice
from ponder.tools import FUNCTION_NAMES, is_hosted, knowledge, sandbox
from ponder.types import (
    NO_USAGE,
    AgentEvent,
    Done,
    Event,
    FinishReason,
    Message,
    ReasoningDelta,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallEvent,
    ToolChoice,
    ToolRun,
    Usage,
)


class Reasoning(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: dict[str, Any] | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(min_length=1)
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
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextFormat | None = None
    # Ponder's modes, as in Chat Completions.
    mode: Literal["instant", "thinking", "contemplating"] | None = None
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


class TokenCountRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    model: str | None = None
    tools: list[dict[str, Any]] | None = None
    input: str | list[dict[str, Any]] | None = None
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
        items.append({"id": item.get("id") or _id("msg"), "type": "message", "role": role,
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
    return {"id": item.get("id") or _id(prefix), "type": kind, **{f: item[f] for f in fields}, "status": "completed"}


def _search_item(i: int, kind: str, item: dict[str, Any]) -> dict[str, Any]:
    """A tool search echoed back, or a client's answer to one (the tools it loads)."""
    if not isinstance(item.get("call_id"), str):
        raise InvalidRequest(f"Missing required parameter: 'input.{i}.call_id'.", param=f"input.{i}.call_id",
                             code="missing_required_parameter")  # fmt: skip
    execution = item.get("execution") or "server"
    if execution not in ("server", "client"):
        raise invalid_value(f"input.{i}.execution", "use 'server' or 'client'")
    out = {"id": item.get("id") or _id("tsc" if kind == "tool_search_call" else "tso"), "type": kind,
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
    return {**item, "id": item.get("id") or _id("tc")}


def _run_turn(it: dict[str, Any]) -> tuple[ToolCall, Message]:
    """The call and the result an echoed server-side tool item stands for."""
    kind, call_id = it["type"], it["id"]
    if kind == "mcp_call":
        call = ToolCall(call_id, it["name"], it["arguments"])
        return call, Message("tool", str(it.get("output") or it.get("error") or ""), tool_call_id=call_id)
    if kind == "file_search_call":
        call = ToolCall(call_id, knowledge.NAME, json.dumps({"query": " ".join(map(str, it["queries"]))}))
        found = [r for r in it.get("results") or [] if isinstance(r, dict)]
        text = "\n\n".join(f"[{n}] ({r.get('filename', '')})\n{r.get('text', '')}" for n, r in enumerate(found, 1))
        return call, Message("tool", text or "No passages matched.", tool_call_id=call_id)
    call = ToolCall(call_id, sandbox.NAME, json.dumps({"code": it["code"]}))
    logs = "".join(o.get("logs", "") for o in it.get("outputs") or [] if isinstance(o, dict))
    return call, Message("tool", logs, tool_call_id=call_id)


def messages_of(items: list[dict[str, Any]]) -> list[Message]:
    """Input items as messages; consecutive calls become one assistant turn."""
    out: list[Message] = []
    for it in items:
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
            out.append(Message(it["role"], "".join(p["text"] for p in it["content"])))
    return out


def message_json(m: Message) -> dict[str, Any]:
    """A message as stored history."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


def message_of(d: dict[str, Any]) -> Message:
    calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in d.get("tool_calls", []))
    return Message(d["role"], d["content"], tool_calls=calls, tool_call_id=d.get("tool_call_id"))


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


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


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
        return {"id": _id("fs"), "type": "file_search_call", "queries": list(r.data.get("queries", ())),
                "results": results, "status": status}  # fmt: skip
    if r.kind == "code_interpreter":
        outputs = list(r.data.get("outputs", ())) or [{"type": "logs", "logs": r.output}]
        return {"id": _id("ci"), "type": "code_interpreter_call", "code": r.data.get("code", ""),
                "container_id": "sandbox", "outputs": outputs, "status": status}  # fmt: skip
    return {"id": _id("mcp"), "type": "mcp_call", "server_label": r.data.get("label") or "ponder",
            "name": r.call.name, "arguments": r.call.arguments, "output": None if r.error else r.output,
            "error": r.output if r.error else None, "status": status}  # fmt: skip


@dataclass
class ResponseBuilder:
    """Builds one response, whole or as stream events, from a mode's events."""

    req: ResponsesRequest
    mode: str
    id: str = field(default_factory=lambda: _id("resp"))
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
            "ponder": {"mode": self.mode, "progress": self.progress},
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
            if event.kind == "agent.delta":  # live only: not kept in the stored body
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
        item = {"id": _id("fc"), "type": "function_call", "call_id": call.id, "name": call.name, "arguments": "",
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
        items = [{"id": _id("tsc"), "type": "tool_search_call", "call_id": call.id, "arguments": args,
                  "execution": execution, "status": "completed"}]  # fmt: skip
        if found is not None:
            items.append({"id": _id("tso"), "type": "tool_search_output", "call_id": call.id, "execution": execution,
                          "status": "completed", "tools": [tool_search.flat_json(t) for t in found]})  # fmt: skip
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
            item: dict[str, Any] = {"id": _id("rs"), "type": "reasoning", "summary": [], "status": "in_progress"}
            part: dict[str, Any] = {"type": "reasoning_text", "text": ""}
        else:
            item = {"id": _id("msg"), "type": "message", "role": "assistant", "status": "in_progress"}
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


def build(req: ResponsesRequest, mode: str, events: list[Item]) -> ResponseBuilder:
    """A whole (non-streamed) response from all of a run's events."""
    b = ResponseBuilder(req, mode)
    for event in events:
        b.event(event)
    if b.usage is None:
        b.usage = NO_USAGE
    return b
