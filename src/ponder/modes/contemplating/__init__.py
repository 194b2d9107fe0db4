"""Contemplating: several sub-agents work on a request in parallel, one answer comes out.

  1. plan: sub-tasks for a request with several parts, independent attempts otherwise;
  2. attempts run in waves, of different methods (chains of reasoning, programs), stop
     once they agree, and go to a judge when they do not (`attempts.py`);
  3. sub-tasks run at once, each a Thinking run with its own budget and timeout, and a
     written synthesis answers from all their parts.

Progress streams live as AgentEvents; a failed or timed-out agent is recorded and the
rest go on. Concurrency comes from the backend: the embedded engine decodes the agents
in one batch, remote engines receive the calls at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.errors import UpstreamError
from ponder.modes import evidence
from ponder.modes.base import ModeRequest
from ponder.modes.contemplating import attempts
from ponder.modes.contemplating.agents import run_agents
from ponder.modes.contemplating.planner import plan, request_text
from ponder.modes.contemplating.synthesis import AgentResult, written
from ponder.types import AgentEvent, Done, Event, ReasoningDelta, TextDelta


async def contemplate(
    backend: Backend, req: ModeRequest, prior: Sequence[AgentResult] = ()
) -> AsyncGenerator[Event, None]:
    """`prior`: attempts already made (Auto's direct answer), which count as the first agents."""
    # 1. plan
    the_plan = await plan(backend, req)
    yield AgentEvent("plan", None, the_plan.describe())
    yield ReasoningDelta(f"Plan: {len(the_plan.tasks)} {the_plan.strategy} ({the_plan.reason}).\n\n")
    if the_plan.strategy == "attempts":
        async for event in attempts.run(backend, req, the_plan, prior):
            yield event
        return

    # 2. sub-tasks, all at once (an attempt made before the plan counts only as spent)
    usage = sum((r.trace.usage for r in prior), the_plan.usage)
    results: list[AgentResult] = []
    async for event in run_agents(backend, req, the_plan.tasks, results):
        yield event
    results.sort(key=lambda r: r.index)  # finishing order is noise; keep output deterministic
    for r in results:
        usage += replace(r.trace.usage, reasoning_tokens=0)
    ok = [r for r in results if r.ok]
    if not ok and all(r.trace.watch.stopped == "stopped" for r in results):  # the client stopped every one
        yield TextDelta("Every sub-agent was stopped before it had an answer.")
        yield Done("stop", replace(usage, reasoning_tokens=sum(r.trace.reasoning_tokens for r in results)))
        return
    if not ok:
        raise UpstreamError("every sub-agent failed: " + "; ".join(f"agent {r.index}: {r.error}" for r in results))

    # 3. a written synthesis
    yield AgentEvent("synthesis.start", None, {"method": "written"})
    yield evidence.event(evidence.of_parts(results))
    async for event in written(backend, req.chat, request_text(req.chat), ok):
        if isinstance(event, Done):
            usage += event.usage
        else:
            yield event
    yield Done("stop", replace(usage, reasoning_tokens=sum(r.trace.reasoning_tokens for r in results)))
