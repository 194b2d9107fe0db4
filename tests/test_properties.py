"""Properties of the stream parsers, whatever the text and wherever the stream is cut:
the `<think>` splitter, the tool-call splitter of each family and its JSON repair, and
the SSE that the server writes as the remote backend reads it back.

Each parser is checked against a whole-text reference written here with str.partition,
so a property failing names either a chunking bug or a change of documented semantics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ponder.backends.remote import RemoteBackend, _sse_json
from ponder.formats.reasoning import CLOSE, OPEN, ThinkSplitter
from ponder.formats.toolcalls import Family, ToolCallSplitter, json_values, loads_lenient, split_calls
from ponder.server.encode import ChunkEncoder, sse
from ponder.types import (
    ChatRequest,
    Done,
    Event,
    FinishReason,
    Message,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallEvent,
    Usage,
)
from tests.streams import cut_up, split_at

PROPERTY = settings(max_examples=200, deadline=None)  # for these tests only: no global profile


def texts_with(bits: Sequence[str]) -> st.SearchStrategy[str]:
    """Random text with markers, and pieces of them, mixed in."""
    return st.lists(st.one_of(st.text(max_size=6), st.sampled_from(bits)), max_size=12).map("".join)


# --- the <think> splitter ---------------------------------------------------------------

SHORT = st.text("ab \n<>/", max_size=4)
BLOCKS = st.lists(st.tuples(SHORT, SHORT), max_size=4).map(lambda bs: "".join(a + OPEN + r + CLOSE for a, r in bs))
THINK_TEXT = st.one_of(
    texts_with([OPEN, CLOSE, "<", "</", "<th", "<think", "</thin", "think>", ">", "\n", "\n\n", " "]),
    st.tuples(BLOCKS, SHORT, st.sampled_from(["", OPEN])).map("".join),  # answer, then reasoning, in turn
)


def think(pieces: list[str], in_reasoning: bool) -> tuple[str, str]:
    s = ThinkSplitter(in_reasoning=in_reasoning)
    out = [s.feed(p) for p in pieces] + [s.flush()]
    return "".join(r for r, _ in out), "".join(a for _, a in out)


def think_reference(text: str, in_reasoning: bool) -> tuple[str, str]:
    """The whole text's split: the markers alternate (a second <think> inside reasoning,
    or a </think> in the answer, is text); text outside them, before or after, is answer;
    an unclosed block is reasoning to the end; answer text after a </think> loses the
    newlines it starts with."""
    reasoning, answer, closed = [], [], False
    while True:
        part, found, text = text.partition(CLOSE if in_reasoning else OPEN)
        if in_reasoning:
            reasoning.append(part)
        else:
            answer.append(part.lstrip("\n") if closed else part)
        if not found:
            return "".join(reasoning), "".join(answer)
        closed = closed or in_reasoning
        in_reasoning = not in_reasoning


@PROPERTY
@given(cut_up(THINK_TEXT), st.booleans())
@example(("<think>a</think>x<think>b</think>\ny", ["<think>a</think>x", "<think>b</think>\ny"]), False)
@example(("\n<think>r</think>c", ["\n", "<think>r</think>c"]), False)
def test_think_split_is_the_whole_texts_wherever_the_stream_is_cut(cut: tuple[str, list[str]], prompted: bool) -> None:
    # The examples: newlines were stripped after a </think> only when they came in the
    # same piece as it, and before a <think> when a </think> came later in that piece.
    text, pieces = cut
    assert think(pieces, prompted) == think([text], prompted) == think_reference(text, prompted)


@PROPERTY
@given(cut_up(st.text()))
def test_text_without_markers_is_all_answer_and_kept_whole(cut: tuple[str, list[str]]) -> None:
    text, pieces = cut
    if OPEN not in text:
        assert think(pieces, False) == ("", text)
    if CLOSE not in text:
        assert think(pieces, True) == (text, "")


# --- tool calls --------------------------------------------------------------------------

MARKERS = {"hermes": "<tool_call>", "mistral": "[TOOL_CALLS]", "llama3": "<|python_tag|>"}
FAMILIES: list[Family] = ["hermes", "mistral", "llama3"]
NEAR_MISSES = ["<", "<tool", "<tool_call", "</tool_call>", "</tool_call", "[TOOL", "[TOOL_CALLS", "<|python",
               "<|python_tag|", "\n", "\n\n", "{", "}", "[", "`", '"', " "]  # fmt: skip
PLAIN = texts_with(NEAR_MISSES).filter(lambda t: not any(m in t for m in MARKERS.values()))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
OBJECTS = st.dictionaries(st.text(max_size=8), JSON, max_size=4)
NAMES = st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True), min_size=1, max_size=4, unique=True)

Item = tuple[str, Any]  # ("text", str) or ("call", (name, arguments))


def items(events: Sequence[Event]) -> list[Item]:
    """Events as the client sees them: text runs merged, calls by name and decoded arguments."""
    out: list[Item] = []
    for e in events:
        if isinstance(e, TextDelta) and e.text:
            if out and out[-1][0] == "text":
                out[-1] = ("text", out[-1][1] + e.text)
            else:
                out.append(("text", e.text))
        elif isinstance(e, ToolCallEvent):
            out.append(("call", (e.call.name, json.loads(e.call.arguments))))
    return out


def expected(parts: Sequence[Item]) -> list[Item]:
    """`parts` as `items` gives them: empty text dropped, text runs merged."""
    events = [ToolCallEvent(ToolCall("", v[0], json.dumps(v[1]))) if k == "call" else TextDelta(v) for k, v in parts]
    return items(events)


def tool_calls(family: Family, tools: Sequence[Tool], pieces: Sequence[str]) -> list[Item]:
    s = ToolCallSplitter(family, tools)
    events = [e for p in pieces for e in s.feed(p)] + s.flush()
    assert len(s.calls) == sum(isinstance(e, ToolCallEvent) for e in events)
    return items(events)


@st.composite
def call_json(draw: st.DrawFn, names: list[str]) -> tuple[dict[str, Any], tuple[str, dict[str, Any]]]:
    """One call as a model writes it: arguments (or llama's parameters) inline, or as the
    API's JSON string."""
    name, args = draw(st.sampled_from(names)), draw(OBJECTS)
    key = draw(st.sampled_from(["arguments", "parameters"]))
    value = json.dumps(args, ensure_ascii=draw(st.booleans())) if draw(st.booleans()) else args
    return {"name": name, key: value}, (name, args)


@st.composite
def tool_stream(draw: st.DrawFn, family: Family) -> tuple[list[Tool], str, list[Item]]:
    """Plain text and well-formed calls in `family`'s format; what the splitter should make of it."""
    names = draw(NAMES)
    calls = draw(st.lists(call_json(names), min_size=1, max_size=3))
    ascii_only = draw(st.booleans())
    dump = lambda value: json.dumps(value, ensure_ascii=ascii_only)  # noqa: E731
    text = draw(PLAIN)
    want: list[Item] = [("text", text)]
    if family == "hermes":  # each call tagged, plain text after each; the newlines after a call are no content
        for written, call in calls:
            pad = draw(st.sampled_from(["", "\n"]))
            after = draw(PLAIN)
            text += f"<tool_call>{pad}{dump(written)}{pad}</tool_call>{after}"
            want += [("call", call), ("text", after.lstrip("\n"))]
    elif family == "mistral":  # one list of calls, to the end of the reply
        text += "[TOOL_CALLS]" + draw(st.sampled_from(["", " "])) + dump([w for w, _ in calls])
        want += [("call", c) for _, c in calls]
    else:  # llama3: the tag, then the calls' JSON one after another
        text += "<|python_tag|>" + draw(st.sampled_from(["\n", ", ", " "])).join(dump(w) for w, _ in calls)
        want += [("call", c) for _, c in calls]
    return [Tool(n) for n in names], text, expected(want)


Case = tuple[Family, list[Tool], str, list[str], list[Item]]  # family, tools, text, its pieces, what comes out


@st.composite
def family_stream(draw: st.DrawFn) -> Case:
    family = draw(st.sampled_from(FAMILIES))
    tools, text, want = draw(tool_stream(family))
    _, pieces = draw(cut_up(st.just(text)))
    return family, tools, text, pieces, want


CALL_THEN_TEXT = '<tool_call>{"name": "f", "arguments": {}}</tool_call>\nok'
NEWLINE_APART: Case = ("hermes", [Tool("f")], CALL_THEN_TEXT, [CALL_THEN_TEXT[:-3], CALL_THEN_TEXT[-3:]],
                       [("call", ("f", {})), ("text", "ok")])  # fmt: skip
MARKER_IN_ARGS = '<tool_call>{"name": "f", "arguments": {"": {"</tool_call>": null}}}</tool_call>'
CLOSE_IN_A_STRING: Case = ("hermes", [Tool("f")], MARKER_IN_ARGS, [MARKER_IN_ARGS[:40], MARKER_IN_ARGS[40:]],
                           [("call", ("f", {"": {"</tool_call>": None}}))])  # fmt: skip


@PROPERTY
@given(family_stream())
@example(NEWLINE_APART)  # the newline after the call came in a piece of its own, and was kept as content
@example(CLOSE_IN_A_STRING)  # the closing marker as text inside the arguments (found by Hypothesis)
def test_well_formed_calls_come_out_exactly_wherever_the_stream_is_cut(case: Case) -> None:
    family, tools, text, pieces, want = case
    assert tool_calls(family, tools, pieces) == tool_calls(family, tools, [text]) == want


@PROPERTY
@given(st.sampled_from(FAMILIES), NAMES, st.lists(OBJECTS, min_size=1, max_size=3), st.data())
def test_a_reply_that_is_nothing_but_call_json_is_calls(
    family: Family, names: list[str], args: list[dict[str, Any]], data: st.DataObject
) -> None:
    calls = [(data.draw(st.sampled_from(names)), a) for a in args]
    bare = "\n".join(json.dumps({"name": n, "arguments": a}) for n, a in calls)
    text = data.draw(st.sampled_from(["", " ", "\n"])) + (bare if len(calls) > 1 or data.draw(st.booleans()) else
                                                           f"```json\n{bare}\n```")  # fmt: skip
    _, pieces = data.draw(cut_up(st.just(text)))
    assert tool_calls(family, [Tool(n) for n in names], pieces) == expected([("call", c) for c in calls])


ANY_TEXT = st.one_of(st.text(), texts_with([*NEAR_MISSES, *MARKERS.values(), '{"name": "f", "arguments": {}}',
                                            "{'name': 'f'}", "```", "```json\n", ",", "]"]))  # fmt: skip


@PROPERTY
@given(st.sampled_from(FAMILIES), cut_up(ANY_TEXT))
def test_any_text_parses_without_error_and_the_same_wherever_cut(family: Family, cut: tuple[str, list[str]]) -> None:
    text, pieces = cut
    tools = [Tool("f")]
    got = tool_calls(family, tools, pieces)
    assert got == tool_calls(family, tools, [text])
    if not any(k == "call" for k, _ in got) and MARKERS[family] not in text:
        assert got == expected([("text", text)])  # no call, no marker: the text, untouched


@PROPERTY
@given(st.sampled_from(FAMILIES), cut_up(st.text()))
def test_plain_text_is_never_a_call_and_comes_back_whole(family: Family, cut: tuple[str, list[str]]) -> None:
    text, pieces = cut
    assert tool_calls(family, [Tool("f")], pieces) == expected([("text", text)])


@PROPERTY
@given(family_stream())
def test_split_calls_keeps_the_calls_the_text_and_the_logprobs_order(case: Case) -> None:
    family, tools, _, pieces, want = case
    fed = [TokenLogprob(str(i), -float(i)) for i in range(len(pieces))]

    async def backend() -> AsyncGenerator[Event, None]:
        for piece, lp in zip(pieces, fed):
            yield TextDelta(piece, (lp,))
        yield Done("stop", Usage(1, len(pieces)))

    async def run() -> list[Event]:
        return [e async for e in split_calls(backend(), family, tools)]

    events = asyncio.run(run())
    assert items(events) == want
    assert events[-1] == Done("tool_calls", Usage(1, len(pieces)))
    out = [lp for e in events if isinstance(e, TextDelta) for lp in e.logprobs]
    assert out == fed[: len(out)]  # in order, none twice; those of the calls' own tokens may go


# --- JSON repair -------------------------------------------------------------------------


@PROPERTY
@given(JSON, st.booleans())
def test_valid_json_needs_no_repair(value: Any, ascii_only: bool) -> None:
    assert loads_lenient(json.dumps(value, ensure_ascii=ascii_only)) == value


@PROPERTY
@given(st.lists(JSON, min_size=1, max_size=4), st.sampled_from(["\n", " ", ", ", "\n\n"]))
def test_json_values_reads_values_one_after_another(values: list[Any], sep: str) -> None:
    assert json_values(sep.join(json.dumps(v) for v in values)) == values


PRINTABLE = st.text(st.characters(codec="utf-8")).filter(str.isprintable)
PYTHON = st.recursive(
    st.none() | st.booleans() | st.integers() | PRINTABLE,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(PRINTABLE, inner, max_size=4),
    max_leaves=10,
)


@PROPERTY
@given(PYTHON)
@example({",}": None})  # a comma before a bracket inside a string is the string's (found by this property)
@example(["a,]", {"k": "x, }"}])
def test_python_literals_are_repaired_into_the_same_value(value: Any) -> None:
    assert loads_lenient(repr(value)) == value  # single quotes, True/False/None, \' escapes


# --- SSE: the server's encoder, the remote backend's decoder -------------------------------

# JSON escapes control characters, but not the other characters str.splitlines ends lines at
TRICKY = ["data: [DONE]", "data:", "\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x1c", "\x0b", "😀", "é", ":"]
SSE_TEXT = st.one_of(st.text(st.characters(codec="utf-8")), st.lists(st.sampled_from(TRICKY), max_size=4).map("".join))
SSE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | SSE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SSE_TEXT, inner, max_size=3),
    max_leaves=8,
)
BODIES = st.lists(st.dictionaries(SSE_TEXT, SSE_JSON, max_size=4).filter(lambda d: "error" not in d), max_size=5)


class Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@st.composite
def on_the_wire(draw: st.DrawFn, stream: str) -> list[bytes]:
    """`stream` as an engine may send it: lines ended by LF, CRLF or CR, in bytes cut
    anywhere (inside a character's UTF-8 too)."""
    wire = stream.replace("\n", draw(st.sampled_from(["\n", "\r\n", "\r"]))).encode()
    every = set(range(1, len(wire)))
    return split_at(wire, draw(st.one_of(st.sets(st.integers(0, len(wire)), max_size=8), st.just(every))))


async def decoded(chunks: list[bytes]) -> list[dict[str, Any]]:
    return [body async for body in _sse_json(httpx.Response(200, stream=Chunks(chunks)))]


@PROPERTY
@given(BODIES, st.data())
@example([{"t": "a\u2028b"}], None)  # httpx's aiter_lines ended the line there
@example([{"t": "\x85"}], None)
def test_sse_round_trip_gives_back_every_body_in_order(
    bodies: list[dict[str, Any]], data: st.DataObject | None
) -> None:
    stream = "".join(sse(b) for b in bodies) + ": keep-alive\n\ndata: [DONE]\n\n" + sse({"after": "done"})
    chunks = data.draw(on_the_wire(stream)) if data is not None else [stream.encode()]
    assert asyncio.run(decoded(chunks)) == bodies


