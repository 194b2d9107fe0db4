"""Thinking on a question with numbers: the reasoning is a program.

A small model reasoning in words slips on arithmetic; the same model writing a
program rarely does, and the default model is a coder (program-aided reasoning: PAL,
arXiv 2211.10435). Ponder first ran a program beside a Thinking chain as its check,
and showed the program's answer where the two disagreed. On the default model's
GSM8K items 1-80 that was right on 54, against 44 for the chain alone; the program
printed a number on all 80, so every answer shown was the program's, and the chain
only cost its tokens (325 a question against 203) and its time. So the program now
comes first, and is the reasoning:

- the program agent (`contemplating/program.py`, temperature 0, steered by the
  client's controls) writes code; the code and what it printed stream as reasoning;
- it printed a number (on a short line: `settles`): that is the answer, in a sentence
  the model writes around it (the number alone when the client asked for the answer
  now);
- it failed, printed no number (a word, say, on a question that only had numbers in
  it) or prose, or was stopped: a Thinking chain reasons after it, as on any other
  question, with what the program left of the reasoning budget. The program's tokens
  count against that budget (think_longer raises it): one the budget cuts short is
  not run, and the chain after it has nothing left, so it answers at once.

What the program did is the answer's evidence (`evidence.of_program`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.media import own_words
from ponder.modes import answers
from ponder.modes.base import ModeRequest
from ponder.modes.contemplating import program
from ponder.modes.contemplating.attempts import phrased
from ponder.modes.contemplating.planner import quantitative, request_text
from ponder.modes.contemplating.synthesis import AgentResult
from ponder.modes.thinking import Trace
from ponder.types import Done, Event, TextDelta, Usage


def wanted(req: ModeRequest) -> bool:
    """Whether a program can work this request out: a question with numbers to work
    with in the user's own words (numbers read off an attached image or file are data,
    and a chart's question is seldom a sum: "which sold most?"), no options, programs
    on and runnable here, and no tools in play (the tools are the client's way)."""
    return (req.programs and not req.toolbox and not req.chat.tools
            and quantitative(own_words(request_text(req.chat))) and program.available())  # fmt: skip


async def solve(backend: Backend, req: ModeRequest, out: list[AgentResult]) -> AsyncGenerator[Event, None]:
    """The program agent's attempt at the request, at temperature 0 and steered by the
    client's controls: its code and what it printed stream as reasoning, and the
    attempt is appended to `out` (also when the stream is left early)."""
    chat = replace(req.chat, params=replace(req.chat.params, temperature=0.0))
    trace = Trace(measure=True)
    trace.watch.steer = req.steer
    try:
        async for event in program.program(backend, chat, request_text(req.chat), trace, budget=req.budget):
            if not isinstance(event, Done):
                yield event
    finally:
        out.append(AgentResult(1, "program", trace, method="program"))


ANSWER_WORDS = 6  # a printed answer this long at most: "42", "$1,430", "The answer is 42 eggs"


def settles(result: AgentResult) -> bool:
    """The program printed a number, as a short line of its own: an answer to give. A
    longer line is prose (a program asked about "a story of 3 cats and 2 dogs" prints
    the story), whatever numbers it holds."""
    got = result.vote
    printed = result.trace.answer.strip()
    return got is not None and answers.number(got) is not None and len(printed.split()) <= ANSWER_WORDS


def left(req: ModeRequest, result: AgentResult) -> int:
    """The reasoning budget a chain after the program has: what the program left of
    the request's. What think_longer added is not in it: the chain's trace adds that
    itself, through the same steer."""
    return max(0, req.budget - result.trace.reasoning_tokens)


def cost(result: AgentResult) -> Usage:
    """What the program cost, its tokens counted as reasoning tokens (work toward the answer)."""
    return result.trace.usage + Usage(0, 0, reasoning_tokens=result.trace.reasoning_tokens)


async def answer(backend: Backend, req: ModeRequest, result: AgentResult) -> AsyncGenerator[Event, None]:
    """The answer a program that `settles` reached: in a sentence the model writes
    around it (the number alone when the client asked for the answer now), then one
    Done with all it cost."""
    usage = cost(result)
    if req.steer.answering:
        yield TextDelta(result.trace.answer.strip())
    else:
        async for event in phrased(backend, req.chat, result):
            if isinstance(event, Done):
                usage += event.usage
            else:
                yield event
    yield Done("stop", usage)
