"""A useChat body (the AI SDK's `DefaultChatTransport`), turned into upstream parameters.

Its shape: `id` (the chat id), `messages` (UIMessages: `id`, `role`, `parts`), `trigger`,
`messageId`, and what the app puts in the transport's `body` option: `model`,
`max_tokens`, `system`, `resumable`. `text` parts become a turn's text blocks, a user's
`file` parts (base64 `data:` URLs of images and PDFs) its image and document blocks, checked
like the relay's own (app/attachments.py); `system` messages the system prompt; reasoning,
tool, source, data and step parts of earlier turns, and an assistant's files, are dropped
(the upstream would refuse most of them without their signatures and ids), and so is a turn
left with nothing. The bounds are the relay's own dialect's (app/ask.py).
"""

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from app.ask import Ask, ModelName, Tally, Text, base_params
from app.attachments import check_block, from_data_url
from app.config import Settings
from app.errors import ApiError, invalid_body

ACCEPTED = "id, messages, trigger, messageId, model, max_tokens, system, thinking, resumable"
# A resumable chat's id is the capability to read and stop its answer: the AI SDK makes 16
# of 62 symbols (95 bits); shorter ones could be guessed.
CHAT_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")
Short = Annotated[StrictStr, Field(max_length=256)]


class UIPart(BaseModel):
    # state, providerMetadata, ...: not ours, so never built (a body may be 32 MiB).
    model_config = ConfigDict(extra="ignore")

    type: Annotated[StrictStr, Field(max_length=64)]
    text: Text | None = None
    url: StrictStr | None = None  # a `file` part's data: URL


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
        blocks = _blocks(m, message, settings, tally)
        if message.role == "system":
            system += [block["text"] for block in blocks if block["type"] == "text"]
        elif blocks:
            if turns and turns[-1]["role"] == message.role:  # the upstream wants turns
                turns[-1]["content"] += blocks  # to alternate: one turn of both
            else:
                turns.append({"role": message.role, "content": blocks})
    if not turns or turns[-1]["role"] != "user":
        raise ApiError(
            422,
            "invalid_request_error",
            "messages: must end with a user message with text or a file",
        )
    joined = "\n\n".join(system) or None
    params = base_params(
        request.model, request.max_tokens, joined, turns, settings, request.thinking
    )
    return Ask(params, request.resumable, "ui", request.id, tally)


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
