"""The agent loop: a mode's run, with the server's own tools called in between.

Each round is one run of the mode (Instant or Thinking) with the tools on offer.
A round whose calls are all hosted tools is answered here: each call runs, with its
own timeout, and the model reads the results in the next round. A tool that fails
gives the model an error message as its result, never a failed request. A request
that asks in words for a hosted tool ("use Python to compute…") has that tool called
in the first round, and once more if that call failed (a program that raised: the
model reads its error and writes it again, rather than explaining the failure); a
call the client forces (`tool_choice`) is forced once, as the API says. The
loop ends when the model answers, calls a client's tool
(returned to the client as usual, after the hosted calls of that round have run),
runs out of `max_output_tokens`, or reaches `max_steps`; the last round is offered
no hosted tools, so it must answer. A call that already succeeded is not run again: a round
of nothing but repeats is dropped, and the next round is that last one.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import replace

from ponder.tools.base import Hosted, Toolbox, ToolFailed, arguments
from ponder.types import (
    NO_USAGE,
    ChatRequest,
    Done,
    Event,
    Message,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallEvent,
    ToolRun,
    Usage,
)

log = logging.getLogger(__name__)
Runner = Callable[[ChatRequest], AsyncGenerator[Event, None]]
FORCED_RETRIES = 1  # a call asked for in words whose every run failed is forced once more


async def run(runner: Runner, chat: ChatRequest, box: Toolbox, agent: int | None = None) -> AsyncGenerator[Event, None]:
    """`runner` runs one round of the mode on a request; `chat.tools` holds the hosted
    tools' functions beside the client's."""
    total = NO_USAGE
    budget = chat.params.max_tokens  # for all the rounds together
    retries = 0  # forced calls that may be forced again after they failed
    if (named := asked_for(chat, box)) is not None and chat.tool_choice == "auto" and chat.tool_name is None:
        chat = replace(chat, tool_name=named)  # asked for in words: the first round calls it (forced once, below)
        retries = FORCED_RETRIES
    seen: set[tuple[str, str]] = set()  # calls already run: a repeat gets no second run
    answer_now = False
    for step in range(box.max_steps + 1):
        hosting = step < box.max_steps and not answer_now
        offered = chat if hosting else _without(chat, box)
        calls: list[ToolCall] = []
        text: list[str] = []
        client_calls = False
        done: Done | None = None
        async with aclosing(runner(offered)) as events:
            async for event in events:
                if isinstance(event, Done):
                    done = event
                    continue
                if isinstance(event, ToolCallEvent) and hosting and event.call.name in box.hosted:
                    calls.append(event.call)
                    continue
                client_calls |= isinstance(event, ToolCallEvent)
                if isinstance(event, TextDelta):
                    text.append(event.text)
                yield event
        assert done is not None, "a mode's stream ends with Done"
        total += done.usage
        fresh = [c for c in calls if (c.name, c.arguments) not in seen]
        runs = await asyncio.gather(*(execute(box.hosted[c.name], c, agent) for c in fresh))
        seen.update((r.call.name, r.call.arguments) for r in runs if not r.error)  # a failed call may be retried
        for r in runs:
            yield r
        loaded = tuple(t for r in runs for t in r.data.get("load", ()))
        total += Usage(0, 0, tool_calls=len(runs))
        left = None if budget is None else budget - total.completion_tokens
        spent = left is not None and left <= 0
        if not calls or client_calls or done.finish_reason != "tool_calls" or spent:
            cut = calls and not client_calls and done.finish_reason == "tool_calls"  # only `spent` ends it
            yield Done("length" if cut else done.finish_reason, total)
            return
        # A round that only repeats calls already answered (small models loop so) is
        # dropped, and the next round answers from what the model has read.
        answer_now = not fresh
        params = chat.params if left is None else replace(chat.params, max_tokens=left)
        chat = replace(chat, params=params)
        if fresh:
            turn = Message("assistant", "".join(text), tool_calls=tuple(fresh))
            chat = replace(chat, messages=(*chat.messages, turn, *(r.result for r in runs)),
                           tools=_with(chat.tools, loaded, box))  # fmt: skip
        if chat.tool_name in box.hosted or chat.tool_choice == "required":  # a forced call is forced once,
            if retries and runs and all(map(_failed, runs)):  # or again when all of it failed: the model
                retries -= 1  # has read the error, and fixes the call rather than explains it
            else:
                chat = replace(chat, tool_choice="auto", tool_name=None)
    raise AssertionError("unreachable: the last round offers no hosted tools")


# Words that ask for a tool to be used, by its kind: "use Python to…", "compute … in
# Python", "with the calculator". Naming a language to write code in ("write a Python
# function") asks for code as text, not for running it, and does not match.
_USE = r"(?:use|using|run|running|execute|with|via|through)\s+(?:the\s+|a\s+|some\s+|your\s+)?"
_COMPUTE = (
    r"(?:compute|calculate|work\s+out|find|count|check|verify|solve|evaluate|get)\b"
    r"[^.?!\n]{0,80}?\b(?:in|with|using)\s+"
)
_ASKS = {
    "code_interpreter": re.compile(
        rf"\b(?:{_USE}(?:python|code|a\s+program|the\s+sandbox|code\s+interpreter)|"
        rf"{_COMPUTE}(?:python|code))\b",
        re.IGNORECASE,
    ),
    "calculator": re.compile(rf"\b(?:{_USE}calculator|{_COMPUTE}(?:the\s+|a\s+)?calculator)\b", re.IGNORECASE),
}


def asked_for(chat: ChatRequest, box: Toolbox) -> str | None:
    """The hosted tool the last user message asks, in words, to be used: by its
    kind's words, or by its function name after "use"; None when it asks for none."""
    text = next((m.content for m in reversed(chat.messages) if m.role == "user"), "")
    for name, tool in box.hosted.items():
        words = _ASKS.get(tool.kind)
        if (words is not None and words.search(text)) or re.search(rf"\b{_USE}{re.escape(name)}\b", text, re.I):
            return name
    return None


