"""Running the tools the relay runs (the operator's MCP servers, app/mcphub.py) for one step
of an answer: the calls Claude made, several at once, each within its server's timeout and
the bounds on calls at once (per stream, per process), inside the stream's task and so its
one cancel scope. Whatever goes wrong becomes an `is_error` result Claude sees, and the
answer goes on.

A result becomes the `tool_result` block sent upstream (text as text, `structuredContent` as
its JSON, images as image blocks, checked as attachments are; at most MAX_TOOL_RESULT_BYTES,
cut with a note to Claude) and a summary for the frames (images as type and size, never
their data).
"""

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError

from app import telemetry
from app.ask import Tally
from app.attachments import IMAGE_TYPES, check_block, decoded_size
from app.config import Settings
from app.dialect import Call
from app.errors import ApiError, invalid
from app.mcphub import Hub, Unavailable
from app.translate import INVALID_JSON

log = logging.getLogger("chat_relay")


@dataclass
class Running:
    """Relay tool calls running now in this process (MCP_MAX_CALLS bounds them)."""

    limit: int
    now: int = 0


@dataclass(slots=True)
class Ran:
    call: Call
    block: dict[str, Any]  # the tool_result block for the upstream
    output: Any = None  # what the frames show
    error: str | None = None
    seconds: float = 0.0
    outcome: str = "ok"  # ok, error, timeout, unavailable, invalid_input, refused


async def run_calls(
    calls: list[tuple[Call, dict[str, Any]]],
    *,
    hub: Hub,
    settings: Settings,
    running: Running,
    tracing: Any = None,
) -> list[Ran]:
    """Run a step's relay calls at once (within the bounds); their results, in order. With
    OpenTelemetry on (`tracing`, app/genai.py), each in an `execute_tool` span."""
    results: list[Ran | None] = [None] * len(calls)

    async def one(n: int, call: Call, arguments: dict[str, Any]) -> None:
        if tracing is None:
            results[n] = await _run(hub, call, arguments, settings, running)
            return
        with tracing.tool(call.name, call.id) as span:
            results[n] = ran = await _run(hub, call, arguments, settings, running)
            span.outcome = ran.outcome if ran.error is not None else None

    async with anyio.create_task_group() as group:
        for n, (call, arguments) in enumerate(calls):
            if n >= settings.mcp_calls_per_stream or running.now >= running.limit:
                results[n] = _refused(call, settings.mcp_calls_per_stream, n, hub)
            else:
                running.now += 1  # taken now, so the next call of this loop sees it
                group.start_soon(one, n, call, arguments)
    return [ran for ran in results if ran is not None]


async def _run(
    hub: Hub, call: Call, arguments: dict[str, Any], settings: Settings, running: Running
) -> Ran:
    started = time.monotonic()
    timeout = hub.timeout(call.name, settings.mcp_tool_timeout)
    outcome = "error"
    try:
        if INVALID_JSON in arguments:
            ran = _failed(call, "The tool's input was not valid JSON.")
            outcome = "invalid_input"
        else:
            result = await hub.call(call.name, arguments, timeout)
            ran = _converted(call, result, settings)
            outcome = "error" if ran.error else "ok"
    except Unavailable as exc:
        ran, outcome = _failed(call, str(exc)), "unavailable"
    except MCPError as exc:
        timed_out = time.monotonic() - started >= timeout
        outcome = "timeout" if timed_out else "error"
        message = f"The tool did not answer within {timeout:g} s." if timed_out else None
        ran = _failed(call, message or "The tool's server answered with an error.")
        log.warning("MCP call %s failed: %s", call.name, type(exc).__name__)
    except Exception as exc:  # a lost connection, a result that does not parse
        ran = _failed(call, "The tool's server failed.")
        log.warning("MCP call %s failed: %s", call.name, type(exc).__name__)
    finally:
        running.now -= 1
    ran.seconds, ran.outcome = time.monotonic() - started, outcome
    telemetry.tool_called(call.name, outcome, ran.seconds, hub.servers)
    return ran


def _refused(call: Call, per_stream: int, n: int, hub: Hub) -> Ran:
    """A call past the bounds, said at once (Claude sees it and may try again later)."""
    if n >= per_stream:
        ran = _failed(call, f"At most {per_stream} tool calls run at once per answer.")
    else:
        ran = _failed(call, "The relay is running as many tool calls as it can.")
    ran.outcome = "refused"
    telemetry.tool_called(call.name, "refused", 0.0, hub.servers)
    return ran


def _failed(call: Call, message: str) -> Ran:
    block = {"type": "tool_result", "tool_use_id": call.id, "content": message, "is_error": True}
    return Ran(call, block, error=message)


def _converted(call: Call, result: types.CallToolResult, settings: Settings) -> Ran:
    budget = settings.max_tool_result_bytes
    blocks: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []
    texts = [c.text for c in result.content if isinstance(c, types.TextContent)]
    if result.structured_content is not None and not texts:
        texts = [json.dumps(result.structured_content, ensure_ascii=False)]
    for item in result.content:
        if isinstance(item, types.ImageContent):
            image = _image(item, settings)
            if isinstance(image, str) or len(item.data) > budget:
                texts.append(image if isinstance(image, str) else "[an image over the size limit]")
                continue
            budget -= len(item.data)
            blocks.append(image)
            size = decoded_size(item.data)
            shown.append({"type": "image", "media_type": item.mime_type, "bytes": size})
        elif not isinstance(item, types.TextContent):
            texts.append(f"[{item.type} content the relay does not pass on]")
    text = "\n".join(texts)
    encoded = text.encode()
    if len(encoded) > budget:
        cut = encoded[: max(budget, 0)].decode(errors="ignore")
        text = cut + f"\n[cut: the result was {len(encoded)} bytes, over the relay's limit]"
    if text:
        blocks.insert(0, {"type": "text", "text": text})
        shown.insert(0, {"type": "text", "text": text})
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id, "content": blocks}
    if result.is_error:
        block["is_error"] = True
        return Ran(call, block, error=text or "The tool reported an error.")
    return Ran(call, block, output=shown)


def _image(item: types.ImageContent, settings: Settings) -> dict[str, Any] | str:
    block = {
        "type": "image",
        "source": {"type": "base64", "media_type": item.mime_type, "data": item.data},
    }
    try:
        if item.mime_type not in IMAGE_TYPES:  # the magic numbers know no other
            raise invalid(f"not an image type: {item.mime_type}")
        check_block(block, "user", "result", settings, Tally())
    except ApiError:
        return "[an image the relay could not pass on]"
    return block
