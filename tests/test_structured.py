"""Structured output without a model: checking response_format, the grammar it
becomes, and that engine defaults keep it."""

from __future__ import annotations

import pytest

from ponder.engine.common import with_defaults
from ponder.errors import InvalidRequest, Unsupported
from ponder.formats import structured
from ponder.types import SamplingParams

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
FMT = {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA, "strict": True}}


def test_engine_defaults_fill_sampling_and_keep_everything_else() -> None:
    defaults = SamplingParams(temperature=0.5, top_p=0.9)
    p = with_defaults(SamplingParams(max_tokens=5, stop=("x",), top_p=0.2, response_format=FMT), defaults)
    assert (p.max_tokens, p.stop, p.response_format) == (5, ("x",), FMT)
    assert (p.temperature, p.top_p) == (0.5, 0.2)


def test_check_normalises_and_refuses_by_param() -> None:
    assert structured.check({"type": "text"}) is None and structured.check(None) is None
    assert structured.check({"type": "json_object"}) == {"type": "json_object"}
    assert structured.check(FMT) == FMT
    with pytest.raises(Unsupported) as e:
        structured.check({"type": "yaml"})
    assert e.value.param == "response_format.type"
    with pytest.raises(InvalidRequest) as e2:
        structured.check({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}})
    assert e2.value.param == "response_format.json_schema.schema"


def test_the_grammar_follows_the_schema() -> None:
    grammar = structured.gbnf(FMT)
    assert "root ::=" in grammar and '"\\"n\\""' in grammar
    assert "root" in structured.gbnf({"type": "json_object"})
    with pytest.raises(Unsupported):
        structured.gbnf({"type": "json_schema", "json_schema": {"schema": {"not": {"type": "string"}}}})
