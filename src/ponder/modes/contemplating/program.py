"""The program agent: the model writes a program, the sandbox runs it, and what it
prints is the agent's answer (program-aided reasoning: PAL, arXiv 2211.10435).

A small model that reasons in words slips on arithmetic; the same model writing code
rarely does, and the default model is a coder. The reply is prefilled with a code
fence where the backend allows it, so the model writes the code alone and stops at
the closing fence; elsewhere the last fenced block of the reply is taken. A program
that fails (an exception, no output) is shown its error once and asked to fix it.
The code and what it printed stream as the agent's reasoning. It runs in
`tools.sandbox`: no network, no files of the server, limits on time and memory.

It knows nothing of votes: `Trace.answer` is the program's last printed line.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.modes.confidence import TOP_K
from ponder.modes.prompts import load, render
from ponder.modes.thinking import Trace
from ponder.modes.watch import watched
from ponder.tools import sandbox
from ponder.types import (
    ChatRequest,
    Done,
    Event,
    FinishReason,
    Message,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    Usage,
)

PROGRAM_TOKENS = 512
LIMITS = sandbox.Limits(wall_s=10.0, cpu_s=5)
_FENCED = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|$)", re.DOTALL)


def available() -> bool:
    """Whether this machine can run programs in the sandbox."""
    return sandbox.unavailable() is None


async def program(
    backend: Backend, chat: ChatRequest, question: str, trace: Trace, repairs: int = 1, budget: int | None = None
) -> AsyncGenerator[Event, None]:
    """Stream the agent's work as reasoning; fill `trace`; end with one Done. Its
    tokens count against `budget`, the reasoning budget, when one is given (`_write`)."""
    prompts = load("contemplating")["program"]
    fence = prompts["fence"] if backend.capabilities.prefill else ""
    system = tuple(m for m in chat.messages if m.role in ("system", "developer"))
    messages: tuple[Message, ...] = (*system, Message("user", render(prompts["user"], question=question)))
    params = SamplingParams(temperature=chat.params.temperature, seed=chat.params.seed,  # max_tokens: `_write`'s
                            stop=("```",) if fence else (), logprobs=TOP_K)  # fmt: skip
    for attempt in range(repairs + 1):
        if trace.answer_now:  # the client wants the answer now, or this agent is not needed: no program to write
            trace.watch.ended()
            break
        if attempt:
            yield ReasoningDelta("\n")
        yield ReasoningDelta(fence)
        written: list[str] = []
        async for event in _write(backend, ChatRequest(chat.model, messages, params), fence, trace, budget, written):
            yield event
        reply = "".join(written)
        code = _code(fence + reply) if not (trace.watch.stopped or trace.forced) else ""
        trace.reasoning += fence + reply
        if not code:
            break
        outcome = await asyncio.to_thread(sandbox.run_code, code, LIMITS)
        trace.usage += Usage(0, 0, tool_calls=1)
        if trace.watch.ended():  # while it ran: it has no vote
            break
        printed = outcome.stdout.strip()
        failed = outcome.exit_code != 0 or not printed
        shown = printed if not failed else _failure(outcome)
        note = f"\n```\nIt printed:\n{shown}\n" if fence else f"\nIt printed:\n{shown}\n"
        trace.reasoning += note
        yield ReasoningDelta(note)
        if not failed:
            trace.answer = printed.splitlines()[-1].strip()
            break
        assistant = Message("assistant", fence + reply + ("```" if fence else ""))
        messages = (*messages, assistant, Message("user", render(prompts["repair"], output=shown)))
        params = replace(params, temperature=0.0)  # a repair is a correction, not a new draw
    yield Done("stop", trace.usage)


async def _write(
    backend: Backend, request: ChatRequest, fence: str, trace: Trace, budget: int | None, written: list[str]
) -> AsyncGenerator[Event, None]:
    """One program's code, streamed as reasoning and kept in `written`. Under a
    `budget` each call is capped at what is left of it (and what think_longer added).
    Cut there, the code goes on from where it stopped if the client has raised the
    budget meanwhile; otherwise it is cut short, `trace.forced`, and not run: an
    unfinished program's output would be no answer."""
    spent = 0
    while True:
        cap = PROGRAM_TOKENS - spent
        if budget is not None:
            cap = min(cap, trace.budget(budget) - trace.reasoning_tokens)
        if cap <= 0:  # the budget is spent (PROGRAM_TOKENS ends the loop below)
            trace.forced = True
            return
        params = replace(request.params, max_tokens=cap)
        finish: FinishReason = "stop"
        async for event in watched(backend.stream(replace(request, params=params, prefill=fence + "".join(written))),
                                   trace.watch):  # fmt: skip
            if isinstance(event, TextDelta):
                written.append(event.text)
                yield ReasoningDelta(event.text)
            elif isinstance(event, Done):
                trace.usage += event.usage
                trace.reasoning_tokens += event.usage.completion_tokens
                spent += event.usage.completion_tokens
                finish = event.finish_reason
        if finish != "length" or trace.watch.stopped or spent >= PROGRAM_TOKENS:
            return  # done; or at the program's own cap, where what was written is run as it is
        if not fence:  # cut by the budget, on a backend that cannot go on with a reply
            trace.forced = True
            return


def _code(reply: str) -> str:
    blocks = _FENCED.findall(reply)
    return blocks[-1].strip() if blocks else ""


def _failure(outcome: sandbox.Outcome) -> str:
    if outcome.exit_code is None:
        return f"(stopped: it ran past {LIMITS.wall_s:g} s)"
    lines = outcome.stderr.strip().splitlines()
    return "\n".join(lines[-4:]) if lines else "(it printed nothing)"
