"""The operator's MCP servers while the relay runs: one session each, kept by a task of its
own (started in the app's lifespan), reconnected with backoff, asked for its tools at start,
after a reconnect and on `notifications/tools/list_changed`; and the one way to call a tool.

The official `mcp` SDK does the protocol (`ClientSession` over its streamable HTTP and stdio
transports). A server that is down leaves its tools out until it answers again; `/readyz`
and `chat_relay_mcp_server_up{server}` say which are connected. A call runs in the caller's
task (the stream's, under its one cancel scope): cancelling it abandons the request, and the
SDK tells the server (`notifications/cancelled`).
"""

import asyncio
import contextlib
import logging
import random
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from app import telemetry
from app.mcpconfig import MAX_NAME, McpServer, server_of, tool_name

log = logging.getLogger("chat_relay")
PING_SECONDS = 5.0  # how soon a server that went away is noticed between calls


class Unavailable(Exception):
    """The tool's server is not connected, or the tool is unknown."""


class Server:
    """One configured server: its session while connected, and the tools it offers."""

    def __init__(self, config: McpServer) -> None:
        self.config = config
        self.session: ClientSession | None = None
        self.tools: dict[str, types.Tool] = {}  # by the name Claude sees
        # And as the upstream's `tools` entries: built when they are listed, not per chat.
        self.definitions: list[dict[str, Any]] = []
        self.changed = asyncio.Event()  # tools/list_changed arrived
        self.task: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return self.session is not None

    async def run(self, backoff: float, backoff_max: float) -> None:
        """Connect, list the tools, keep the session; again after any failure, with backoff."""
        delay = backoff
        while True:
            try:
                await self._connected()
            except Exception as exc:  # any failure: log it, wait, connect again
                log.warning("MCP server %s unavailable: %s", self.config.name, type(exc).__name__)
            else:
                delay = backoff
            finally:
                self.session = None
                self._offer({})
                telemetry.MCP_UP.labels(self.config.name).set(0)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, backoff_max)

    async def _connected(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._transport(stack))
            session = await stack.enter_async_context(
                ClientSession(read, write, message_handler=self._on_message)
            )
            with anyio.fail_after(30):
                await session.initialize()
                await self._list(session)
            self.session = session
            telemetry.MCP_UP.labels(self.config.name).set(1)
            log.info("MCP server %s connected: %d tools", self.config.name, len(self.tools))
            while True:  # a ping notices a server that went away; a change is listed again
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PING_SECONDS):
                        await self.changed.wait()
                if self.changed.is_set():
                    self.changed.clear()
                    await self._list(session)
                with anyio.fail_after(PING_SECONDS):
                    await session.send_ping()

    def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        config = self.config
        if config.url is not None:
            client = create_mcp_http_client(headers=dict(config.headers))
            stack.push_async_callback(client.aclose)
            return streamable_http_client(config.url, http_client=client)
        parameters = StdioServerParameters(
            command=config.command or "", args=list(config.args), env=dict(config.env) or None
        )
        return stdio_client(parameters)

    async def _list(self, session: ClientSession) -> None:
        tools: dict[str, types.Tool] = {}
        cursor = None
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            listed = await session.list_tools(params=params)
            for tool in listed.tools:
                allowed = self.config.tools
                if allowed is not None and tool.name not in allowed:
                    continue
                name = tool_name(self.config.name, tool.name)
                if len(name) > MAX_NAME:
                    log.warning("MCP tool %s left out: over %d characters", name, MAX_NAME)
                    continue
                tools[name] = tool
            cursor = listed.next_cursor
            if not cursor:
                break
        self._offer(tools)

    def _offer(self, tools: dict[str, types.Tool]) -> None:
        self.tools = tools
        self.definitions = [
            {"name": name, "input_schema": tool.input_schema}
            | ({"description": tool.description} if tool.description else {})
            for name, tool in tools.items()
        ]

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.changed.set()


class Hub:
    """Every configured server, and the tools of those connected."""

    def __init__(self, configs: list[McpServer], backoff: float, backoff_max: float) -> None:
        self.servers = {config.name: Server(config) for config in configs}
        self.backoff, self.backoff_max = backoff, backoff_max

    def start(self) -> None:
        for server in self.servers.values():
            server.task = asyncio.get_running_loop().create_task(
                server.run(self.backoff, self.backoff_max)
            )

    async def close(self) -> None:
        tasks = [s.task for s in self.servers.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def status(self) -> dict[str, bool]:
        return {name: server.up for name, server in self.servers.items()}

    def definitions(self) -> list[dict[str, Any]]:
        """The connected servers' tools, as the upstream's `tools` entries."""
        return [d for server in self.servers.values() for d in server.definitions]

    def timeout(self, name: str, default: float) -> float:
        server = self._server_of(name)
        return (server.config.timeout if server else None) or default

    async def call(self, name: str, arguments: dict[str, Any], seconds: float) -> Any:
        """Call tool `name` (as Claude names it); raises `Unavailable`, or what the SDK
        raises (an error answer, a timeout, a lost connection)."""
        server = self._server_of(name)
        if server is None or server.session is None:
            raise Unavailable("The tool's server is not connected.")
        tool = server.tools.get(name)
        if tool is None:
            raise Unavailable("No such tool on a connected server.")
        session = server.session
        return await session.call_tool(tool.name, arguments, read_timeout_seconds=seconds)

    def _server_of(self, name: str) -> Server | None:
        return self.servers.get(server_of(name))
