"""Answering in a terminal: run a mode over a backend and print as it streams.

The answer goes to stdout; reasoning (dimmed on a TTY) and sub-agent progress go to
stderr, so `ponder run ... > answer.txt` keeps only the answer.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from ponder import modes
from ponder.backends.base import Backend
from ponder.config import ModeSettings
from ponder.errors import PonderError
from ponder.modes.steer import Steer
from ponder.tools import Toolbox, ToolHost
from ponder.types import (
    AgentEvent,
    ChatRequest,
    Done,
    Event,
    Message,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    ToolRun,
)


@dataclass
class ModeChoice:
    """What the user picked with --mode/--effort/--budget (None: config default)."""

    mode: str | None = None
    effort: str | None = None
    budget: int | None = None
    agents: int | None = None
    compression: bool | None = None

    def wire_fields(self) -> dict[str, object]:
        """The same choice as Chat Completions fields, for a remote Ponder server."""
        fields: dict[str, object] = {
            "mode": self.mode,
            "reasoning_effort": self.effort,
            "thinking_budget": self.budget,
            "thought_compression": self.compression,
        }
        if self.agents:
            fields["contemplation"] = {"agents": self.agents}
        return {k: v for k, v in fields.items() if v is not None}


@dataclass
class Answerer:
    backend: Backend
    model: str
    params: SamplingParams
    settings: ModeSettings
    choice: ModeChoice = field(default_factory=ModeChoice)
    local_modes: bool = True  # False when the backend is a Ponder server that runs modes itself
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr
    toolbox: Toolbox = field(default_factory=Toolbox)  # server-side tools (`--tools`), run in-process
    tools: ToolHost | None = None
    _mid_line: bool = field(default=False, repr=False)  # stderr's last write left a line open

    def events(self, messages: list[Message], steer: Steer | None = None) -> object:
        """The run's events; `steer` (local modes only) takes the controls while it runs."""
        chat = ChatRequest(self.model, tuple(messages), self.params, tools=self.toolbox.specs)
        if not self.local_modes:
            return self.backend.stream(chat)
        c = self.choice
        req = modes.resolve(chat, self.settings, mode=c.mode, effort=c.effort, budget=c.budget,
                            agents=c.agents, compression=c.compression, toolbox=self.toolbox)  # fmt: skip
        if steer is not None:
            req = replace(req, steer=steer)
        return modes.run(self.backend, req)

    async def close(self) -> None:
        if self.tools is not None:
            await self.tools.close()
        await self.backend.close()

    async def answer(self, messages: list[Message], keys: bool = False) -> str:
        """Print the answer as it streams; return the answer text. With `keys` (a chat
        on a terminal), keys steer the run while it reasons (`KEYS`): in-process, or
        through a Ponder server's control endpoint."""
        text: list[str] = []
        steer: Steer | RemoteSteer = Steer() if self.local_modes else RemoteSteer(self.backend, self.err)
        sure: float | None = None
        with _keys(steer, self.err) if keys else nullcontext():
            async for event in self.events(messages, steer if isinstance(steer, Steer) else None):  # type: ignore[attr-defined]
                if isinstance(event, AgentEvent) and event.kind == "evidence":
                    sure = event.data.get("confidence")
                elif isinstance(event, AgentEvent) and event.kind == "run" and isinstance(steer, RemoteSteer):
                    steer.named(event.data.get("id", ""))
                else:
                    self._show(event, text)
        if isinstance(steer, RemoteSteer):
            await steer.sent()
        self.out.write("\n")
        self.out.flush()
        if sure is not None:  # after the answer, which Contemplating writes after its evidence
            self._note(f"[confidence {sure:.0%}]\n", dim=False)
        return "".join(text)

    def _show(self, event: Event, text: list[str]) -> None:
        if isinstance(event, TextDelta):
            text.append(event.text)
            self.out.write(event.text)
            self.out.flush()
        elif isinstance(event, ReasoningDelta):
            self._note(event.text, dim=True)
        elif isinstance(event, AgentEvent) and event.kind == "judge.delta":
            self._note(event.data.get("text", ""), dim=True)
        elif isinstance(event, AgentEvent) and (line := _progress_line(event)):
            self._note(("\n" if self._mid_line else "") + line + "\n", dim=False)
        elif isinstance(event, ToolRun):
            who = "" if event.agent is None else f"agent {event.agent + 1}, "
            output = event.output if len(event.output) <= 200 else event.output[:200] + "…"
            self._note(f"[{who}{event.call.name}] {event.call.arguments} -> {output}\n", dim=False)
        elif isinstance(event, Done) and event.finish_reason == "length":
            self._note("\n[stopped: max_tokens reached]", dim=False)

    def _note(self, text: str, dim: bool) -> None:
        if text:
            self._mid_line = not text.endswith("\n")
        self.err.write(f"\x1b[2m{text}\x1b[0m" if dim and self.err.isatty() else text)
        self.err.flush()

    def with_choice(self, **changes: Any) -> Answerer:
        return replace(self, choice=replace(self.choice, **changes))


