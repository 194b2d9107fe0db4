"""Structured output: checking a request's `response_format`, and the llama.cpp
grammar that makes an embedded model follow it token by token.

The internal form is Chat Completions' own: `{"type": "json_object"}` or
`{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`, so a
remote engine receives it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jsonschema

from ponder.errors import InvalidRequest, Unsupported


def check(response_format: Mapping[str, Any] | None, param: str = "response_format") -> Mapping[str, Any] | None:
    """The request's response_format, checked, or None for plain text."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise Unsupported(f"response_format type {kind!r} is not supported; use text, json_object or json_schema",
                          param=f"{param}.type")  # fmt: skip
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise InvalidRequest(f"Missing required parameter: '{param}.json_schema'.", param=f"{param}.json_schema",
                             code="missing_required_parameter")  # fmt: skip
    schema = spec.get("schema")
    if not isinstance(schema, Mapping):
        raise InvalidRequest(f"Invalid value for '{param}.json_schema.schema': give a JSON schema object.",
                             param=f"{param}.json_schema.schema", code="invalid_value")  # fmt: skip
    problem = schema_problem(schema)
    if problem is not None:
        raise InvalidRequest(f"Invalid JSON schema in '{param}.json_schema.schema': {problem}",
                             param=f"{param}.json_schema.schema", code="invalid_value")  # fmt: skip
    return {"type": "json_schema", "json_schema": dict(spec)}


def schema_problem(schema: Any) -> str | None:
    """What makes `schema` no JSON schema (checked against its dialect's metaschema), or None."""
    if not isinstance(schema, Mapping):
        return "a JSON schema is an object"
    if not isinstance(schema.get("$schema", ""), str):  # jsonschema would fail to look the dialect up
        return "$schema names a dialect by its URI, a string"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        return e.message
    except RecursionError:  # a `pattern` compiled as it is checked, nesting groups past Python's stack
        return "a pattern in it nests too deep"
    return None


def gbnf(response_format: Mapping[str, Any]) -> str:
    """The GBNF grammar for a checked response_format."""
    if response_format["type"] == "json_object":
        return _json_object()
    return _schema_grammar(json.dumps(response_format["json_schema"]["schema"], sort_keys=True))


def _json_object() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF  # its root is an object

    return JSON_GBNF


@lru_cache(maxsize=64)
def _schema_grammar(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(schema_json)
    except (AssertionError, ValueError, KeyError, TypeError, NotImplementedError) as e:
        raise Unsupported(f"this JSON schema uses a feature the grammar converter does not support: {e}",
                          param="response_format.json_schema.schema") from e  # fmt: skip
