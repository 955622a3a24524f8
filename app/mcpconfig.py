"""The operator's MCP servers (MCP_SERVERS): JSON inline or `@path` to a file, a list of
streamable HTTP servers (`url`, `headers`) and stdio servers (`command`, `args`, `env`).

Read once, at start-up: a bad file stops the relay with a message that says what is wrong,
rather than a relay that starts without the tools its operator meant to give. Header and
environment values may name environment variables (`"${SEARCH_TOKEN}"`), so secrets stay out
of the file; a variable that is not set is such an error too.
"""

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from app.dialect import RELAY_TOOL_PREFIX

NAME = r"^[a-z0-9_-]{1,32}$"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# `mcp__<server>__<tool>`: the name Claude sees, within the API's 64 characters.
MAX_NAME = 64


class McpServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[StrictStr, Field(pattern=NAME)]
    url: StrictStr | None = None  # streamable HTTP
    headers: dict[str, StrictStr] = {}
    command: StrictStr | None = None  # stdio: one process per relay process
    args: list[StrictStr] = []
    env: dict[str, StrictStr] = {}
    tools: list[StrictStr] | None = None  # an allow-list of the server's tool names
    timeout: Annotated[float, Field(gt=0)] | None = None  # seconds per call

    @model_validator(mode="after")
    def _one_transport(self) -> "McpServer":
        if (self.url is None) == (self.command is None):
            raise ValueError(f"{self.name}: give either `url` or `command`")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"{self.name}: `url` must be http:// or https://")
        if self.url is None and self.headers:
            raise ValueError(f"{self.name}: `headers` go with `url`")
        if self.command is None and (self.args or self.env):
            raise ValueError(f"{self.name}: `args` and `env` go with `command`")
        return self


def load_servers(value: Any) -> Any:
    """MCP_SERVERS as set: inline JSON, or `@path`; an already parsed list as it is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise ValueError(f"MCP_SERVERS: cannot read {text[1:]}: {exc.strerror}") from None
    try:
        servers = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"MCP_SERVERS: not JSON ({exc})") from None
    if not isinstance(servers, list):
        raise ValueError("MCP_SERVERS: a JSON list of servers")
    return [_expanded(server) for server in servers]


def check_servers(servers: list[McpServer]) -> list[McpServer]:
    """Names used once; allow-listed tools' names within the API's limit. (A tool a server
    lists later with a longer name is left out, with a warning: app/mcphub.py.)"""
    seen: set[str] = set()
    for server in servers:
        if server.name in seen:
            raise ValueError(f"MCP_SERVERS: the name {server.name!r} is used twice")
        seen.add(server.name)
        for tool in server.tools or []:
            if len(tool_name(server.name, tool)) > MAX_NAME:
                long = tool_name(server.name, tool)
                raise ValueError(f"MCP_SERVERS: {long} is over {MAX_NAME} characters")
    return servers


def tool_name(server: str, tool: str) -> str:
    return f"{RELAY_TOOL_PREFIX}{server}__{tool}"


def server_of(name: str) -> str:
    """The server part of a relay tool's name (`mcp__<server>__<tool>`)."""
    return name.removeprefix(RELAY_TOOL_PREFIX).partition("__")[0]


def _expanded(server: Any) -> Any:
    """Header and environment values with their `${VAR}`s filled in from the environment."""
    if not isinstance(server, dict):
        return server
    for key in ("headers", "env"):
        values = server.get(key)
        if isinstance(values, dict):
            server[key] = {k: _fill(v, server.get("name")) for k, v in values.items()}
    return server


def _fill(value: Any, server: Any) -> Any:
    if not isinstance(value, str):
        return value

    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ValueError(f"MCP_SERVERS: {server}: the environment variable {name} is not set")
        return os.environ[name]

    return _VARIABLE.sub(variable, value)