def _progress_line(e: AgentEvent) -> str:
    """One line for a progress event; "" for those that have none (live deltas, the
    best answer so far, which the answer itself follows)."""
    d = e.data
    who = f"[agent {(e.agent or 0) + 1}]"
    if e.kind == "plan":
        return f"[plan] {d['strategy']}: {', '.join(d['agents'])}"
    if e.kind == "agent.start":
        return f"{who} {d['title']}: started"
    if e.kind == "agent.done":
        if d.get("stopped") == "stopped":
            return f"{who} stopped"
        why = {"settled": "the others had settled the answer", "confidence": "less sure than the agents before it"}
        if not d["ok"] and d.get("stopped") in why:
            return f"{who} stopped: {why[d['stopped']]}"
        return f"{who} " + (f"answer: {d['vote'] or d['answer'][:60]}" if d["ok"] else f"failed: {d['error']}")
    if e.kind == "auto":
        return "[auto] not sure: checking with more attempts" if d.get("escalated") else ""
    if e.kind == "judge.start":
        return f"[judge] checking {', '.join(map(str, d.get('answers', [])))}"
    if e.kind == "synthesis.start":
        return f"[synthesis] {d.get('method')}" + (f": {d['answer']}" if d.get("answer") else "")
    if e.kind == "tool.call":  # a Ponder server's tool run (ponder chat --url)
        output = str(d.get("output", ""))
        return f"[{d.get('name')}] {d.get('arguments')} -> {output if len(output) <= 200 else output[:200] + '…'}"
    return ""


KEYS = "keys while it reasons: a answer now, l think longer (+512 tokens), 1-9 stop that agent"


class RemoteSteer:
    """The keys' controls for a run on a Ponder server: each is sent to its control
    endpoint, naming the run by the id its stream began with. A key pressed before
    that id has arrived waits for it."""

    def __init__(self, backend: Backend, err: TextIO):
        self.backend = backend
        self.err = err
        self.run_id = ""
        self._waiting: list[tuple[str, dict[str, int]]] = []  # pressed before the run was named
        self._sending: list[asyncio.Task[None]] = []

    def answer_now(self) -> None:
        self._send("answer_now")

    def think_longer(self, tokens: int) -> None:
        self._send("think_longer", tokens=tokens)

    def stop_agent(self, index: int) -> None:
        self._send("stop_agent", agent=index)

    def named(self, run_id: str) -> None:
        """The stream has named its run: send what was pressed before."""
        self.run_id = run_id
        waiting, self._waiting = self._waiting, []
        for action, fields in waiting:
            self._send(action, **fields)

    def _send(self, action: str, **fields: int) -> None:
        control = getattr(self.backend, "control", None)
        if control is None or not self.run_id:
            self._waiting.append((action, fields))
            return

        async def send() -> None:
            try:
                await control(self.run_id, action, **fields)
            except PonderError as e:  # the run may have ended meanwhile: say so, and go on
                self.err.write(f"\n[{action} not taken: {e.message}]\n")

        self._sending.append(asyncio.ensure_future(send()))

    async def sent(self) -> None:
        await asyncio.gather(*self._sending)
        for action, _ in self._waiting:
            self.err.write(f"\n[{action} not taken: the server named no run to steer (not a Ponder server)]\n")
        self._waiting.clear()


@contextmanager
def _keys(steer: Steer | RemoteSteer, err: TextIO) -> Iterator[None]:
    """Read single keys from a terminal stdin while the run goes on, and steer it by them."""
    try:
        import termios
        import tty
    except ImportError:  # not a POSIX terminal: no keys
        termios = None  # type: ignore[assignment]
    if termios is None or not sys.stdin.isatty():
        yield
        return

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def pressed() -> None:
        key = os.read(fd, 1).decode(errors="ignore")
        if key == "a":
            steer.answer_now()
            err.write("\n[answering now]\n")
        elif key == "l":
            steer.think_longer(512)
            err.write("\n[thinking 512 tokens longer]\n")
        elif key.isdigit() and key != "0":
            steer.stop_agent(int(key) - 1)
            err.write(f"\n[stopping agent {key}]\n")

    tty.setcbreak(fd)
    loop.add_reader(fd, pressed)
    err.write(f"({KEYS})\n")
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
