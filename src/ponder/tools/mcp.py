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
CONNECTION_CLOSED = -32000  # the JSON-RPC error code MCP clients raise when the transport is gone


class _Live:
    """One opened connection: the owner task that holds the MCP client open (its
    transport must be entered and left in one task), and how to stop it."""

    def __init__(self, server: McpServer):
        self.server = server
        self.client: Any = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()
        self.tools: list[Any] | None = None
        self.task = asyncio.create_task(self._own(), name=f"mcp:{server.name}")

    async def _own(self) -> None:
        from mcp import Client, StdioServerParameters

        s = self.server
        target: Any = s.url or StdioServerParameters(command=s.command[0], args=list(s.command[1:]),
                                                     env={**os.environ, **(s.env or {})})  # fmt: skip
        try:
            async with Client(target, cache=None) as client:
                self.client = client
                self.ready.set()
                await self.stop.wait()
        except Exception as e:  # the transport's ExceptionGroup, a missing command, …
            self.error = e
        finally:
            self.client = None
            self.ready.set()

    @property
    def alive(self) -> bool:
        return self.client is not None and not self.task.done()

    async def close(self) -> None:
        self.stop.set()
        try:
            async with asyncio.timeout(5):
                await asyncio.shield(self.task)
        except Exception:  # a slow or broken transport (TimeoutError included): cancelled below
            pass
        if not self.task.done():
            self.task.cancel()


class Connection:
    """One MCP server's kept connection, opened again after it breaks."""

    def __init__(self, server: McpServer):
        self.server = server
        self._live: _Live | None = None
        self._lock = asyncio.Lock()

    async def tools(self) -> list[Any]:
        live = await self._connected()
        if live.tools is None:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    live.tools = list((await live.client.list_tools()).tools)
            except Exception as e:  # a timeout, or the transport broke
                await self._drop(live)
                raise UpstreamError(
                    f"the MCP server {self.server.name!r} did not list its tools: {_reason(e)}"
                ) from None
        return live.tools

    async def call(self, name: str, args: dict[str, Any]) -> Any:
        from mcp import MCPError

        live = await self._connected()
        try:
            return await live.client.call_tool(name, args, read_timeout_seconds=self.server.timeout_s)
        except MCPError as e:
            if e.code != CONNECTION_CLOSED:  # the server refused this call; the connection is fine
                raise ToolFailed(f"the MCP server {self.server.name!r} answered: {e.message}") from None
            await self._drop(live)
            raise ToolFailed(f"the MCP server {self.server.name!r} closed the connection") from None
        except Exception as e:  # the transport broke: the next call opens a new connection
            await self._drop(live)
            raise ToolFailed(f"the MCP server {self.server.name!r} failed: {_reason(e)}") from None

    async def _connected(self) -> _Live:
        async with self._lock:
            if self._live is None or not self._live.alive:
                if self._live is not None:
                    await self._live.close()
                live = self._live = _Live(self.server)
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        await live.ready.wait()
                except TimeoutError:
                    await live.close()
                    raise UpstreamError(f"the MCP server {self.server.name!r} did not answer within "
                                        f"{CONNECT_TIMEOUT_S:g}s") from None  # fmt: skip
            live = self._live
            if not live.alive:
                raise UpstreamError(f"cannot reach the MCP server {self.server.name!r}: {_reason(live.error)}")
            return live

    async def _drop(self, live: _Live) -> None:
        """Close `live` if it is still this server's connection (a newer one is left be)."""
        async with self._lock:
            if self._live is live:
                self._live = None
        await live.close()

    async def close(self) -> None:
        async with self._lock:
            live, self._live = self._live, None
        if live is not None:
            await live.close()


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
            # the MCP read timeout comes first, so a slow call ends in its error, not a cancellation
            out.append(Hosted("mcp", spec, _caller(conn, t.name), timeout_s=conn.server.timeout_s + 5, label=label))
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
