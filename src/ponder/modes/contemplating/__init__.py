"""Contemplating: several sub-agents work on a request in parallel, one synthesis answers.

  1. plan: sub-tasks for a request with several parts, independent attempts otherwise;
  2. run every agent at once, each a Thinking run with its own budget and timeout.
     Their progress streams live as AgentEvents; a failed or timed-out agent is
     recorded and the rest go on;
  3. synthesise: a confidence-weighted vote for attempts, a written synthesis for
     sub-tasks (and for attempts that gave nothing to vote on).

Concurrency comes from the backend: the embedded engine decodes the agents in one
batch, remote engines receive the calls at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.errors import PonderError, UpstreamError
from ponder.modes.base import ModeRequest
from ponder.modes.contemplating.planner import AgentTask, plan, request_text
from ponder.modes.contemplating.synthesis import AgentResult, vote, written
from ponder.modes.thinking import Trace, think
from ponder.modes.tools import run as with_tools
from ponder.types import AgentEvent, ChatRequest, Done, Event, ReasoningDelta, TextDelta, ToolRun, Usage


async def contemplate(backend: Backend, req: ModeRequest) -> AsyncGenerator[Event, None]:
    # 1. plan
    the_plan = await plan(backend, req)
    usage = the_plan.usage
    yield AgentEvent("plan", None, the_plan.describe())
    yield ReasoningDelta(f"Plan: {len(the_plan.tasks)} {the_plan.strategy} ({the_plan.reason}).\n\n")

    # 2. agents, all at once
    results: list[AgentResult] = []
    async for event in _run_agents(backend, req, the_plan.tasks, results):
        yield event
    results.sort(key=lambda r: r.index)  # finishing order is noise; keep output deterministic
    for r in results:
        usage += replace(r.trace.usage, reasoning_tokens=0)
    reasoning_tokens = sum(r.trace.reasoning_tokens for r in results)
    ok = [r for r in results if r.ok]
    if not ok:
        raise UpstreamError("every sub-agent failed: " + "; ".join(f"agent {r.index}: {r.error}" for r in results))

    # 3. synthesis
    verdict = vote(ok) if the_plan.strategy == "attempts" else None
    if verdict is not None and verdict.winner is not None:
        yield AgentEvent("synthesis.start", None, {"method": "vote", "tally": verdict.tally, "answer": verdict.answer})
        yield TextDelta(verdict.winner.trace.answer.strip())
    else:
        yield AgentEvent("synthesis.start", None, {"method": "written"})
        async for event in written(backend, req.chat, request_text(req.chat), ok):
            if isinstance(event, Done):
                usage += event.usage
            else:
                yield event
    yield Done("stop", replace(usage, reasoning_tokens=reasoning_tokens))


async def _run_agents(
    backend: Backend, req: ModeRequest, tasks: tuple[AgentTask, ...], results: list[AgentResult]
) -> AsyncGenerator[Event, None]:
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def agent(task: AgentTask) -> None:
        trace, error = Trace(), None
        rounds: list[Trace] = []  # one per round of the tool loop
        # every server-side tool, or those the planner gave the task; never a tool search, which
        # loads client functions, and those are the client's to run (not supported here)
        usable = {n for n, h in req.toolbox.hosted.items() if h.kind != "tool_search"}
        box = req.toolbox.only(usable if task.tools is None else usable & set(task.tools))
        chat = _offer(task.chat, req, set(box.hosted))

        def one(chat: ChatRequest) -> AsyncGenerator[Event, None]:
            rounds.append(Trace())
            return think(backend, chat, req.agent_budget, compression=req.compression, probe_every=req.probe_every,
                         trace=rounds[-1])  # fmt: skip

        start = {"title": task.title, **({"tools": list(box.hosted)} if box else {})}
        queue.put_nowait(AgentEvent("agent.start", task.index, start))
        try:
            async with asyncio.timeout(req.agent_timeout_s):
                stream = with_tools(one, chat, box, agent=task.index) if box else one(chat)
                async with aclosing(stream) as events:
                    async for event in events:
                        if isinstance(event, ReasoningDelta):
                            queue.put_nowait(AgentEvent("agent.delta", task.index, {"reasoning": event.text}))
                        elif isinstance(event, TextDelta):
                            queue.put_nowait(AgentEvent("agent.delta", task.index, {"text": event.text}))
                        elif isinstance(event, ToolRun):
                            queue.put_nowait(event)
                        elif isinstance(event, Done):
                            trace.usage = event.usage
        except TimeoutError:
            error = f"timed out after {req.agent_timeout_s:g}s"
        except PonderError as e:  # a model or engine failure: record it, the others go on
            error = e.message
        finally:
            _merge(trace, rounds)
            result = AgentResult(task.index, task.title, trace, error)
            results.append(result)
            queue.put_nowait(result)  # also tells the loop below this agent is finished

    running = [asyncio.create_task(agent(t)) for t in tasks]
    try:
        remaining = len(running)
        while remaining:
            item = await queue.get()
            if isinstance(item, AgentResult):
                remaining -= 1
                yield AgentEvent("agent.done", item.index, _outcome(item))
                # Plain clients see each agent's work as reasoning, one agent at a time.
                yield ReasoningDelta(_summary(item))
            else:
                yield item  # type: ignore[misc]
        await asyncio.gather(*running)  # re-raises implementation errors
    finally:
        for t in running:
            t.cancel()


def _merge(trace: Trace, rounds: list[Trace]) -> None:
    """An agent's rounds (one without tools) as one trace: all the reasoning, the
    last round's answer, and the loop's usage (set from its Done) or the rounds'."""
    if not rounds:
        return
    trace.reasoning = "\n\n".join(r.reasoning.strip() for r in rounds if r.reasoning.strip())
    trace.reasoning_tokens = sum(r.reasoning_tokens for r in rounds)
    trace.answer, trace.forced, trace.probes = rounds[-1].answer, rounds[-1].forced, rounds[-1].probes
    if trace.usage == Usage(0, 0):  # the run ended before its Done (a timeout, a failure)
        trace.usage = sum((r.usage for r in rounds), Usage(0, 0))


def _offer(chat: ChatRequest, req: ModeRequest, names: set[str]) -> ChatRequest:
    """A sub-task's request with only the server-side tools the planner gave it."""
    keep = [t for t in chat.tools if t.name not in req.toolbox.hosted or t.name in names]
    return replace(chat, tools=tuple(keep))


def _outcome(r: AgentResult) -> dict[str, object]:
    return {"title": r.title, "ok": r.ok, "error": r.error, "answer": r.trace.answer.strip(), "vote": r.vote,
            "confidence": round(r.confidence, 3), "reasoning_tokens": r.trace.reasoning_tokens,
            "forced": r.trace.forced}  # fmt: skip


def _summary(r: AgentResult) -> str:
    head = f"[agent {r.index + 1}: {r.title}]"
    if not r.ok:
        return f"{head} failed: {r.error}\n\n"
    return f"{head}\n{r.trace.reasoning.strip()}\n=> {r.trace.answer.strip()}\n\n"
