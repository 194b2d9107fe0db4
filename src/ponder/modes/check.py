"""A program checks a Thinking chain's answer to a question with numbers.

A small model reasoning in words slips on arithmetic; the same model writing a
program rarely does, and the default model is a coder (program-aided reasoning: PAL,
arXiv 2211.10435). So beside a Thinking chain on a question with numbers to work
with, the program agent (`contemplating/program.py`, temperature 0) solves it too,
at the same time: the batched engine decodes both together, and the program, being
shorter, is most often done before the chain's answer is. Then:

- they agree: the answer is the chain's, and as sure as this model's answers get;
- they disagree: the program's answer is shown, in a sentence the model writes
  around it (as Contemplating shows an answer only a program reached), since an
  interpreter does not slip where words do. The chain's reasoning stays as written;
- the program failed, or the client asked for the answer before it was done: the
  chain's answer stands, unchecked.

The outcome goes into the answer's evidence (`program_agrees`, `program_answer`),
where the calibration weighs it. A check is one more agent's tokens, counted in the
answer's usage.
"""

from __future__ import annotations

from dataclasses import replace

from ponder.backends.base import Backend
from ponder.modes.base import ModeRequest
from ponder.modes.contemplating import program
from ponder.modes.contemplating.planner import quantitative, request_text
from ponder.modes.contemplating.synthesis import AgentResult
from ponder.modes.steer import Steer
from ponder.modes.thinking import Trace
from ponder.types import Done


def wanted(req: ModeRequest) -> bool:
    """Whether a program can check this request's answer: a question with numbers to
    work with and no options, programs on and runnable here, and no tools in play (a
    tool round is no answer to check)."""
    return (req.programs and not req.toolbox and not req.chat.tools
            and quantitative(request_text(req.chat)) and program.available())  # fmt: skip


async def run(backend: Backend, req: ModeRequest, steer: Steer | None) -> AgentResult:
    """The program agent's attempt at the request, at temperature 0; its code is not
    streamed (it runs beside the chain, whose reasoning is)."""
    chat = replace(req.chat, params=replace(req.chat.params, temperature=0.0))
    trace = Trace(measure=True)
    trace.watch.steer = steer
    async for event in program.program(backend, chat, request_text(req.chat), trace):
        if isinstance(event, Done):
            break
    return AgentResult(1, "program", trace, method="program")
