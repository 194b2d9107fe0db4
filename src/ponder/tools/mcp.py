"""MCP servers from config, their tools offered to agents.

    [mcp.warehouse]                       # over stdio: Ponder starts the server
    command = ["python", "/srv/warehouse_mcp.py"]
    [mcp.docs]                            # over Streamable HTTP
    url = "http://127.0.0.1:9000/mcp"

A request turns a server on with a Responses-style tool entry,
`{"type": "mcp", "server_label": "warehouse"}` (optionally `allowed_tools`), or
config lists it in `[tools] enabled` for every request. Each server gets one
connection, opened on first use and kept: an owner task holds the MCP client (its
transport must be entered and left in one task) and the request tasks call
through it. A connection that drops is opened again on the next use. Tool errors
come back to the model as results; a server that cannot be reached is a 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from ponder.config import McpServer
from ponder.errors import UpstreamError
from ponder.tools.base import Hosted, Result, ToolFailed
from ponder.types import Tool

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 20.0


class Connection:
    """One kept MCP client, owned by a background task."""

    def __init__(self, server: McpServer):
        self.server = server
        self._client: Any = None
        self._tools: list[Any] | None = None
        self._owner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._lock = asyncio.Lock()

    async def tools(self) -> list[Any]:
        client = await self._connected()
        if self._tools is None:
            self._tools = list((await client.list_tools()).tools)
        return self._tools

    async def call(self, name: str, args: dict[str, Any]) -> Any:
        client = await self._connected()
        try:
            return await client.call_tool(name, args, read_timeout_seconds=self.server.timeout_s)
        except Exception as e:  # the connection broke: open a new one next time
            await self.close()
            raise ToolFailed(f"the MCP server {self.server.name!r} failed: {_reason(e)}") from None

    async def _connected(self) -> Any:
        async with self._lock:
            if self._owner is None or self._owner.done():
                self._ready, self._stop, self._error, self._tools = asyncio.Event(), asyncio.Event(), None, None
                self._owner = asyncio.create_task(self._own(), name=f"mcp:{self.server.name}")
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        await self._ready.wait()
                except TimeoutError:
                    self._owner.cancel()
                    raise UpstreamError(f"the MCP server {self.server.name!r} did not answer within "
                                        f"{CONNECT_TIMEOUT_S:g}s") from None  # fmt: skip
            if self._error is not None or self._client is None:
                raise UpstreamError(f"cannot reach the MCP server {self.server.name!r}: {_reason(self._error)}")
            return self._client

    async def _own(self) -> None:
        from mcp import Client, StdioServerParameters

        s = self.server
        target: Any = s.url or StdioServerParameters(command=s.command[0], args=list(s.command[1:]),
                                                     env={**os.environ, **(s.env or {})})  # fmt: skip
        try:
            async with Client(target, cache=None) as client:
                self._client = client
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:
            self._error = e
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            self._client = None
            self._ready.set()

    async def close(self) -> None:
        owner = self._owner
        if owner is None:
            return
        self._stop.set()
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(5):
                await asyncio.shield(owner)
        if not owner.done():
            owner.cancel()
        self._owner = None


def _reason(e: BaseException | None) -> str:
    """The innermost message of an error (transports raise exception groups)."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}" if e is not None else "closed"


class Pool:
    """The configured MCP servers, connected on first use."""

    def __init__(self, servers: Mapping[str, McpServer]):
        self.servers = servers
        self._conns: dict[str, Connection] = {}

    async def hosted(self, label: str, allowed: list[str] | None = None) -> list[Hosted]:
        conn = self._conns.setdefault(label, Connection(self.servers[label]))
        tools = await conn.tools()
        out = []
        for t in tools:
            if allowed is not None and t.name not in allowed:
                continue
            spec = Tool(t.name, t.description or "", t.input_schema or {"type": "object", "properties": {}})
            out.append(Hosted("mcp", spec, _caller(conn, t.name), timeout_s=conn.server.timeout_s, label=label))
        return out

    async def close(self) -> None:
        for conn in self._conns.values():
            await conn.close()


def _caller(conn: Connection, name: str) -> Any:
    async def call(args: dict[str, Any]) -> Result:
        r = await conn.call(name, args)
        text = "\n".join(getattr(c, "text", None) or json.dumps(c.model_dump(mode="json")) for c in r.content)
        if r.is_error:
            raise ToolFailed(text or "the tool failed")
        return Result(text, {"server_label": conn.server.name, "name": name})

    return call
