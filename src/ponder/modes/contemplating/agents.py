"""Running a set of sub-agents at once, with their progress streamed live.

Each agent is the model's own answer (an Instant run), a Thinking run (either through
the tool loop when it has server-side tools), a program run in the sandbox
(`program.py`), or the options of a multiple-choice question scored by their
likelihood (`modes.choices`), with its own timeout. A failed or
timed-out agent is recorded and the rest go on. Results are appended to the caller's
list as agents finish; events come out in the order they happen. Once `enough` says
the results so far settle the answer whatever the agents still running say, those
are stopped at their next token and have no vote.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import replace

from ponder.backends.base import Backend
from ponder.errors import InvalidRequest, PonderError
from ponder.modes import choices
from ponder.modes.base import ModeRequest
from ponder.modes.confidence import TOP_K
from ponder.modes.contemplating.planner import AgentTask, request_text, sampled
from ponder.modes.contemplating.program import program
from ponder.modes.contemplating.synthesis import AgentResult
from ponder.modes.instant import instant
from ponder.modes.thinking import Trace, answer_after, think
from ponder.modes.tools import run as with_tools
from ponder.types import AgentEvent, ChatRequest, Done, Event, ReasoningDelta, TextDelta, TokenLogprob, ToolRun, Usage


async def run_agents(
    backend: Backend,
    req: ModeRequest,
    tasks: tuple[AgentTask, ...],
    results: list[AgentResult],
    enough: Callable[[list[AgentResult], int], bool] | None = None,
) -> AsyncGenerator[Event, None]:
    queue: asyncio.Queue[object] = asyncio.Queue()
    settled = asyncio.Event()  # `enough` said so: the agents still running are not needed

    async def agent(task: AgentTask) -> None:
        trace, error = Trace(), None
        rounds: list[Trace] = []  # one per round of the tool loop
        # every server-side tool, or those the planner gave the task; never a tool search, which
        # loads client functions, and those are the client's to run (not supported here)
        usable = {n for n, h in req.toolbox.hosted.items() if h.kind != "tool_search"}
        box = req.toolbox.only(usable if task.tools is None else usable & set(task.tools))
        chat = _offer(task.chat, req, set(box.hosted))

        def one(chat: ChatRequest) -> AsyncGenerator[Event, None]:
            rounds.append(Trace(measure=True))
            watch = rounds[-1].watch
            watch.stop_below, watch.steer, watch.agent = task.stop_below, req.steer, task.index
            watch.moot = settled.is_set
            if task.method == "program":
                return program(backend, chat, request_text(req.chat), rounds[-1], budget=req.agent_budget)
            if task.method == "direct":
                return direct(backend, chat, rounds[-1])
            if task.method == "options":
                return scored(backend, chat, rounds[-1])
            # A chain is one voice among the agents: the run weighs it (`attempts.pooled`), not the chain itself.
            return think(backend, chat, req.agent_budget, compression=req.compression, probe_every=req.probe_every,
                         trace=rounds[-1], choose=False)  # fmt: skip

        start = {"title": task.title, "method": task.method, **({"tools": list(box.hosted)} if box else {})}
        queue.put_nowait(AgentEvent("agent.start", task.index, start))
        try:
            async with asyncio.timeout(req.agent_timeout_s):
                stream = (
                    with_tools(one, chat, box, agent=task.index)
                    if box and task.method in ("direct", "chain")
                    else one(chat)
                )
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
            result = AgentResult(task.index, task.title, trace, error, task.method, sampled(task.chat))
            results.append(result)
            queue.put_nowait(result)  # also tells the loop below this agent is finished

    running = [asyncio.create_task(agent(t)) for t in tasks]
    try:
        remaining = len(running)
        while remaining:
            item = await queue.get()
            if isinstance(item, AgentResult):
                remaining -= 1
                if remaining and enough is not None and not settled.is_set() and enough(results, remaining):
                    settled.set()
                yield AgentEvent("agent.done", item.index, outcome(item))
                # Plain clients see each agent's work as reasoning, one agent at a time.
                yield ReasoningDelta(summary(item))
            else:
                yield item  # type: ignore[misc]
        await asyncio.gather(*running)  # re-raises implementation errors
    finally:
        for t in running:
            t.cancel()


async def direct(backend: Backend, chat: ChatRequest, trace: Trace) -> AsyncGenerator[Event, None]:
    """The model's own answer (Instant's), measured: its text is the agent's answer;
    for a question with lettered options, also the distribution of the letter it named.
    Cut by answer_now, what it wrote is its working, and a short answer follows it, as
    after a Thinking run's reasoning: a small model's direct answer is a worked solution
    of hundreds of tokens, which the client has just asked not to wait for."""
    measured = replace(chat, params=replace(chat.params, logprobs=TOP_K))
    logprobs: list[TokenLogprob] = []
    async for event in instant(backend, measured, trace.watch, clean_answer=False):
        if isinstance(event, TextDelta):
            trace.answer += event.text
            logprobs += event.logprobs
            yield TextDelta(event.text)
        elif isinstance(event, Done):
            trace.usage = event.usage
            if trace.watch.stopped != "answer_now":
                yield event
        else:
            yield event
    if trace.watch.stopped == "answer_now":
        trace.reasoning, trace.answer, trace.forced, logprobs = trace.answer, "", True, []
        yield TextDelta("\n\n")
        async for event in answer_after(backend, measured, trace.reasoning, trace, brief=True):
            if isinstance(event, TextDelta):
                logprobs += event.logprobs
            yield event
        yield Done("stop", trace.usage)
    trace.distribution = choices.named(request_text(chat), trace.answer, logprobs)


async def scored(backend: Backend, chat: ChatRequest, trace: Trace) -> AsyncGenerator[Event, None]:
    """The options' own likelihood (`modes.choices`): each option's words scored as the
    reply to the question; the likeliest is the agent's answer. Nothing is generated."""
    found = choices.parse(request_text(chat))
    if found is None:
        raise InvalidRequest("the question letters no options to score")
    values, read = await choices.score(backend, chat, found)
    trace.distribution = choices.softmax(values)
    lines = [
        f"{found.letter(i).upper()}. {o}: {v:.3f} nats/byte" for i, (o, v) in enumerate(zip(found.options, values))
    ]
    trace.reasoning = "How likely each option is as the reply:\n" + "\n".join(lines)
    yield ReasoningDelta(trace.reasoning)
    best = max(range(len(values)), key=lambda i: values[i])
    trace.answer = f"{found.letter(best).upper()}. {found.options[best]}"
    yield TextDelta(trace.answer)
    yield Done("stop", Usage(prompt_tokens=read, completion_tokens=0))  # the options were read, not written


