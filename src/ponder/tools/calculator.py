"""A calculator: arithmetic expressions evaluated exactly as written, never `eval`.

The expression is parsed with Python's own grammar and walked: numbers, + - * /
// % **, parentheses, and a short list of math functions and constants. Anything
else (names, attributes, calls of other things) is refused, and powers and
factorials are bounded so no expression can hang the server.
"""

from __future__ import annotations

import ast
import asyncio
import math
import operator
import re
from collections.abc import Callable
from typing import Any

from ponder.tools.base import Hosted, Result, ToolFailed, arguments, string_arg
from ponder.types import Tool

NAME = "calculator"
SPEC = Tool(
    NAME,
    "Evaluate an arithmetic expression exactly, e.g. (17 * 23 + 4) / 3 or sqrt(2) * pi. Supports + - * / // % **, "
    "parentheses, sqrt, log, log10, exp, sin, cos, tan, floor, ceil, round, abs, min, max, factorial, pi and e.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "the expression"}},
        "required": ["expression"],
    },
)

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}  # fmt: skip
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp, "sin": math.sin,
    "cos": math.cos, "tan": math.tan, "floor": math.floor, "ceil": math.ceil, "round": round, "abs": abs,
    "min": min, "max": max, "factorial": math.factorial,
}  # fmt: skip
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1_000
MAX_BITS = 12_000  # of any whole number on the way (about 3,600 digits): every step stays fast
MAX_ROUND_DIGITS = 100
MAX_LENGTH = 500


def evaluate(expression: str) -> int | float:
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not re.search(r"[A-Za-z_]\s*\(", text):  # 1,234 is one number, where no call takes arguments
        text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    if len(text) > MAX_LENGTH:
        raise ToolFailed(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ToolFailed(f"not an arithmetic expression: {expression!r}") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolFailed("division by zero") from None
    except (ValueError, OverflowError, TypeError) as e:
        raise ToolFailed(f"cannot evaluate {expression!r}: {e}") from None
    if isinstance(value, complex):
        raise ToolFailed(f"{expression!r} has no real value")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise ValueError(f"exponent {right} is too large")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and right * math.log2(abs(left)) > MAX_BITS
            ):
                raise ValueError("the result would be too large")
        return _bounded(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise ValueError("functions take positional arguments only")
        args = [_eval(a) for a in node.args]
        name = node.func.id
        if name == "factorial" and args and (not float(args[0]).is_integer() or args[0] > MAX_FACTORIAL):
            raise ValueError(f"factorial takes a whole number up to {MAX_FACTORIAL}")
        if name == "round" and len(args) > 1 and abs(args[1]) > MAX_ROUND_DIGITS:
            raise ValueError(f"round to at most {MAX_ROUND_DIGITS} digits")
        return _bounded(_FUNCTIONS[name](*(int(a) if name == "factorial" else a for a in args)))
    raise ToolFailed(f"not allowed in an expression: {ast.unparse(node)!r}")


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise ValueError("a number on the way is too large")
    return value


def _format(value: int | float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.12g}"


async def _call(args: dict[str, Any]) -> Result:
    expression = string_arg(args, "expression")
    value = _format(await asyncio.to_thread(evaluate, expression))
    return Result(value, {"expression": expression, "result": value})


def hosted() -> Hosted:
    return Hosted(NAME, SPEC, _call, timeout_s=5.0)


__all__ = ["NAME", "arguments", "evaluate", "hosted"]
