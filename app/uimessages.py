"""A useChat body (the AI SDK's `DefaultChatTransport`), turned into upstream parameters.

Its shape: `id` (the chat id), `messages` (UIMessages: `id`, `role`, `parts`), `trigger`,
`messageId`, and what the app puts in the transport's `body` option: `model`,
`max_tokens`, `system`, `thinking`, `resumable`, `tools`, `tool_choice`. `text` parts become
a turn's text blocks, a user's `file` parts (base64 `data:` URLs of images and PDFs) its
image and document blocks, checked like the relay's own (app/attachments.py); `system`
messages the system prompt. An assistant message is split at its `step-start` parts, as
`convertToModelMessages` with `@ai-sdk/anthropic` does: each tool part with an output becomes
a `tool_use` in the assistant's turn and a `tool_result` in the user turn after it, reasoning
with a signature a thinking block again; tool calls without an output and Anthropic's server
tool parts are dropped (their text stays), and so are source, data and file parts of an
assistant, and a turn left with nothing. The bounds are the relay's own dialect's.
"""

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from app.ask import Ask, ModelName, Tally, Text, base_params
from app.attachments import check_block, from_data_url
from app.config import Settings
from app.dialect import RELAY_TOOL_PREFIX
from app.errors import ApiError, invalid, invalid_body
from app.tools import ToolChoice, ToolDefinition, in_play, tool_params
from app.turns import check_pairs

ACCEPTED = (
    "id, messages, trigger, messageId, model, max_tokens, system, thinking, resumable, tools, "
    "tool_choice"
)
# A resumable chat's id is the capability to read and stop its answer: the AI SDK makes 16
# of 62 symbols (95 bits); shorter ones could be guessed.
CHAT_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")
Short = Annotated[StrictStr, Field(max_length=256)]


class UIPart(BaseModel):
    # Whatever else a part carries (callProviderMetadata, ...): not ours, so never built.
    model_config = ConfigDict(extra="ignore")

    type: Annotated[StrictStr, Field(max_length=128)]  # `tool-<name>`: up to 69
    text: Text | None = None
    url: StrictStr | None = None  # a `file` part's data: URL
    # A tool part's (`tool-<name>`, `dynamic-tool`) and a reasoning part's.
    toolCallId: Short | None = None
    toolName: Short | None = None
    state: Short | None = None
    input: Any = None
    output: Any = None
    errorText: Text | None = None
    providerExecuted: StrictBool | None = None
    providerMetadata: dict[str, Any] | None = None


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # metadata: the app's, never built

    id: Short | None = None
    role: Literal["user", "assistant", "system"]
    parts: list[UIPart]


class UIChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    messages: Annotated[list[UIMessage], Field(min_length=1)]
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: Short | None = None
    model: ModelName | None = None
    max_tokens: StrictInt | None = None
    system: Text | None = None
    thinking: StrictBool = False
    resumable: StrictBool = False
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None


# Parts (or content blocks) a conversation may hold in all, per turn it may hold
# (MAX_TURNS): counted on the parsed JSON before validation, so a body of 90,000 one-word
# parts is refused at once instead of costing 0.8 s of event loop to validate.
PARTS_PER_TURN = 4


def check_parts(data: dict[str, Any], key: str, limit: int) -> None:
    """At most `limit` items in all in the turns' `key` lists (`parts`, or `content`), and in
    the one turn of a body's `message`."""
    messages, message = data.get("messages"), data.get("message")
    count = len(message) if isinstance(message, list) else 0
    if isinstance(messages, list):  # else validation says what is wrong
        count += sum(
            len(m[key]) for m in messages if isinstance(m, dict) and isinstance(m.get(key), list)
        )
    if count > limit:
        raise ApiError(
            422, "invalid_request_error", f"messages: at most {limit} parts in all (got {count})"
        )


def is_ui_body(data: dict[str, Any]) -> bool:
    """A useChat body: it names its `trigger`, or its messages carry `parts`."""
    messages = data.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    return "trigger" in data or (isinstance(first, dict) and "parts" in first)