def _merge(trace: Trace, rounds: list[Trace]) -> None:
    """An agent's rounds (one without tools) as one trace: all the reasoning, the
    last round's answer, and the loop's usage (set from its Done) or the rounds'."""
    if not rounds:
        return
    trace.reasoning = "\n\n".join(r.reasoning.strip() for r in rounds if r.reasoning.strip())
    trace.reasoning_tokens = sum(r.reasoning_tokens for r in rounds)
    last = rounds[-1]
    trace.answer, trace.forced, trace.probes, trace.watch = last.answer, last.forced, last.probes, last.watch
    trace.distribution, trace.settled, trace.answer_logprobs = last.distribution, last.settled, last.answer_logprobs
    if trace.usage == Usage(0, 0):  # the run ended before its Done (a timeout, a failure)
        trace.usage = sum((r.usage for r in rounds), Usage(0, 0))


def _offer(chat: ChatRequest, req: ModeRequest, names: set[str]) -> ChatRequest:
    """A sub-task's request with only the server-side tools the planner gave it."""
    keep = [t for t in chat.tools if t.name not in req.toolbox.hosted or t.name in names]
    return replace(chat, tools=tuple(keep))


def outcome(r: AgentResult) -> dict[str, object]:
    return {"title": r.title, "method": r.method, "ok": r.ok, "error": r.error, "answer": r.trace.answer.strip(),
            "vote": r.vote, "confidence": round(r.confidence, 3), "reasoning_tokens": r.trace.reasoning_tokens,
            "forced": r.trace.forced, "stopped": r.trace.watch.stopped}  # fmt: skip


def summary(r: AgentResult) -> str:
    head = f"[agent {r.index + 1}: {r.title}]"
    if r.error is not None:
        return f"{head} failed: {r.error}\n\n"
    if r.trace.watch.stopped == "stopped":
        return f"{head} stopped by the client\n\n"
    if r.trace.watch.stopped == "settled":
        return f"{head} stopped: the others had settled the answer\n\n"
    if r.trace.dropped:
        return f"{head} stopped: its confidence fell below the others'\n\n"
    return f"{head}\n{r.trace.reasoning.strip()}\n=> {r.trace.answer.strip()}\n\n"
