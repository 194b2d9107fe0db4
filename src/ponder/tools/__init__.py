"""Server-side tools a request can turn on, and the host that builds them.

    tools=[{"type": "calculator"}, {"type": "file_search"}, {"type": "code_interpreter"},
           {"type": "web_fetch"}, {"type": "mcp", "server_label": "warehouse"}]

The names follow OpenAI's where they exist (`file_search`, `code_interpreter`,
`mcp`); `calculator` and `web_fetch` are Ponder's. `[tools] enabled` in config turns tools on for
every request. The loop that runs them is `ponder.modes.tools`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ponder.config import TOOL_KINDS, Settings
from ponder.errors import InvalidRequest, invalid_value
from ponder.tools import calculator, fetch, knowledge, sandbox
from ponder.tools.base import Hosted, Result, Toolbox, ToolFailed
from ponder.tools.mcp import Pool

KINDS = TOOL_KINDS
FUNCTION_NAMES = {"calculator": calculator.NAME, "file_search": knowledge.NAME, "code_interpreter": sandbox.NAME,
                  "web_fetch": fetch.NAME}  # fmt: skip
__all__ = [
    "FUNCTION_NAMES",
    "KINDS",
    "Hosted",
    "Result",
    "ToolFailed",
    "ToolHost",
    "Toolbox",
    "check_names",
    "is_hosted",
]


def is_hosted(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("type") in KINDS


def check_names(box: Toolbox, functions: Iterable[str]) -> None:
    """A client's function may not share a name with a server-side tool: its calls would run here."""
    clash = sorted(set(box.hosted) & set(functions))
    if clash:
        raise invalid_value("tools", f"a function is named {clash[0]!r}, as is a server-side tool of this request; "
                            "rename the function")  # fmt: skip


class ToolHost:
    """Builds each request's toolbox; holds what outlives requests (the knowledge
    index, MCP connections)."""

    def __init__(self, settings: Settings):
        self.settings = settings.tools
        self.index_path = settings.data_dir / "knowledge.db"
        self.mcp = Pool(settings.tools.mcp)
        self._index: knowledge.Index | None = None
        # Code runs wait on threads of their own: at most 2 at once, the rest queue.
        self.code_runs = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ponder-sandbox")

    @property
    def index(self) -> knowledge.Index:
        if self._index is None:
            self._index = knowledge.Index(self.index_path)
        return self._index

    async def toolbox(self, entries: Sequence[tuple[int, dict[str, Any]]], where: str = "tools") -> Toolbox:
        """The hosted tools of a request: its own `entries` (with their index in its
        `tools`, for errors) and the ones config turns on for every request."""
        wanted = list(entries) + [(-1, {"type": kind}) for kind in self.settings.enabled
                                  if kind not in {e.get("type") for _, e in entries}]  # fmt: skip
        hosted: dict[str, Hosted] = {}
        for i, entry in wanted:
            param = f"{where}.{i}" if i >= 0 else "config [tools] enabled"
            for h in await self._build(entry, param):
                name = h.spec.name if h.spec.name not in hosted or not h.label else f"{h.label}_{h.spec.name}"
                hosted[name] = h if name == h.spec.name else _renamed(h, name)  # the same tool twice: one
        return Toolbox(hosted, self.settings.max_steps)

    async def _build(self, entry: dict[str, Any], param: str) -> list[Hosted]:
        kind = entry["type"]
        if kind == "calculator":
            return [calculator.hosted()]
        if kind == "code_interpreter":
            if not self.settings.code_execution:
                why = "code execution is off on this server; an admin can turn it on with [tools] code_execution = true"
                raise InvalidRequest(why, param=f"{param}.type", code="tool_disabled")
            return [sandbox.hosted(runs=self.code_runs)]
        if kind == "web_fetch":
            if not self.settings.fetch_hosts:
                why = "URL fetch is off on this server; an admin can allow hosts with [tools] fetch_hosts = [...]"
                raise InvalidRequest(why, param=f"{param}.type", code="tool_disabled")
            return [fetch.hosted(self.settings.fetch_hosts)]
        if kind == "file_search":
            ids = entry.get("vector_store_ids") or [knowledge.DEFAULT]
            k = entry.get("max_num_results", 5)
            if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
                raise invalid_value(f"{param}.vector_store_ids", "give a list of collection names")
            if not isinstance(k, int) or not 1 <= k <= 50:
                raise invalid_value(f"{param}.max_num_results", "use a whole number from 1 to 50")
            try:
                knowledge.check_collections(self.index, ids, f"{param}.vector_store_ids")
            except ToolFailed as e:
                raise invalid_value(f"{param}.vector_store_ids", str(e)) from None
            return [knowledge.hosted(self.index, ids, k)]
        label = entry.get("server_label")
        if not isinstance(label, str) or label not in self.settings.mcp:
            known = ", ".join(sorted(self.settings.mcp)) or "none are configured"
            raise invalid_value(f"{param}.server_label", f"no MCP server {label!r} in config ({known})")
        if entry.get("server_url"):
            raise invalid_value(f"{param}.server_url", "MCP servers come from config; name one by server_label")
        allowed = entry.get("allowed_tools")
        if isinstance(allowed, dict):
            allowed = allowed.get("tool_names")
        if allowed is not None and not (isinstance(allowed, list) and all(isinstance(x, str) for x in allowed)):
            raise invalid_value(f"{param}.allowed_tools", "give a list of tool names")
        return await self.mcp.hosted(label, allowed)

    async def close(self) -> None:
        self.code_runs.shutdown(wait=False, cancel_futures=True)
        await self.mcp.close()
        if self._index is not None:
            self._index.close()


def _renamed(h: Hosted, name: str) -> Hosted:
    from dataclasses import replace

    return replace(h, spec=replace(h.spec, name=name))
