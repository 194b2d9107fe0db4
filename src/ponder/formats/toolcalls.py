"""Tool calls in a model's text: one small parser per model family, a splitter that
separates calls from content as the text streams, and repair of near-miss JSON.

Families, as their chat templates teach them:
  hermes   Qwen2.5/3, Hermes, and any model whose template has no tool support (Ponder
           teaches those this format): <tool_call>{"name": …, "arguments": {…}}</tool_call>
  mistral  [TOOL_CALLS] [{"name": …, "arguments": {…}}, …]
  llama3   <|python_tag|>{"name": …, "parameters": {…}}, or that JSON alone
Every family also takes a reply that is nothing but a call's JSON (small models
often drop the tags), and JSON with single quotes, trailing commas, Python literals,
unquoted keys or missing closing brackets.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace
from functools import lru_cache
from typing import Any, Literal

from ponder.errors import Unsupported
from ponder.formats.openai import tool_json
from ponder.types import Done, Event, TextDelta, TokenLogprob, Tool, ToolCall, ToolCallEvent

Family = Literal["hermes", "mistral", "llama3"]

_OPEN = {"hermes": "<tool_call>", "mistral": "[TOOL_CALLS]", "llama3": "<|python_tag|>"}
_CLOSE = {"hermes": "</tool_call>", "mistral": None, "llama3": None}


def family_of(template: str | None) -> Family:
    t = template or ""
    if "[TOOL_CALLS]" in t:
        return "mistral"
    if "<|python_tag|>" in t or "ipython" in t:
        return "llama3"
    return "hermes"


def template_knows_tools(template: str | None) -> bool:
    return bool(template) and "tools" in (template or "")


def system_prompt(tools: Sequence[Tool]) -> str:
    """How to call tools, for models whose chat template has no tool support."""
    listed = "\n".join(json.dumps(tool_json(t)) for t in tools)
    return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n"
            f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{listed}\n"
            "</tools>\n\nFor each function call, return a json object with function name and arguments within "
            '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
            "<args-json-object>}\n</tool_call>")  # fmt: skip


def new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def forced_grammar(tools: Sequence[Tool], family: Family, name: str | None, parallel: bool) -> str:
    """GBNF for a reply that is nothing but calls (tool_choice required, or one named
    tool): each call's JSON follows its tool's parameter schema. Built once per tool
    set: the request check, the stream and each Thinking phase all ask for it."""
    key = json.dumps([[t.name, t.parameters] for t in tools if name is None or t.name == name], sort_keys=True)
    return _forced_grammar(key, family, parallel)


@lru_cache(maxsize=64)
def _forced_grammar(key: str, family: Family, parallel: bool) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    chosen = [Tool(n, "", p) for n, p in json.loads(key)]
    defs: dict[str, Any] = {}
    shapes = [{"type": "object", "properties": {"name": {"const": t.name},
                                                "arguments": _hoist_defs(t, defs) or {"type": "object"}},
               "required": ["name", "arguments"]} for t in chosen]  # fmt: skip
    schema: dict[str, Any] = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    if defs:  # refs resolve against the root, where each tool's definitions now live
        schema = {**schema, "$defs": defs}
    try:
        call = json_schema_to_gbnf(json.dumps(schema))
    except (AssertionError, ValueError, KeyError, TypeError, NotImplementedError) as e:
        raise Unsupported(f"a tool's parameters use a JSON-schema feature the grammar converter does not "
                          f"support: {e}", param="tools") from e  # fmt: skip
    call = re.sub(r"^root ::=", "call ::=", call, flags=re.MULTILINE)
    one = '"<tool_call>\\n" call "\\n</tool_call>"' if family == "hermes" else "call"
    root = f'root ::= {one} ("\\n" {one})*' if parallel else f"root ::= {one}"
    return f"{root}\n{call}"


def _hoist_defs(tool: Tool, defs: dict[str, Any]) -> dict[str, Any]:
    """The tool's parameters with their `$defs` / `definitions` moved into `defs` under
    names of their own, and every `$ref` pointed there."""
    params = json.loads(json.dumps(dict(tool.parameters)))
    local = {**params.pop("$defs", {}), **params.pop("definitions", {})}
    renamed = {k: f"{tool.name}__{k}" for k in local}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                m = re.fullmatch(r"#/(?:\$defs|definitions)/(.+)", ref)
                if m and m.group(1) in renamed:
                    node = {**node, "$ref": f"#/$defs/{renamed[m.group(1)]}"}
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    for k, v in local.items():
        defs[renamed[k]] = fix(v)
    return dict(fix(params))


# --- JSON, repaired --------------------------------------------------------------------

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}


def loads_lenient(text: str) -> Any:
    """`json.loads`, after the repairs small models need; raises ValueError if hopeless."""
    text = _undoubled(_FENCE.sub("", text.strip()))
    tripled = _TRIPLE.sub(lambda m: json.dumps(m.group(1) if m.group(1) is not None else m.group(2)), text)
    for attempt in (text, _repaired(text), _repaired(tripled)):  # triple quotes last: they may sit in a string
        try:
            return json.loads(attempt)
        except json.JSONDecodeError:
            continue
    raise ValueError(f"not JSON, even repaired: {text[:80]!r}")


def _undoubled(text: str) -> str:
    """`{{"name": …}}` as `{"name": …}`. Qwen2.5's own chat template shows the call
    format with doubled braces (a str.format escape left in), and its models copy it."""
    while text.startswith("{{") and text.endswith("}}"):
        text = text[1:-1].strip()
    return text


# Python's triple-quoted strings, as models write code inside JSON
_TRIPLE = re.compile(r'"""(.*?)"""' + r"|'''(.*?)'''", re.DOTALL)


def _repaired(text: str) -> str:
    """One pass that knows when it is inside a string: single-quoted strings become
    double-quoted, and outside strings Python literals become JSON ones and bare keys
    get quotes, and a comma before a closing bracket is dropped. Then the brackets
    (and a string) left open are closed."""
    out: list[str] = []
    i, n = 0, len(text)
    open_string = False
    while i < n:
        ch = text[i]
        if ch in "\"'":  # a string: copy it, as a double-quoted one
            j, body = i + 1, []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    body.append("'" if text[j + 1] == "'" else text[j : j + 2])  # \' is no JSON escape
                    j += 2
                    continue
                body.append('\\"' if text[j] == '"' else text[j])
                j += 1
            out.append('"' + "".join(body) + ('"' if j < n else ""))
            open_string = j >= n
            i = j + 1
            continue
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i:])
        if m:
            word = m.group(0)
            rest = text[i + len(word) :].lstrip()
            prev = "".join(out).rstrip()[-1:]
            if rest.startswith(":") and prev in ("{", ","):
                out.append(f'"{word}"')
            else:
                out.append(_PY_LITERALS.get(word, word))
            i += len(word)
            continue
        if ch in "}]":
            _drop_trailing_comma(out)
        out.append(ch)
        i += 1
    if not open_string:  # brackets about to be closed after a comma: drop it too
        _drop_trailing_comma(out)
    return _closed("".join(out))


def _drop_trailing_comma(out: list[str]) -> None:
    """Drop a comma (and the space after it) that ends `out`, outside any string: whole
    strings and words are single items of `out`, so a lone "," item is punctuation."""
    k = len(out) - 1
    while k >= 0 and out[k].isspace():
        k -= 1
    if k >= 0 and out[k] == ",":
        del out[k:]


def _closed(text: str) -> str:
    """`text` with the brackets (and a string) it left open closed."""
    stack, in_str, escaped = [], False, False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    return text + ('"' if in_str else "") + "".join(reversed(stack))


def json_values(text: str) -> list[Any]:
    """Every JSON value in `text`, one after another (a model's parallel calls, one per
    line); repaired if that fails and the text is one value."""
    decoder, values, i = json.JSONDecoder(), [], 0
    text = _undoubled(_FENCE.sub("", text.strip()))
    try:
        while i < len(text):
            value, i = decoder.raw_decode(text, i)
            values.append(value)
            while i < len(text) and text[i] in " \t\r\n,":
                i += 1
        return values
    except json.JSONDecodeError:
        return [loads_lenient(text)]


def calls_in(value: Any, tools: Sequence[Tool]) -> list[ToolCall] | None:
    """The calls a parsed JSON value holds, or None if it is not (only) calls of known tools."""
    items = value if isinstance(value, list) else [value]
    names = {t.name for t in tools}
    calls = []
    for item in items:
        if not isinstance(item, dict):
            return None
        if isinstance(item.get("function"), dict):  # OpenAI's own shape
            item = item["function"]
        name = item.get("name")
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = loads_lenient(args)
            except ValueError:
                return None
        if name not in names or not isinstance(args, dict):
            return None
        calls.append(ToolCall(new_id(), name, json.dumps(args, ensure_ascii=False)))
    return calls or None


# --- streaming -----------------------------------------------------------------------


async def split_calls(
    events: AsyncGenerator[Event, None], family: Family, tools: Sequence[Tool]
) -> AsyncGenerator[Event, None]:
    """A backend's text events with the tool calls in them parsed out; the Done says
    "tool_calls" when there were any."""
    splitter = ToolCallSplitter(family, tools)
    pending: tuple[TokenLogprob, ...] = ()  # logprobs wait for the text they belong to

    def with_logprobs(out: Event) -> Event:
        nonlocal pending
        if isinstance(out, TextDelta) and pending:
            out, pending = TextDelta(out.text, pending), ()
        return out

    async with aclosing(events):
        async for event in events:
            if isinstance(event, TextDelta):
                pending += event.logprobs
                for out in splitter.feed(event.text):
                    yield with_logprobs(out)
            elif isinstance(event, Done):
                for out in splitter.flush():
                    yield with_logprobs(out)
                yield replace(event, finish_reason="tool_calls") if splitter.calls else event
            else:
                yield event


class ToolCallSplitter:
    """Feed a reply's text as it streams; get content deltas and whole tool calls.

    Text that may be the start of a call marker is held back until it is clear. A
    reply that opens with `{`, `[` or a code fence is held whole: it may be a bare
    call, which only the end of the reply can tell."""

    def __init__(self, family: Family, tools: Sequence[Tool]):
        self.family, self.tools = family, tools
        self._open, self._close = _OPEN[family], _CLOSE[family]
        self._buf = ""
        self._in_call = False
        self._strip = False  # drop the newlines that follow a closing marker, whichever piece they come in
        self._held_whole: bool | None = None  # decided by the reply's first visible characters
        self.calls: list[ToolCall] = []

    def feed(self, text: str) -> list[Event]:
        self._buf += text
        if self._held_whole is None:
            head = self._buf.lstrip()
            if not head or (len(head) < len(self._open) and self._open.startswith(head)):
                return []  # nothing yet, or maybe the start of the call marker
            self._held_whole = head[0] in "{[`" and not head.startswith(self._open)
        if self._held_whole:
            return []
        return self._drain(final=False)

    def flush(self) -> list[Event]:
        if self._held_whole:
            calls = self._parse(self._buf)
            if calls:
                return self._emit(calls)
            self._held_whole = False  # not a bare call: read it like any reply (code, then a tagged call…)
        events = self._drain(final=True)
        if self._in_call:  # the model stopped inside a call: take it if it parses
            body, self._buf, self._in_call = self._buf, "", False
            calls = self._parse(body)
            events += self._emit(calls) if calls else [TextDelta(self._open + body)]
        elif self._buf:
            events.append(TextDelta(self._buf))
            self._buf = ""
        return events

    def _drain(self, final: bool) -> list[Event]:
        events: list[Event] = []
        while True:
            if not self._in_call:
                if self._strip:
                    self._buf = self._buf.lstrip("\n")
                    self._strip = not self._buf
                i = self._buf.find(self._open)
                if i < 0:
                    keep = 0 if final else _partial_suffix(self._buf, self._open)
                    text, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
                    if text:
                        events.append(TextDelta(text))
                    return events
                if i > 0:
                    events.append(TextDelta(self._buf[:i]))
                self._buf, self._in_call = self._buf[i + len(self._open) :], True
            if self._close is None:  # the call runs to the end of the reply
                return events
            j = self._buf.find(self._close)
            while j >= 0 and _in_string(self._buf[:j]):  # the marker is text inside the call's JSON
                j = self._buf.find(self._close, j + 1)
            if j < 0:
                return events
            body, self._buf, self._in_call = self._buf[:j], self._buf[j + len(self._close) :], False
            self._strip = True
            calls = self._parse(body)
            events += self._emit(calls) if calls else [TextDelta(self._open + body + self._close)]

    def _parse(self, text: str) -> list[ToolCall] | None:
        try:
            values = json_values(text)
        except ValueError:
            return None
        calls: list[ToolCall] = []
        for value in values:
            found = calls_in(value, self.tools)
            if found is None:
                return None
            calls += found
        return calls or None

    def _emit(self, calls: list[ToolCall]) -> list[Event]:
        self.calls += calls
        return [ToolCallEvent(c) for c in calls]


def _in_string(text: str) -> bool:
    """Whether `text`, the start of a JSON body, ends inside a double-quoted string."""
    inside = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and inside:
            escaped = True
        elif ch == '"':
            inside = not inside
    return inside


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of `text` that is a start of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0
