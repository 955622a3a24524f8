"""The caller's tools and `tool_choice`, checked for both dialects before anything goes
upstream, and the operator's server tools added to them.

The definitions are bounded before validation (MAX_TOOLS entries, MAX_TOOL_BYTES of JSON,
counted with a walk that stops at the bound), so a body of huge schemas costs what the bound
costs, not what the body holds.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, StringConstraints

from app.ask import Text
from app.config import Settings
from app.dialect import RELAY_TOOL_PREFIX
from app.errors import invalid
from app.servertools import definitions

ToolName = Annotated[StrictStr, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
FIELDS = ("name", "description", "input_schema")


class ToolDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ToolName
    description: Text | None = None
    input_schema: dict[str, Any]


class ToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["auto", "any", "none", "tool"]
    name: ToolName | None = None
    disable_parallel_tool_use: StrictBool | None = None


def check_tools(tools: Any, settings: Settings) -> None:
    """Bound the raw `tools` list before validation builds anything from it: its length,
    its size as JSON, and its fields (a `type` is a server tool: the operator's)."""
    if not isinstance(tools, list):
        return  # validation says what is wrong
    if len(tools) > settings.max_tools:
        raise invalid(f"tools: at most {settings.max_tools} tools (got {len(tools)})")
    budget = settings.max_tool_bytes
    for t, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        if "type" in tool:
            raise invalid(
                f"tools.{t}.type: server tools are the operator's to enable (SERVER_TOOLS); "
                "a caller's tool has name, description and input_schema"
            )
        if any(key not in FIELDS for key in tool):
            raise invalid(f"tools.{t}: unknown field (accepted: {', '.join(FIELDS)})")
        budget = _within(tool, budget)
        if budget < 0:
            raise invalid(f"tools: at most {settings.max_tool_bytes} bytes of definitions")


def _within(value: Any, budget: int) -> int:
    """`budget` less about what `value` takes as JSON; stops once below zero, so the walk
    costs at most the budget however large the value."""
    stack = [value]
    while stack and budget >= 0:
        item = stack.pop()
        if isinstance(item, str):
            budget -= len(item) + 3
        elif isinstance(item, dict):
            budget -= 2 + 4 * len(item) + sum(len(key) for key in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            budget -= 2 + len(item)
            stack.extend(item)
        else:
            budget -= 8
    return budget


def tool_params(
    tools: list[ToolDefinition] | None,
    choice: ToolChoice | None,
    thinking: bool,
    settings: Settings,
) -> dict[str, Any]:
    """The upstream's `tools` and `tool_choice` for a request: the caller's tools, then the
    operator's server tools; empty when no tool is in play."""
    declared = [tool.model_dump(exclude_none=True) for tool in tools or []]
    names = [tool["name"] for tool in declared]
    for t, name in enumerate(names):
        if name.startswith(RELAY_TOOL_PREFIX):
            raise invalid(f"tools.{t}.name: `{RELAY_TOOL_PREFIX}` names are the relay's")
        if name in settings.server_tools:
            raise invalid(f"tools.{t}.name: {name} is a server tool of this relay")
        if name in names[:t]:
            raise invalid(f"tools.{t}.name: {name} is declared twice")
    every = declared + definitions(
        settings.server_tools,
        settings.server_tool_max_uses,
        settings.web_allowed_domains,
        settings.web_blocked_domains,
    )
    if choice is not None:
        if not every:
            raise invalid("tool_choice: no tools are in play (declare `tools`)")
        if (choice.type == "tool") != (choice.name is not None):
            raise invalid("tool_choice: `name` goes with type `tool`, and only with it")
        if choice.name is not None and choice.name not in {t["name"] for t in every}:
            raise invalid("tool_choice.name: not a declared tool")
        if thinking and choice.type in ("any", "tool"):
            raise invalid("tool_choice: forcing a tool (`any`, `tool`) is refused with thinking")
    params: dict[str, Any] = {}
    if every:
        params["tools"] = every
    if choice is not None:
        params["tool_choice"] = choice.model_dump(exclude_none=True)
    return params


def in_play(params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Whether tools are in play for an answer, and how many upstream requests it may make
    (server tools pause long turns: the relay continues them)."""
    steps = settings.max_tool_steps if settings.server_tools else 1
    return {"tools": "tools" in params, "steps": steps}