def ui_params(body: bytes, settings: Settings) -> Ask:
    try:
        request = UIChatRequest.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_body(exc, ACCEPTED) from None
    if request.resumable and not CHAT_ID.fullmatch(request.id):
        raise ApiError(
            400,
            "invalid_request_error",
            "id: a resumable chat's id must be 16 to 128 letters, digits, _ or -.",
        )
    system = [request.system] if request.system else []
    turns: list[dict[str, Any]] = []
    tally = Tally()
    for m, message in enumerate(request.messages):
        if message.role == "system":
            blocks = _blocks(m, message, settings, tally)
            system += [block["text"] for block in blocks if block["type"] == "text"]
            continue
        for role, blocks in _turns(m, message, settings, tally):
            if turns and turns[-1]["role"] == role:  # the upstream wants turns to
                turns[-1]["content"] += blocks  # alternate: one turn of both
            else:
                turns.append({"role": role, "content": blocks})
    if not turns or turns[-1]["role"] != "user":
        raise ApiError(
            422,
            "invalid_request_error",
            "messages: must end with a user message with text or a file",
        )
    check_pairs(turns)
    joined = "\n\n".join(system) or None
    params = base_params(
        request.model, request.max_tokens, joined, turns, settings, request.thinking
    )
    params.update(tool_params(request.tools, request.tool_choice, request.thinking, settings))
    last = request.messages[-1]
    # Tool outputs were added to the assistant's message: the answer continues it.
    continued = last.id if last.role == "assistant" else None
    return Ask(
        params,
        request.resumable,
        "ui",
        request.id,
        tally,
        message_id=continued,
        **in_play(params, settings),
    )


def _turns(
    m: int, message: UIMessage, settings: Settings, tally: Tally
) -> list[tuple[str, list[dict[str, Any]]]]:
    """A user's message as one turn; an assistant's as a turn per step, each followed by a
    user turn of its tools' results."""
    if message.role == "user":
        return [("user", _blocks(m, message, settings, tally))]
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for p, part in enumerate(message.parts):
        if part.type == "step-start":
            turns += [("assistant", calls), ("user", results)]
            calls, results = [], []
        elif part.type == "text" and part.text and part.text.strip():
            calls.append({"type": "text", "text": part.text})
        elif part.type == "reasoning":
            calls += _thinking(part)
        elif part.type.startswith("tool-") or part.type == "dynamic-tool":
            name = part.type[5:] if part.type != "dynamic-tool" else part.toolName or ""
            pair = _tool_pair(f"messages.{m}.parts.{p}", name, part)
            if pair is not None:
                calls.append(pair[0])
                results.append(pair[1])
    turns += [("assistant", calls), ("user", results)]
    return [(role, blocks) for role, blocks in turns if blocks]


def _thinking(part: UIPart) -> list[dict[str, Any]]:
    """A reasoning part as the thinking block it came from (its signature, or the data of
    redacted thinking, in `providerMetadata.anthropic`); without them, nothing."""
    meta = (part.providerMetadata or {}).get("anthropic")
    if not isinstance(meta, dict):
        return []
    if isinstance(meta.get("signature"), str):
        text = part.text or ""
        return [{"type": "thinking", "thinking": text, "signature": meta["signature"]}]
    if isinstance(meta.get("redactedData"), str):
        return [{"type": "redacted_thinking", "data": meta["redactedData"]}]
    return []


def _tool_pair(where: str, name: str, part: UIPart) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A tool part with an output as its `tool_use` and `tool_result` blocks; None for a call
    without one, and for Anthropic's server tools (the relay's own are kept)."""
    if part.state not in ("output-available", "output-error"):
        return None
    if part.providerExecuted and not name.startswith(RELAY_TOOL_PREFIX):
        return None
    if not part.toolCallId or not name:
        raise invalid(f"{where}: a tool part needs its id and name")
    arguments = {} if part.input is None else part.input
    if not isinstance(arguments, dict):
        raise invalid(f"{where}.input: must be an object")
    call = {"type": "tool_use", "id": part.toolCallId, "name": name, "input": arguments}
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.toolCallId}
    if part.state == "output-error":
        result.update(content=part.errorText or "The tool failed.", is_error=True)
    else:
        output = part.output
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        if output is not None and text:
            result["content"] = text
    return call, result


def _blocks(m: int, message: UIMessage, settings: Settings, tally: Tally) -> list[dict[str, Any]]:
    """A message's text and (in a user's) file parts as content blocks, in their order; the
    files checked and counted in `tally`."""
    blocks: list[dict[str, Any]] = []
    for p, part in enumerate(message.parts):
        if part.type == "text" and part.text and part.text.strip():
            blocks.append({"type": "text", "text": part.text})
        elif part.type == "file" and message.role == "user":
            if part.url is None:
                raise ApiError(422, "invalid_request_error", f"messages.{m}.parts.{p}.url: missing")
            where = f"messages.{m}.parts.{p}"
            block = from_data_url(part.url, where)
            check_block(block, "user", where, settings, tally)
            blocks.append(block)
    return blocks
