"""The request body of `POST /api/chat`, and its translation into upstream parameters."""

import re
from typing import Annotated, Any, Literal

import jiter
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from app.config import Settings
from app.errors import ApiError, invalid_request


def _no_nul(value: str) -> str:
    # `\u0000` is valid JSON but no text anyone means to send on. (Unpaired surrogates
    # never get this far: the JSON parser refuses them.)
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Text = Annotated[StrictStr, AfterValidator(_no_nul)]
NonEmptyText = Annotated[Text, AfterValidator(_not_blank)]
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,99}")


def _model_name(value: str) -> str:
    # A model id lands in log lines: short and plain, like the API's own.
    if not value:
        raise ValueError("must not be empty")
    if not _MODEL_NAME.fullmatch(value):
        raise ValueError("at most 100 letters, digits and . _ : @ / -")
    return value


ModelName = Annotated[StrictStr, AfterValidator(_model_name)]


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: NonEmptyText


class ChatRequest(BaseModel):
    """Exactly one of `message` (one user turn) or `messages` (a whole conversation)."""

    model_config = ConfigDict(extra="forbid")

    message: NonEmptyText | None = None
    messages: Annotated[list[Turn], Field(min_length=1)] | None = None
    system: Text | None = None
    model: ModelName | None = None
    max_tokens: StrictInt | None = None
    # Ask for an answer that survives a dropped connection (see RESUME_WINDOW).
    resumable: StrictBool = False

    @model_validator(mode="after")
    def _one_conversation(self) -> "ChatRequest":
        if (self.message is None) == (self.messages is None):
            raise ValueError("send exactly one of `message` or `messages`")
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("`messages` must end with a user turn")
        return self


def upstream_params(body: bytes, settings: Settings) -> tuple[dict[str, Any], bool]:
    """Validate a raw request body into keyword arguments for `messages.create`, and
    whether the caller asked for a resumable answer.

    The work is bounded before validation starts: the body by MAX_BODY_BYTES, then one pass
    of a C JSON parser, then the turn count (MAX_TURNS), so a conversation of 37,000 invalid
    turns is refused in about a millisecond instead of tens of thousands of validation
    errors later.
    """
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
    try:
        # JSON mode, for its JSON wording ("array", "object"); a second C parse is cheap.
        request = ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_request(list(exc.errors(include_url=False))) from None

    model = request.model or settings.default_model
    if settings.allowed_models and model not in settings.allowed_models:
        allowed = ", ".join(settings.allowed_models)
        raise ApiError(422, "invalid_request_error", f"model: must be one of {allowed}")
    max_tokens = settings.default_max_tokens if request.max_tokens is None else request.max_tokens
    if not 1 <= max_tokens <= settings.max_tokens_limit:
        raise ApiError(
            422,
            "invalid_request_error",
            f"max_tokens: must be between 1 and {settings.max_tokens_limit}",
        )

    if request.messages is None:
        messages = [{"role": "user", "content": request.message}]
    else:
        messages = [turn.model_dump() for turn in request.messages]
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": messages,
    }
    if request.system:
        params["system"] = request.system
    return params, request.resumable
