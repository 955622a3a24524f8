"""The request body of `POST /api/chat` in the relay's own dialect, and the one entry for
both dialects (a useChat body goes to app/uimessages.py)."""

from typing import Annotated, Literal

import jiter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)

from app.ask import Ask, ModelName, NonEmptyText, Text, base_params
from app.config import Settings
from app.errors import ApiError, invalid_body
from app.jsonsize import check_json_values
from app.tools import ToolChoice, ToolDefinition, check_tools, in_play, tool_params
from app.turns import Blocks, check_turns
from app.uimessages import PARTS_PER_TURN, check_parts, is_ui_body, ui_params

ACCEPTED = "message, messages, system, model, max_tokens, thinking, resumable, tools, tool_choice"


# A turn's content: text, or blocks of text, images and PDFs (app/attachments.py).
Content = NonEmptyText | Blocks


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: Content


class ChatRequest(BaseModel):
    """Exactly one of `message` (one user turn) or `messages` (a whole conversation)."""

    model_config = ConfigDict(extra="forbid")

    message: Content | None = None
    messages: Annotated[list[Turn], Field(min_length=1)] | None = None
    system: Text | None = None
    model: ModelName | None = None
    max_tokens: StrictInt | None = None
    # Ask Claude to think first (its thinking streams as `thinking` frames).
    thinking: StrictBool = False
    # Ask for an answer that survives a dropped connection (see RESUME_WINDOW).
    resumable: StrictBool = False
    # The caller's tools (app/tools.py), and how Claude may use them.
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None

    @model_validator(mode="after")
    def _one_conversation(self) -> "ChatRequest":
        if (self.message is None) == (self.messages is None):
            raise ValueError("send exactly one of `message` or `messages`")
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("`messages` must end with a user turn")
        return self


def upstream_params(body: bytes, settings: Settings) -> Ask:
    """Validate a raw request body (either dialect) into keyword arguments for
    `messages.create`, and how the caller wants its answer.

    The work is bounded before validation starts: the body by MAX_BODY_BYTES, what it would
    become by MAX_JSON_VALUES (counted on its bytes: app/jsonsize.py), then one pass of a C
    JSON parser, then the turn count (MAX_TURNS), so a conversation of 30,000 invalid turns
    is refused in about a millisecond instead of tens of thousands of validation errors
    later.
    """
    values = check_json_values(body, settings.max_json_values)
    try:
        data = jiter.from_json(body, cache_mode="keys")
    except ValueError as exc:  # says where, never what: no input is echoed
        raise ApiError(422, "invalid_request_error", f"Invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request_error", "Input should be an object")
    turns = data.get("messages")
    if isinstance(turns, list) and len(turns) > settings.max_turns:
        raise ApiError(
            422,
            "invalid_request_error",
            f"messages: at most {settings.max_turns} turns (got {len(turns)})",
        )
    ui = is_ui_body(data)
    check_parts(data, "parts" if ui else "content", settings.max_turns * PARTS_PER_TURN)
    check_tools(data.get("tools"), settings)
    del data, turns  # attachments make a body large: hold one copy of it at a time
    if ui:
        ask = ui_params(body, settings)
        ask.values = values
        return ask
    try:
        # JSON mode, for its JSON wording ("array", "object"); a second C parse is cheap.
        request = ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_body(exc, ACCEPTED) from None
    turns = request.messages or [Turn(role="user", content=request.message)]  # type: ignore[arg-type]
    messages = [turn.model_dump(exclude_none=True) for turn in turns]
    tally = check_turns(messages, settings)
    params = base_params(
        request.model, request.max_tokens, request.system, messages, settings, request.thinking
    )
    params.update(tool_params(request.tools, request.tool_choice, request.thinking, settings))
    return Ask(
        params, request.resumable, attached=tally, values=values, **in_play(params, settings)
    )
