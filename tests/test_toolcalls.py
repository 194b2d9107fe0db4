"""Tool-call parsing: every family, streamed in pieces cut at every position, and
the JSON repairs small models need."""

from __future__ import annotations

import json

import pytest

from ponder.formats.toolcalls import ToolCallSplitter, family_of, forced_grammar, loads_lenient
from ponder.types import Event, TextDelta, Tool, ToolCallEvent

TOOLS = [Tool("get_weather", "weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}}),
         Tool("add", "add two numbers", {"type": "object"})]  # fmt: skip


def run(text: str, family: str = "hermes", cut: int | None = None) -> tuple[str, list[tuple[str, dict]]]:  # type: ignore[type-arg]
    splitter = ToolCallSplitter(family, TOOLS)  # type: ignore[arg-type]
    pieces = [text] if cut is None else [text[:cut], text[cut:]]
    events: list[Event] = []
    for piece in pieces:
        events += splitter.feed(piece)
    events += splitter.flush()
    content = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls = [(e.call.name, json.loads(e.call.arguments)) for e in events if isinstance(e, ToolCallEvent)]
    return content, calls


HERMES = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.mark.parametrize("cut", range(len(HERMES) + 1))
def test_hermes_call_split_at_every_position(cut: int) -> None:
    assert run(HERMES, cut=cut) == ("Let me check.\n", [("get_weather", {"city": "Paris"})])


def test_parallel_calls_and_text_after() -> None:
    text = ('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>\n'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>')  # fmt: skip
    assert run(text) == ("", [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Oslo"})])


@pytest.mark.parametrize(
    "bare",
    [
        '{"name": "add", "arguments": {"a": 1, "b": 2}}',
        '```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```',
        "{'name': 'add', 'arguments': {'a': 1, 'b': 2}}",
        '{"name": "add", "arguments": {"a": 1, "b": 2,},}',
        '{name: "add", arguments: {a: 1, b: 2}}',
        '{"name": "add", "arguments": {"a": 1, "b": 2',
        '{"name": "add", "parameters": {"a": 1, "b": 2}}',
        '{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}',
        '[{"name": "add", "arguments": {"a": 1, "b": 2}}]',
        '{{"name": "add", "arguments": {"a": 1, "b": 2}}}',  # as Qwen2.5's template shows the format
        '<tool_call>\n{{"name": "add", "arguments": {"a": 1, "b": 2}}}\n</tool_call>',
    ],
)
def test_bare_and_near_miss_json_calls_are_repaired(bare: str) -> None:
    assert run(bare) == ("", [("add", {"a": 1, "b": 2})])


def test_triple_quoted_strings_in_a_call_become_json_strings() -> None:
    text = '```json\n{"name": "run", "arguments": {"code": """\n    x = "a"\n    print(x)\n    """}}\n```'
    assert loads_lenient(text) == {"name": "run", "arguments": {"code": '\n    x = "a"\n    print(x)\n    '}}
    assert loads_lenient("{'code': '''a\nb'''}") == {"code": "a\nb"}


def test_unterminated_tag_still_parses_and_python_literals_are_fixed() -> None:
    assert run('<tool_call>{"name": "add", "arguments": {"a": 1, "b": True}}') == ("", [("add", {"a": 1, "b": True})])


def test_what_is_not_a_call_of_a_known_tool_stays_text() -> None:
    assert run('{"answer": 42}') == ('{"answer": 42}', [])
    unknown = '<tool_call>{"name": "launch", "arguments": {}}</tool_call>'
    assert run(unknown) == (unknown, [])
    assert run("plain <tool words> here") == ("plain <tool words> here", [])


def test_other_families() -> None:
    mistral = 'Sure. [TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 2}}]'
    assert run(mistral, "mistral", cut=14) == ("Sure. ", [("add", {"a": 1, "b": 2})])
    llama = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}'
    assert run(llama, "llama3", cut=5) == ("", [("get_weather", {"city": "Rome"})])
    assert family_of("... [TOOL_CALLS] ...") == "mistral" and family_of("<|python_tag|>") == "llama3"
    assert family_of(None) == "hermes"


def test_loads_lenient_gives_up_on_prose() -> None:
    with pytest.raises(ValueError):
        loads_lenient("the weather is nice")


def test_code_then_a_tagged_call_keeps_both() -> None:
    text = '```py\nprint(1)\n```\n<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    assert run(text) == ("```py\nprint(1)\n```\n", [("add", {"a": 1, "b": 2})])


def test_a_marker_that_arrives_in_pieces_and_calls_one_per_line() -> None:
    splitter = ToolCallSplitter("mistral", TOOLS)
    events: list[Event] = []
    for piece in ["[", "TOOL_CALLS", "]", ' [{"name": "add", "arguments": {"a": 1, "b": 2}}]']:
        events += splitter.feed(piece)
    events += splitter.flush()
    assert [type(e) for e in events] == [ToolCallEvent]
    lines = '{"name": "add", "arguments": {"a": 1, "b": 2}}\n{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    assert run(lines, "llama3")[1] == [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Oslo"})]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{'x': 'None left'}", {"x": "None left"}),
        ("{'x': 'a, y: 2'}", {"x": "a, y: 2"}),
        ('{"a": 1,', {"a": 1}),
        ('{"q": "t, city: P",}', {"q": "t, city: P"}),
        ('{"a": "it\\"s", b: [1, 2,]}', {"a": 'it"s', "b": [1, 2]}),
    ],
)
def test_repairs_leave_strings_alone(text: str, value: object) -> None:
    assert loads_lenient(text) == value


def test_forced_grammar_takes_tools_with_shared_definitions() -> None:
    schema = {"type": "object", "properties": {"where": {"$ref": "#/$defs/Place"}}, "required": ["where"],
              "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip
    grammar = forced_grammar([Tool("visit", "", schema), Tool("add", "", {"type": "object"})], "hermes", None, True)
    assert grammar.startswith("root ::=") and "city" in grammar


def test_an_escaped_single_quote_in_a_json_string_is_repaired() -> None:
    assert loads_lenient('{"code": "print(\\\'hi\\\')"}') == {"code": "print('hi')"}


def test_triple_quotes_inside_a_string_are_left_alone() -> None:
    assert loads_lenient("{\"code\": \"x = '''a'''\"") == {"code": "x = '''a'''"}