async def execute(tool: Hosted, call: ToolCall, agent: int | None = None) -> ToolRun:
    """Run one call; a failure, a timeout or a bad argument is the model's to read."""
    try:
        async with asyncio.timeout(tool.timeout_s):
            result = await tool.call(arguments(call.arguments))
    except ToolFailed as e:
        return ToolRun(call, tool.kind, f"Error: {e}", True, {"label": tool.label}, agent)
    except TimeoutError:
        return ToolRun(call, tool.kind, f"Error: the tool took longer than {tool.timeout_s:g}s and was stopped",
                       True, {"label": tool.label}, agent)  # fmt: skip
    except Exception as e:  # a tool's own bug or a failure below it: the model reads it, the request goes on
        log.warning("tool %s failed on %s", call.name, call.arguments[:200], exc_info=True)
        return ToolRun(call, tool.kind, f"Error: {type(e).__name__}: {e}", True, {"label": tool.label}, agent)
    data = {**result.data, "label": tool.label, **({"load": result.load} if result.load else {})}
    return ToolRun(call, tool.kind, result.text, False, data, agent)


def _failed(r: ToolRun) -> bool:
    """A call that gave no result: the tool failed, or the program it ran did."""
    return r.error or r.data.get("exit_code", 0) != 0


def _without(chat: ChatRequest, box: Toolbox) -> ChatRequest:
    """The request with no hosted tool on offer (and none forced)."""
    chat = replace(chat, tools=tuple(t for t in chat.tools if t.name not in box.hosted))
    if chat.tool_name in box.hosted or (chat.tool_choice == "required" and not chat.tools):
        chat = replace(chat, tool_choice="auto", tool_name=None)
    return chat


def _with(tools: tuple[Tool, ...], loaded: tuple[Tool, ...], box: Toolbox) -> tuple[Tool, ...]:
    """The tools with those a search loaded, after the client's and before the hosted ones."""
    have = {t.name for t in tools}
    new = tuple({t.name: t for t in loaded if t.name not in have}.values())
    own = tuple(t for t in tools if t.name not in box.hosted)
    return own + new + tuple(t for t in tools if t.name in box.hosted)
