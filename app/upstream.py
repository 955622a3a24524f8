"""One upstream attempt: the SDK opens the streaming request, the relay reads its bytes.

The SDK builds the request, authenticates, applies the timeouts and turns error statuses
into exceptions; the relay then decodes the raw body with its incremental SSE decoder and
parses only what it forwards (no `MessageStream` snapshot).
"""

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import anyio
import httpx2

from app.errors import ApiError, event_error, from_sdk, upstream_error
from app.sse import SSEDecodeError, decode_events, parse_json
from app.text import printable

log = logging.getLogger("chat_relay")

# How long closing the upstream may take, even from a cancelled scope.
CLOSE_TIMEOUT = 2.0
# What a failing read of the upstream body raises, whatever the transport.
READ_ERRORS = (httpx2.HTTPError, aiohttp.ClientError, OSError, SSEDecodeError)
# SSE is small text; an identity body can be read as the raw bytes it is.
IDENTITY_ENCODING = {"accept-encoding": "identity"}


@dataclass(slots=True)
class Upstream:
    """An open upstream stream whose `message_start` has been read."""

    message_start: bytes
    events: AsyncIterator[tuple[bytes, bytes]]
    body: Any  # the transport's byte stream (or httpx2's response): what `aclose` frees

    async def close(self) -> None:
        """Close the upstream at once; shielded, so a cancelled caller closes it too (or
        the connection would stay open and keep generating tokens)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            try:
                await self.events.aclose()  # type: ignore[attr-defined]
            finally:
                await self.body.aclose()


async def open_upstream(client: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Upstream:
    """Start one upstream stream and read up to its `message_start`; raises `ApiError`.

    The caller owns the result and must `await upstream.close()`."""
    upstream = None
    try:
        sdk_stream = await client.messages.create(
            **params, stream=True, extra_headers=IDENTITY_ENCODING
        )
        # From here on the relay holds only the transport's byte stream: not the SDK's
        # wrappers, nor httpx2's request and response (with the request body), for as
        # long as the answer streams. With an identity encoding it is the raw body.
        response = sdk_stream.response
        if response.headers.get("content-encoding"):  # compressed anyway: httpx2 decodes
            body, chunks = response, response.aiter_bytes()
        else:
            body, chunks = response.stream, aiter(response.stream)
        del sdk_stream, response
        upstream = Upstream(b"", decode_events(chunks), body)
        async for name, data in upstream.events:
            if name == b"message_start":
                upstream.message_start = data
                return upstream
            if name == b"error":
                error_type, message = event_error(parse_json(data))
                log.warning(
                    "upstream error event: %s %s", printable(error_type), printable(message)
                )
                raise upstream_error(error_type, message)
        raise ApiError(
            502, "upstream_error", "The upstream closed before the answer started.", retryable=True
        )
    except BaseException as exc:
        if upstream is not None:
            await upstream.close()
        if isinstance(exc, (anthropic.APIError, httpx2.HTTPError, aiohttp.ClientError, OSError)):
            raise from_sdk(exc) from None
        if isinstance(exc, (SSEDecodeError, ValueError)):
            raise ApiError(
                502, "upstream_error", "The upstream sent an unreadable stream.", retryable=True
            ) from None
        raise


def read_failure(exc: BaseException, idle_timeout: float) -> ApiError:
    """The failure for an upstream body read that raised `exc` (one of `READ_ERRORS`)."""
    if isinstance(exc, httpx2.TimeoutException):
        return ApiError(504, "timeout_error", f"The upstream sent nothing for {idle_timeout:g} s.")
    return ApiError(
        502, "upstream_error", "The upstream connection failed mid-answer.", retryable=True
    )


async def drain(upstream: Upstream) -> None:
    """Read to the end of the body, so the connection goes back to the pool (no new TLS
    handshake for the next chat). The answer is complete: a failure here is moot."""
    with anyio.move_on_after(1.0):
        try:
            async for _ in upstream.events:
                pass
        except READ_ERRORS:
            pass
