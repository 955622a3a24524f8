"""What a request asks for, whichever dialect it speaks: the bounded field types both
dialects' bodies use, the upstream parameters they share, and how to answer."""

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, StrictStr

from app.config import Settings
from app.errors import ApiError


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


@dataclass(slots=True)
class Tally:
    """What a conversation carries besides text, for the log line (counts, never content)."""

    images: int = 0
    documents: int = 0
    nbytes: int = 0  # decoded bytes, all attachments together


@dataclass(slots=True)
class Ask:
    """What a request asks for: the upstream parameters, and how to answer."""

    params: dict[str, Any]
    resumable: bool = False
    dialect: str = "relay"  # or "ui": the AI SDK's UI message stream (app/uimessages.py)
    chat_id: str | None = None  # a useChat body's chat id
    attached: Tally = field(default_factory=Tally)  # its images and PDFs (app/attachments.py)
    tools: bool = False  # tools in play: declared, or server tools on (app/tools.py)
    steps: int = 1  # upstream requests the answer may make (MAX_TOOL_STEPS with server tools)
    message_id: str | None = None  # the UI message the answer continues, if any
    values: int = 0  # its body's JSON values (app/jsonsize.py): what its parsed form holds


def base_params(
    model: str | None,
    max_tokens: int | None,
    system: str | None,
    messages: list[Any],
    settings: Settings,
    thinking: bool = False,
) -> dict[str, Any]:
    """The upstream parameters both dialects share, checked against the settings."""
    model = model or settings.default_model
    if settings.allowed_models and model not in settings.allowed_models:
        allowed = ", ".join(settings.allowed_models)
        raise ApiError(422, "invalid_request_error", f"model: must be one of {allowed}")
    max_tokens = settings.default_max_tokens if max_tokens is None else max_tokens
    if not 1 <= max_tokens <= settings.max_tokens_limit:
        raise ApiError(
            422,
            "invalid_request_error",
            f"max_tokens: must be between 1 and {settings.max_tokens_limit}",
        )
    params: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        params["system"] = system
    if thinking:
        if model.startswith(tuple(settings.thinking_budget_models)):
            # A budget within max_tokens: the answer keeps the max_tokens it asked for, as
            # far as MAX_TOKENS_LIMIT allows (it bounds spend, and the memory arithmetic);
            # past it, thinking and answer share the limit (the API wants the budget below).
            total = min(max_tokens + settings.thinking_budget_tokens, settings.max_tokens_limit)
            budget = min(settings.thinking_budget_tokens, total - 1)
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
            params["max_tokens"] = total
        else:
            params["thinking"] = {"type": "adaptive", "display": "summarized"}
    if settings.prompt_caching == "auto":
        cache(params, settings.prompt_cache_ttl)
    return params


def cache(params: dict[str, Any], ttl: str) -> None:
    """Mark the conversation for prompt caching: a breakpoint on the system prompt and one on
    the last turn. The next turn's request then reads everything up to this one's last turn
    from the cache (a tenth of the price of fresh input) and writes only what is new; a
    prefix too short to cache is simply not cached."""
    mark: dict[str, Any] = {"type": "ephemeral"}
    if ttl != "5m":  # the API's default lifetime
        mark["ttl"] = ttl
    system = params.get("system")
    if system:
        params["system"] = [{"type": "text", "text": system, "cache_control": mark}]
    last = params["messages"][-1]
    content = last["content"]
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    # A copy of the last block: the caller's structures are left as they were.
    last["content"] = [*content[:-1], {**content[-1], "cache_control": mark}]
