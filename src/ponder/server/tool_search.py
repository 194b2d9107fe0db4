"""Hosted tool search for the Responses API: `{"type": "tool_search"}` plus function
tools marked `defer_loading: true`.

Deferred tools stay out of the prompt. The model sees a `tool_search` function in
their place; when it calls it, the server ranks the deferred tools against the
query, answers with the best
matches' definitions, and runs the model again with those tools loaded. Ranking is
hybrid: BM25 over names, descriptions and parameters, fused (reciprocal rank) with
the cosine of e5 embeddings, which finds "mail Bob" for `send_email`. The
search and its result are `tool_search_call` / `tool_search_output` output items,
and a later turn (by `previous_response_id` or by items sent back) keeps them
loaded. With `execution: "client"` the call is returned to the client instead,
which answers with a `tool_search_output` item of its own.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ponder import embeddings
from ponder.embeddings import Embedder
from ponder.errors import InvalidRequest, invalid_value
from ponder.modes.prompts import load, render
from ponder.ranking import fuse
from ponder.server.protocol import flat_tool, tool_def
from ponder.tools.base import Hosted, Result
from ponder.types import Message, Tool, ToolCall

SEARCH = "tool_search"
TOP_K = 5

Execution = Literal["server", "client"]


@dataclass(frozen=True)
class ToolSet:
    """A request's function tools: those in the prompt, and those deferred until a
    search loads them. `execution` is set when the request has a tool_search tool."""

    tools: tuple[Tool, ...] = ()
    deferred: tuple[Tool, ...] = ()  # all of them: a search finds a tool even once it is loaded
    execution: Execution | None = None
    search_tool: Tool | None = None

    def prompt_tools(self, searching: bool = True) -> tuple[Tool, ...]:
        extra = (self.search_tool,) if self.search_tool is not None and searching else ()
        return self.tools + extra

    def load(self, found: Iterable[Tool]) -> ToolSet:
        have = {t.name for t in self.tools}
        return replace(self, tools=self.tools + tuple({t.name: t for t in found if t.name not in have}.values()))

    def loaded_by(self, messages: Sequence[Message]) -> ToolSet:
        """This set with the tools that earlier searches in the conversation loaded:
        the client's definitions (client execution), or this request's deferred
        tools of the names found (server execution: a changed tool is used as sent now)."""
        if self.execution is None:
            return self
        ids = {c.id for m in messages for c in m.tool_calls if c.name == SEARCH}
        found = [t for m in messages if m.role == "tool" and m.tool_call_id in ids for t in result_tools(m.content)]
        if self.execution == "server":
            names = {t.name for t in found}
            found = [t for t in self.deferred if t.name in names]
        return self.load(found)

    def search(self, query: str, embedder: Embedder | None = None, k: int = TOP_K) -> tuple[Tool, ...]:
        """The best matches for `query`: keyword hits, and with an embedder the tools
        whose meaning is nearest, fused by reciprocal rank."""
        ranks = [_keyword(self.deferred, query)]
        if embedder is not None and self.deferred:
            ranks.append(_semantic(self.deferred, query, embedder))
        return _fuse(ranks)[:k]


def tool_set(tools: Sequence[dict[str, Any]]) -> ToolSet:
    """The request's flat-shaped tools, checked and split into loaded and deferred."""
    loaded: list[Tool] = []
    deferred: list[Tool] = []
    search: dict[str, Any] | None = None
    for i, t in enumerate(tools):
        if t.get("type") == SEARCH:
            if search is not None:
                raise invalid_value(f"tools.{i}", "give at most one tool_search tool")
            search = t
            continue
        (deferred if t.get("defer_loading") is True else loaded).append(flat_tool(i, t))
    if search is None:
        if deferred:
            raise invalid_value("tools", "tools with defer_loading need a tool_search tool to load them")
        return ToolSet(tuple(loaded))
    if SEARCH in {t.name for t in (*loaded, *deferred)}:
        raise invalid_value("tools", f"a function may not be named {SEARCH!r} beside the tool_search tool")
    execution: Execution = execution_of(tools)
    if execution not in ("server", "client"):
        raise invalid_value("tools.execution", "use 'server' or 'client'")
    if execution == "server" and not deferred:
        raise invalid_value("tools", "the tool_search tool has no tools with defer_loading: true to search")
    return ToolSet(tuple(loaded), tuple(deferred), execution, _search_tool(search, len(deferred)))


def _search_tool(spec: dict[str, Any], count: int) -> Tool:
    text = load("tool_search")
    query = {"type": "string", "description": text["query"], "maxLength": 100}  # a forced call ends, on any model
    params = {"type": "object", "properties": {"query": query}, "required": ["query"]}
    if spec.get("execution") == "client":  # the client's own description and parameters, where it gave them
        desc = spec.get("description") or render(text["description"], count="Some")
        return tool_def(0, SEARCH, desc, spec.get("parameters") or params, param="tools.parameters")
    return Tool(SEARCH, render(text["description"], count=count), params)


def flat_json(t: Tool) -> dict[str, Any]:
    """A loaded tool as the Responses API shows it (flat-shaped)."""
    return {"type": "function", "name": t.name, "description": t.description, "parameters": dict(t.parameters),
            "defer_loading": True}  # fmt: skip


