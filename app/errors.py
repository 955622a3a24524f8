"""Every failure the caller can see, as one JSON shape: `{"error": {"type", "message"}}`.

Upstream failures are translated here, in one table, whether they arrive as an HTTP status
before the stream or as an `error` event inside it. Details that could say something about
our credentials (401/403, 5xx bodies) go to the log, never to the caller.
"""

import logging
from typing import Any

import anthropic
import httpx2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from app.text import printable, redact

log = logging.getLogger("chat_relay")

UPSTREAM_FAILED = "The upstream service failed; try again later."
# Streams last tens of seconds; a caller turned away should not come back at once.
RETRY_AFTER_SECONDS = "2"
SHUTDOWN = ("server_shutdown", "The relay is restarting; please retry.")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers
        # Whether another upstream attempt might succeed (overloaded, 5xx, broken stream).
        self.retryable = retryable

    def response(self) -> JSONResponse:
        body = {"error": {"type": self.error_type, "message": self.message}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def shutting_down() -> ApiError:
    # Connection: close, so a client's next try reaches a replica that is staying.
    return ApiError(503, *SHUTDOWN, {"Retry-After": RETRY_AFTER_SECONDS, "Connection": "close"})


# Upstream error type -> our status, and what the caller is told. The upstream's own words
# can name the organization, its limits or its internals: they go to the log (escaped) and
# the caller hears the relay's. The one exception (None here) is a 400's explanation of
# what is wrong with the caller's own request, which the contract passes on.
_UPSTREAM_TYPES: dict[str, tuple[int, str | None]] = {
    "invalid_request_error": (400, None),
    "not_found_error": (400, None),  # e.g. a model name the upstream does not know
    "request_too_large": (413, "The request is too large for the upstream."),
    "rate_limit_error": (429, "The upstream is rate limiting this relay; try again later."),
    "overloaded_error": (503, "The upstream is overloaded; try again shortly."),
    "timeout_error": (504, "The upstream did not answer in time."),
}
# Upstream error types worth another attempt: the next one may well succeed.
RETRYABLE_TYPES = frozenset({"overloaded_error", "api_error"})
# The types a caller may see in an `error` frame mid-answer (any other is `upstream_error`),
# so neither frames nor metric labels take an upstream's invented type.
STREAM_ERROR_TYPES = frozenset({*_UPSTREAM_TYPES, *RETRYABLE_TYPES})

_STATUS_TYPES = {
    400: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def upstream_error(
    error_type: str, message: str, headers: dict[str, str] | None = None, status: int = 0
) -> ApiError:
    """An upstream failure before the answer started, by its type (and HTTP status)."""
    # From an HTTP answer, only a 5xx (529 included) is worth another attempt.
    retryable = status >= 500 if status else error_type in RETRYABLE_TYPES
    mapped, ours = _UPSTREAM_TYPES.get(error_type, (502, UPSTREAM_FAILED))
    if mapped == 502:
        error_type = "upstream_error"
    if error_type == "rate_limit_error" and headers:
        ours = f"The upstream is rate limiting this relay; try again in {headers['Retry-After']} s."
    return ApiError(mapped, error_type, ours or message or error_type, headers, retryable=retryable)


def stream_error(error_type: str, message: str) -> ApiError:
    """An upstream `error` event mid-answer: its type (from a known set), our words."""
    log.warning("upstream error event: %s %s", printable(error_type), printable(message))
    if error_type not in STREAM_ERROR_TYPES:
        error_type = "upstream_error"
    ours = _UPSTREAM_TYPES.get(error_type, (0, None))[1] or UPSTREAM_FAILED
    return ApiError(502, error_type, ours, retryable=error_type in RETRYABLE_TYPES)


def retry_after(value: str | None) -> dict[str, str] | None:
    """The upstream's Retry-After, if it is a plain number of seconds (bounded)."""
    if value and value.isdigit() and len(value) <= 6:
        return {"Retry-After": str(min(int(value), 3600))}
    return None


def event_error(payload: Any) -> tuple[str, str]:
    """`(type, message)` of an upstream `error` event's parsed payload, whatever its shape."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return "api_error", "The upstream reported an error."
    return str(error.get("type") or "api_error"), str(error.get("message") or "")


def from_sdk(exc: Exception) -> ApiError:
    """Translate an exception raised while opening the upstream stream."""
    if isinstance(exc, anthropic.APIStatusError):
        error_type, message = event_error(exc.body)
        status = exc.status_code
        log.warning(
            "upstream answered HTTP %s: %s %s", status, printable(error_type), printable(message)
        )
        # The API's own 404 names what it did not find (a model, say); any other 404 is a
        # wrong base URL, an upstream failure like the rest.
        if not (status == 404 and error_type == "not_found_error"):
            error_type = _STATUS_TYPES.get(status, "api_error")
        headers = retry_after(exc.response.headers.get("retry-after")) if status == 429 else None
        return upstream_error(error_type, message, headers, status)
    if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return ApiError(504, "timeout_error", "The upstream did not answer in time.")
    log.warning("upstream unreachable: %s", type(exc).__name__)
    return ApiError(502, "upstream_error", "The upstream service is unreachable.", retryable=True)


def _describe(errors: list[dict[str, Any]], accepted: str) -> str:
    parts = []
    for error in errors[:5]:
        # A location can be a caller's field name of any length: never echo it whole.
        where = ".".join(_short(str(p)) for p in error.get("loc", ()) if p != "body")
        if error.get("type") == "extra_forbidden":
            what = f"unknown field (accepted: {accepted})"
        elif error.get("type") == "union_tag_invalid":
            # pydantic's words quote the caller's tag whole; the tags it expected come
            # last, after the tag (so a tag cannot fake them).
            expected = str(error["msg"]).rpartition("expected tags: ")[2].split(", ")
            shown = ", ".join(expected[:5]) + (", ..." if len(expected) > 5 else "")
            what = f"not a type this relay accepts (expected: {shown})"
        else:
            what = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {what}" if where else what)
    return "; ".join(parts)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def invalid(message: str) -> ApiError:
    """422 in the relay's own words: a request that is well-formed JSON but not a valid one."""
    return ApiError(422, "invalid_request_error", message)


def invalid_request(errors: list[dict[str, Any]], accepted: str = "") -> ApiError:
    """422 for a body that failed validation; `accepted`: the fields it may have."""
    return ApiError(422, "invalid_request_error", _describe(errors, accepted) or "Invalid request.")


def invalid_body(exc: ValidationError, accepted: str) -> ApiError:
    """422 for a body pydantic refused, described without its input: pydantic would turn
    what the caller sent back into Python objects (up to 32 MiB of them) to quote it."""
    details = exc.errors(include_url=False, include_input=False, include_context=False)
    return invalid_request(list(details), accepted)


def install(app: FastAPI) -> None:
    """Route every error, including the framework's own, through the one JSON shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return invalid_request(list(exc.errors())).response()

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        error_type = {404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return ApiError(exc.status_code, error_type, str(exc.detail), exc.headers).response()

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        path = printable(redact(request.url.path))
        log.exception("unhandled error on %s %s", request.method, path)
        return ApiError(500, "internal_error", "Internal error.").response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
