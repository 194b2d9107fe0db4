"""`ponder chat`: a terminal REPL with history and /commands."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

from ponder.config import EFFORT_BUDGETS
from ponder.modes import MODES
from ponder.terminal import Answerer
from ponder.types import Message

HELP = """\
/help            this list
/mode NAME       auto, instant, thinking or contemplating
/effort LEVEL    reasoning effort: none, minimal, low, medium, high, xhigh, max
/clear           forget the conversation so far
/system TEXT     set the system prompt (and clear the conversation)
/history         show the conversation so far
/exit, /quit     leave (Ctrl-D works too)
While an answer reasons: a answers now, l thinks longer (+512 tokens), 1-9 stops that agent."""


class Repl:
    def __init__(self, answerer: Answerer, system: str | None, data_dir: Path):
        self.answerer = answerer
        self.system = system
        self.history: list[Message] = []
        self.history_file = data_dir / "chat_history"

    def _messages(self) -> list[Message]:
        return ([Message("system", self.system)] if self.system else []) + self.history

    async def run(self) -> None:
        readline = _readline(self.history_file)
        print(f"Chatting with {self.answerer.model}. /help for commands, Ctrl-D to leave.", file=sys.stderr)
        while True:
            try:
                line = input(">>> ").strip()
            except EOFError:
                print(file=sys.stderr)
                break
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    break
                continue
            self.history.append(Message("user", line))
            try:
                text = await self.answerer.answer(self._messages(), keys=True)
            except KeyboardInterrupt:
                print("\n[interrupted]", file=sys.stderr)
                self.history.pop()
                continue
            self.history.append(Message("assistant", text))
        if readline:
            self.history_file.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(str(self.history_file))

    def command(self, line: str) -> bool:
        """Run a /command; False means leave."""
        cmd, _, rest = line.partition(" ")
        rest = rest.strip()
        if cmd in ("/exit", "/quit", "/bye"):
            return False
        if cmd == "/help":
            print(HELP)
        elif cmd == "/clear":
            self.history.clear()
            print("(conversation cleared)")
        elif cmd == "/system":
            self.system = rest or None
            self.history.clear()
            print(f"(system prompt {'set' if self.system else 'removed'}; conversation cleared)")
        elif cmd == "/history":
            for m in self._messages():
                print(f"{m.role}: {m.content}")
        elif cmd == "/mode" and rest in MODES:
            self.answerer = self.answerer.with_choice(mode=rest)
            print(f"(mode: {rest})")
        elif cmd == "/effort" and rest in EFFORT_BUDGETS:
            self.answerer = self.answerer.with_choice(effort=rest)
            print(f"(effort: {rest})")
        elif cmd in ("/mode", "/effort"):
            print(f"{cmd} takes one of: {', '.join(MODES if cmd == '/mode' else EFFORT_BUDGETS)}")
        else:
            print(f"unknown command {cmd}; /help lists them")
        return True


def _readline(history_file: Path) -> ModuleType | None:
    try:
        import readline
    except ImportError:  # not on every platform
        return None
    if history_file.exists():
        readline.read_history_file(str(history_file))
    return readline
