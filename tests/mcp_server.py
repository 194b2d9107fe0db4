"""A small real MCP server ("ponder-test") for the MCP client tests.

Run over stdio:            python tests/mcp_server.py stdio
Run over Streamable HTTP:  python tests/mcp_server.py http PORT   (127.0.0.1 only, endpoint /mcp)
"""

import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("ponder-test")

STOCK = {"widgets": (4183, 7), "gears": (52, 2), "bolts": (990, 3)}


@server.tool()
def warehouse_stock(item: str) -> str:
    """Stock level of an item in the test warehouse."""
    if item not in STOCK:
        raise ToolError(f"unknown item {item!r}")  # its message reaches the client
    units, aisle = STOCK[item]
    return f"{item}: {units} units in aisle {aisle}"


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
async def wait(seconds: float) -> str:
    """Wait, then say so (for timeouts)."""
    await anyio.sleep(seconds)
    return f"waited {seconds}s"


def main(argv: list[str]) -> None:
    if argv[:1] == ["stdio"]:
        server.run("stdio")
    elif len(argv) == 2 and argv[0] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(argv[1]))
    else:
        sys.exit("usage: mcp_server.py stdio | http PORT")


if __name__ == "__main__":
    main(sys.argv[1:])
