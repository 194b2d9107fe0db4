"""Decide how to split a request: distinct sub-tasks, or independent attempts.

A request with several parts (a numbered list, several questions) goes to the model
with the planner prompt, which may return sub-tasks. Everything else, and any plan
the model botches, becomes independent attempts: the same question under different
prompts and temperatures, which is what a single hard question wants.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from ponder.backends.base import Backend
from ponder.errors import InvalidRequest
from ponder.modes import choices
from ponder.modes.base import ModeRequest
from ponder.modes.contemplating import program
from ponder.modes.messages import with_system, with_user_note
from ponder.modes.prompts import load, render
from ponder.types import NO_USAGE, ChatRequest, Message, SamplingParams, Usage, collect

Strategy = Literal["attempts", "subtasks"]
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S", re.MULTILINE)


Method = Literal["direct", "chain", "program", "options"]


@dataclass(frozen=True)
class AgentTask:
    index: int
    title: str
    chat: ChatRequest
    tools: tuple[str, ...] | None = None  # the server-side tools it may use; None: all of them
    # the model's own answer (an Instant run), a chain of reasoning (a Thinking run), a
    # program run in the sandbox, or the options of the question scored (`modes.choices`)
    method: Method = "chain"
    stop_below: float | None = None  # stop the agent once its confidence falls below this


@dataclass(frozen=True)
class Plan:
    strategy: Strategy
    tasks: tuple[AgentTask, ...]
    reason: str
    usage: Usage = NO_USAGE

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "reason": self.reason, "agents": [t.title for t in self.tasks]}


def request_text(chat: ChatRequest) -> str:
    users = [m.content for m in chat.messages if m.role == "user"]
    return users[-1] if users else ""


def looks_multipart(text: str) -> bool:
    return len(_LIST_ITEM.findall(text)) >= 2 or text.count("?") >= 2


async def plan(backend: Backend, req: ModeRequest) -> Plan:
    text = request_text(req.chat)
    programs = req.programs and quantitative(text) and program.available()
    scoring = backend.capabilities.scoring and choices.parse(text) is not None
    if req.strategy == "attempts":
        return attempts(req, "asked for attempts", programs, scoring)
    if req.strategy == "auto" and (scoring or not looks_multipart(text)):
        return attempts(req, "one question: independent attempts", programs, scoring)
    if req.agents < 2:
        return attempts(req, "one agent: nothing to split", programs, scoring)
    parts, usage = await _ask_model(backend, req, text)
    if len(parts) < 2:
        return replace(attempts(req, "the planner found no separate parts", programs), usage=usage)
    return Plan("subtasks", tuple(_subtask(req, i, task, text, tools) for i, (task, tools) in enumerate(parts)),
                "the planner split it", usage)  # fmt: skip


def attempts(req: ModeRequest, reason: str, programs: bool = False, scoring: bool = False) -> Plan:
    """Independent attempts, in the order they are run: the model's own answer at
    temperature 0 (what it says bare), a program when `programs` (the question has
    numbers in it and the sandbox works) or the options scored when `scoring` (it
    letters its options and the backend can score; then a plain Thinking chain at
    temperature 0 comes next), a sampled program after the first, then Thinking
    chains in the styles of the prompt file at their temperatures."""
    styles = load("contemplating")["styles"]
    tasks = []
    for i in range(req.agents):
        seed = None if req.chat.params.seed is None else req.chat.params.seed + i  # diverse, yet repeatable
        if i == 0:
            tasks.append(AgentTask(0, "direct", _at(req.chat, 0.0, seed), method="direct"))
        elif scoring and i == 1:
            tasks.append(AgentTask(1, "options", req.chat, method="options"))
        elif scoring and i == 2:  # the chain Thinking would write: its letter weighs in beside the others
            tasks.append(AgentTask(2, "chain", _at(req.chat, 0.0, seed)))
        elif programs and i in (1, 2):
            tasks.append(AgentTask(i, "program", _at(req.chat, 0.0 if i == 1 else 0.7, seed), method="program"))
        else:
            style = styles[sum(t.method == "chain" for t in tasks) % len(styles)]
            # The style goes at the end of the question, not in a system prompt: small
            # models heed it there, and the agents' prompts then share everything up to
            # the style, so the batched engine prefills that prefix once for all of them.
            chat = with_user_note(req.chat, style["note"])
            tasks.append(AgentTask(i, style["name"], _at(chat, style["temperature"], seed)))
    return Plan("attempts", tuple(tasks), reason)


def _at(chat: ChatRequest, temperature: float, seed: int | None) -> ChatRequest:
    return replace(chat, params=replace(chat.params, temperature=temperature, seed=seed))


def sampled(chat: ChatRequest) -> bool:
    """Whether a request is sampled rather than greedy (no temperature: the engine's
    default, which samples)."""
    return chat.params.temperature is None or chat.params.temperature > 0


_NUMBER = re.compile(
    r"\d+(?:[.,]\d+)*|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"twenty|thirty|forty|fifty|hundred|thousand|twice|half|double|triple|dozen)\b",
    re.IGNORECASE,
)
_OPTION = re.compile(r"^\s*\(?[A-Ha-h][.)]\s", re.MULTILINE)


def quantitative(text: str) -> bool:
    """A question with numbers to work with (two or more), and no lettered options to
    choose from: one a program can settle."""
    return len(_NUMBER.findall(text)) >= 2 and options(text) < 2


def options(text: str) -> int:
    """How many lettered options ("A. ...", "(b) ...") start a line of `text`."""
    return len(_OPTION.findall(text))


def _subtask(req: ModeRequest, index: int, task: str, whole: str, tools: tuple[str, ...] | None) -> AgentTask:
    prompts = load("contemplating")["subtask"]
    system = [m for m in req.chat.messages if m.role in ("system", "developer")]
    user = Message("user", render(prompts["user"], request=whole, task=task))
    chat = with_system(replace(req.chat, messages=(*system, user)), prompts["system"])
    return AgentTask(index, task, chat, tools)


Part = tuple[str, tuple[str, ...] | None]  # a sub-task, and the tools the planner gave it (None: all)


async def _ask_model(backend: Backend, req: ModeRequest, text: str) -> tuple[list[Part], Usage]:
    prompts = load("contemplating")["planner"]
    tools = req.toolbox.specs
    names = sorted(t.name for t in tools)
    user = render(prompts["user"], request=text, max_agents=req.agents, tools=tools)
    messages = (Message("system", prompts["system"]), Message("user", user))
    # room to copy every part in full (about 4 characters a token), and the JSON around them
    params = SamplingParams(max_tokens=400 + len(text) // 2, temperature=0.0,
                            response_format=_plan_format(req.agents, names))  # fmt: skip
    try:
        done = await collect(backend.stream(ChatRequest(req.chat.model, messages, params)))
    except InvalidRequest:  # an engine without structured output: the prompt asks for the same JSON
        params = replace(params, response_format=None)
        done = await collect(backend.stream(ChatRequest(req.chat.model, messages, params)))
    return parse_plan(done.text, req.agents, set(names)), done.usage


def _plan_format(max_parts: int, tools: list[str]) -> dict[str, Any]:
    """The planner's reply as a JSON schema, which the engine enforces. The model lists
    the parts: the default model picked "attempts" for two separate questions when
    asked to choose a strategy, and without a schema it answered every part inside
    its JSON until it ran out of tokens."""
    part: dict[str, Any] = {"type": "string"}
    if tools:
        named = {"type": "object", "required": ["task"], "properties": {
            "task": {"type": "string"}, "tools": {"type": "array", "items": {"enum": tools}}}}  # fmt: skip
        part = {"anyOf": [part, named]}
    parts = {"type": "array", "items": part, "minItems": 1, "maxItems": max_parts}
    schema = {"type": "object", "required": ["parts"], "properties": {"parts": parts}}
    return {"type": "json_schema", "json_schema": {"name": "plan", "schema": schema}}


def parse_plan(text: str, max_parts: int, tools: set[str] | frozenset[str] = frozenset()) -> list[Part]:
    """The sub-tasks in a planner reply, each with the tools assigned to it (only
    names among `tools`), or [] when it is unreadable. Takes `{"parts": [...]}`, and
    `{"strategy": "subtasks", "subtasks": [...]}` from a planner that ignored the schema."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return []
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    listed = data.get("parts")
    if not isinstance(listed, list) and data.get("strategy") == "subtasks":
        listed = data.get("subtasks")
    parts: list[Part] = []
    for p in listed if isinstance(listed, list) else []:
        if isinstance(p, dict) and isinstance(p.get("task"), str):
            named = p.get("tools")
            assigned = tuple(n for n in named if n in tools) if isinstance(named, list) else None
            p = (p["task"], assigned)
        elif isinstance(p, str):
            p = (p, None)
        else:
            continue
        if p[0].strip():
            parts.append((p[0].strip(), p[1]))
    return parts[:max_parts]