def result_message(call_id: str, tools: Sequence[dict[str, Any]]) -> Message:
    """What the model reads back from a search, run here or by the client: the
    loaded tools, flat-shaped (read back by `result_tools`)."""
    out: dict[str, Any] = {"tools": list(tools)}
    if not tools:
        out["note"] = load("tool_search")["none_found"]
    return Message("tool", json.dumps(out, ensure_ascii=False), tool_call_id=call_id)


def execution_of(tools: Sequence[dict[str, Any]]) -> Any:
    """Who runs the request's tool_search tool ("server" by default), or None without one."""
    spec = next((t for t in tools if t.get("type") == SEARCH), None)
    return None if spec is None else spec.get("execution") or "server"


def result_tools(text: str) -> list[Tool]:
    """The tools a search result loaded. Results are ours, or a client's
    tool_search_output, whose tools were checked when it came in; anything else
    in a tool message of that call id loads nothing."""
    try:
        tools = json.loads(text).get("tools")
    except (json.JSONDecodeError, AttributeError):
        return []
    out = []
    for i, t in enumerate(tools if isinstance(tools, list) else []):
        try:
            out.append(flat_tool(i, t))
        except InvalidRequest:
            continue
    return out


def arguments_of(call: ToolCall) -> Any:
    """A call's arguments as JSON, or as the raw text when they do not parse."""
    try:
        return json.loads(call.arguments)
    except json.JSONDecodeError:
        return call.arguments


def query_of(args: Any) -> str:
    """The search words in a call's arguments: its `query`, or every string it holds
    when a small model named the argument otherwise."""
    if isinstance(args, dict):
        if isinstance(args.get("query"), str):
            return str(args["query"])
        return " ".join(str(v) for v in args.values() if isinstance(v, str))
    return str(args)


def hosted(tools: ToolSet) -> Hosted:
    """The search, run here: it ranks the request's deferred tools and loads the best."""

    async def call(args: dict[str, Any]) -> Result:
        query = query_of(args)
        found = await asyncio.to_thread(tools.search, query, embeddings.shared())
        return Result(result_message("", [flat_json(t) for t in found]).content, {"query": query}, load=found)

    assert tools.search_tool is not None
    return Hosted(SEARCH, tools.search_tool, call, timeout_s=60.0)


# --- ranking -----------------------------------------------------------------------

_STOP = frozenset(
    re.findall(r"\w+", "a an and the of to for in on at by with from or is are be it this that my me i you your "
                       "tool tools function use using get need want find some")
)  # fmt: skip


def _terms(text: str) -> list[str]:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)  # camelCase -> camel Case
    return [_stem(w) for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]


def _stem(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 5 and w.endswith("ing"):
        return w[:-3]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def _document(t: Tool) -> list[str]:
    """A tool's searchable words; its name counts twice."""
    props = t.parameters.get("properties", {}) if isinstance(t.parameters, dict) else {}
    params = " ".join(f"{k} {v.get('description', '') if isinstance(v, dict) else ''}" for k, v in props.items())
    return _terms(f"{t.name} {t.name} {t.description} {params}")


def _keyword(tools: Sequence[Tool], query: str, k1: float = 1.2, b: float = 0.75) -> tuple[Tool, ...]:
    """BM25: tools that share a word with the query, best first."""
    docs = [Counter(_document(t)) for t in tools]
    if not docs:
        return ()
    avg = sum(sum(d.values()) for d in docs) / len(docs) or 1.0
    df = Counter(term for d in docs for term in d)
    scores = []
    for t, d in zip(tools, docs, strict=True):
        size = sum(d.values())
        score = 0.0
        for term in set(_terms(query)):
            if term in d:
                idf = math.log(1 + (len(docs) - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * d[term] * (k1 + 1) / (d[term] + k1 * (1 - b + b * size / avg))
        if score > 0:
            scores.append((score, t))
    scores.sort(key=lambda s: -s[0])
    return tuple(t for _, t in scores)


SEMANTIC_BAND = 0.04  # e5 cosines bunch together: only those this near the best count as matches


def _semantic(tools: Sequence[Tool], query: str, embedder: Embedder) -> tuple[Tool, ...]:
    """Tools by embedding cosine, best first, within SEMANTIC_BAND of the best."""
    vectors = embedder.passages([_passage(t) for t in tools])
    cos = vectors @ embedder.query(query)
    order = sorted(range(len(tools)), key=lambda i: -cos[i])
    return tuple(tools[i] for i in order if cos[i] >= cos[order[0]] - SEMANTIC_BAND)


def _passage(t: Tool) -> str:
    words = " ".join(re.findall(r"[A-Za-z][a-z]*|\d+", t.name)).lower()
    return f"{words}: {t.description}"


def _fuse(ranked: Sequence[Sequence[Tool]]) -> tuple[Tool, ...]:
    """The rankings fused by reciprocal rank (tools are told apart by name)."""
    by_name = {t.name: t for ranks in ranked for t in ranks}
    return tuple(by_name[n] for n, _ in fuse([[t.name for t in ranks] for ranks in ranked]))
