"""The BFCL scorer and dialect conversion, on items written here."""

from __future__ import annotations

from typing import Any

from ponder.evals.bfcl import Item, openai_tools, score

FUNCS = [{"name": "math.add", "description": "add", "parameters": {"type": "dict", "properties": {
    "a": {"type": "integer"}, "b": {"type": "float"}, "unit": {"type": "string"},
    "opts": {"type": "dict", "properties": {"round": {"type": "boolean"}}}}, "required": ["a", "b"]}}]  # fmt: skip


def item(category: str, truth: list[dict[str, Any]]) -> Item:
    return Item("x", category, [{"role": "user", "content": "?"}], FUNCS, truth)


def test_dialect_becomes_json_schema_and_names_lose_their_dots() -> None:
    (tool,) = openai_tools(FUNCS)
    assert tool["function"]["name"] == "math_add"
    params = tool["function"]["parameters"]
    assert params["type"] == "object" and params["properties"]["b"]["type"] == "number"
    assert params["properties"]["opts"]["type"] == "object"


def test_simple_match_rules() -> None:
    truth = [{"math.add": {"a": [1], "b": [2.0], "unit": ["Meters", ""], "opts": [""]}}]
    simple = item("simple_python", truth)
    assert score(simple, [("math_add", {"a": 1, "b": 2})]), "int passes for float; optional left out"
    assert score(simple, [("math_add", {"a": 1, "b": 2.0, "unit": "meters"})]), "strings ignore case"
    assert not score(simple, [("math_add", {"a": 1})]), "a required parameter is missing"
    assert not score(simple, [("math_add", {"a": 1, "b": 2, "extra": 3})]), "an unknown parameter"
    assert not score(simple, [("math_add", {"a": 2, "b": 2})]), "a wrong value"
    assert not score(simple, []) and not score(simple, [("math_add", {"a": 1, "b": 2})] * 2)
    assert not score(simple, [("math_add", {"a": True, "b": 2})]), "a bool is not an int"


def test_parallel_calls_match_in_any_order_and_irrelevance_wants_none() -> None:
    truth = [{"math.add": {"a": [1], "b": [2.0]}}, {"math.add": {"a": [3], "b": [4.0]}}]
    par = item("parallel", truth)
    assert score(par, [("math_add", {"a": 3, "b": 4}), ("math_add", {"a": 1, "b": 2})])
    assert not score(par, [("math_add", {"a": 1, "b": 2}), ("math_add", {"a": 1, "b": 2})])
    assert score(item("irrelevance", []), []) and not score(item("irrelevance", []), [("math_add", {})])


def test_nested_dicts_hold_allowed_values_per_key() -> None:
    truth = [{"math.add": {"a": [1], "b": [1.0], "opts": [{"round": [True]}]}}]
    assert score(item("simple_python", truth), [("math_add", {"a": 1, "b": 1, "opts": {"round": True}})])
    assert not score(item("simple_python", truth), [("math_add", {"a": 1, "b": 1, "opts": {"round": False}})])
