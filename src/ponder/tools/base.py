"""Server-side tools: what a hosted tool is, and the set of them a request gets.

A hosted tool is offered to the model as a function. When the model calls it, the
server runs it (`modes.tools` holds the loop) and the model reads the result and
goes on; the client sees the call and its result in the stream but has nothing to
do. The client's own function tools are returned to it as usual.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ponder.types import Tool


class ToolFailed(Exception):
    """A tool could not do what it was asked; the message goes back to the model."""


@dataclass(frozen=True)
class Result:
    text: str  # what the model reads
    data: Mapping[str, Any] = field(default_factory=dict)  # what the wire shows beside it
    load: tuple[Tool, ...] = ()  # function tools the result makes available (tool search)


@dataclass(frozen=True)
class Hosted:
    kind: str  # calculator | file_search | code_interpreter | mcp | web_fetch | tool_search
    spec: Tool  # the function the model sees
    call: Callable[[dict[str, Any]], Awaitable[Result]]
    timeout_s: float = 30.0
    label: str = ""  # an MCP server's name


@dataclass(frozen=True)
class Toolbox:
    """The hosted tools of one request, by the function name the model calls."""

    hosted: Mapping[str, Hosted] = field(default_factory=dict)
    max_steps: int = 4  # rounds that may call hosted tools; one more round answers without them

    def __bool__(self) -> bool:
        return bool(self.hosted)

    def only(self, names: set[str]) -> Toolbox:
        return Toolbox({n: h for n, h in self.hosted.items() if n in names}, self.max_steps)

    @property
    def specs(self) -> tuple[Tool, ...]:
        return tuple(h.spec for h in self.hosted.values())


def arguments(text: str) -> dict[str, Any]:
    """A call's arguments as a JSON object, or ToolFailed saying why not."""
    try:
        args = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise ToolFailed(f"the arguments are not valid JSON: {e}") from None
    if not isinstance(args, dict):
        raise ToolFailed("the arguments must be a JSON object")
    return args


def string_arg(args: Mapping[str, Any], name: str) -> str:
    """A required string argument. Small models sometimes name it otherwise; a call
    with exactly one string argument is taken as meaning it."""
    value = args.get(name)
    if isinstance(value, str) and value.strip():
        return value
    strings = [v for v in args.values() if isinstance(v, str) and v.strip()]
    if len(strings) == 1:
        return strings[0]
    raise ToolFailed(f"missing the string argument {name!r}")