EVENTS = st.lists(
    st.one_of(
        st.builds(TextDelta, SSE_TEXT.filter(bool), st.tuples(st.builds(TokenLogprob, SSE_TEXT, st.floats(-50, 0)))),
        st.builds(ReasoningDelta, SSE_TEXT),
        st.builds(ToolCallEvent, st.builds(ToolCall, st.just("call_1"), st.sampled_from(["f", "g"]), SSE_TEXT)),
    ),
    max_size=6,
)


@pytest.fixture(scope="module")
def remote() -> RemoteBackend:
    backend = RemoteBackend("http://engine/v1")  # once: its client's TLS setup is slow, and each example replaces it
    asyncio.run(backend.close())
    return backend


@PROPERTY
@given(EVENTS, st.sampled_from(["stop", "length"]), st.builds(Usage, st.integers(0, 9), st.integers(0, 9)), st.data())
def test_what_the_server_streams_a_remote_backend_reads_back(
    remote: RemoteBackend, events: list[Event], reason: FinishReason, usage: Usage, data: st.DataObject
) -> None:
    enc = ChunkEncoder("m", include_usage=True)
    stream = enc.start() + "".join(enc.event(0, e) for e in events) + enc.event(0, Done(reason, usage))
    chunks = data.draw(on_the_wire(stream))

    async def read() -> list[Event]:
        engine = httpx.MockTransport(lambda request: httpx.Response(200, stream=Chunks(chunks)))
        remote._client = httpx.AsyncClient(base_url=remote.base_url, transport=engine)
        try:
            return [e async for e in remote.stream(ChatRequest("m", (Message("user", "hi"),)))]
        finally:
            await remote.close()

    got = asyncio.run(read())
    assert read_back(got) == read_back(events)
    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    empty_as_object = [replace(c, arguments=c.arguments or "{}") for c in calls]
    assert [e.call for e in got if isinstance(e, ToolCallEvent)] == empty_as_object
    assert got[-1] == Done("tool_calls" if calls else reason, usage)


def read_back(events: Sequence[Event]) -> tuple[str, str, list[TokenLogprob]]:
    """What survives the wire however it is cut: the answer, the reasoning, the logprobs."""
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return text, reasoning, [lp for e in events if isinstance(e, TextDelta) for lp in e.logprobs]
