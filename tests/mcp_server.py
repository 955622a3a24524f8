"""An MCP server for the tests, built with the `mcp` SDK: served over streamable HTTP inside
the tests' server loop (tests/support.py), or over stdio as `python tests/mcp_server.py`.

What it lived through (a call cancelled, a call made) goes to `EVENTS`, and for the stdio
process also to the file named by MCP_TEST_EVENTS, so a test can see what the server saw.
"""

import os
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.types import Image

EVENTS: list[str] = []


def record(event: str) -> None:
    EVENTS.append(event)
    path = os.environ.get("MCP_TEST_EVENTS")
    if path:
        with open(path, "a") as out:
            out.write(event + "\n")


def build() -> MCPServer:
    server = MCPServer("relay-tests")

    @server.tool(description="Says the text back.")
    def echo(text: str) -> str:
        record(f"echo {text}")
        return f"echo: {text}"

    @server.tool(description="This server's process id.")
    def pid() -> str:
        return str(os.getpid())

    @server.tool(description="Waits, then says so.")
    async def slow(seconds: float = 30.0) -> str:
        record("slow started")
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            record("slow cancelled")
            raise
        return f"slept {seconds:g} s"

    @server.tool(description="A PNG (its first bytes only), or bytes that only claim to be one.")
    def image(real: bool = True) -> Image:
        data = b"\x89PNG\r\n\x1a\n" + bytes(24) if real else b"GIF89a" + bytes(26)
        return Image(data=data, format="png")

    @server.tool(description="Always fails.")
    def fail() -> str:
        raise ValueError("the tool failed on purpose")

    @server.tool(description="A long result.")
    def big(size: int = 300_000) -> str:
        return "x" * size

    @server.tool(description="The weather in a city, as data.", structured_output=True)
    def weather(city: str) -> dict[str, Any]:
        return {"city": city, "celsius": 21}

    return server


if __name__ == "__main__":
    sys.exit(build().run("stdio"))
