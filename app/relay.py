"""The upstream-to-frames translation: one Anthropic streaming response in, SSE frames out.

The relay reads the raw response bytes (the SDK still builds the request, authenticates,
applies timeouts and turns error statuses into exceptions) and decodes only what it
forwards. It keeps no snapshot of the message, so each delta costs the same at the end of
a long answer as at its start, and memory per stream is a few small objects.

A failure before the first delta has reached the caller is retried, within a budget;
after that, never, so no text is ever sent twice.
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anthropic
import anyio
import httpx2

from app.errors import RETRYABLE_TYPES, ApiError, event_error, from_sdk, upstream_error
from app.sse import (
    SSEDecodeError,
    decode_events,
    delta_frame,
    encode_frame,
    error_frame,
    parse_json,
)

# How long closing the upstream may take, even from a cancelled task.
CLOSE_TIMEOUT = 2.0
# Failures before the first delta worth another attempt: the upstream's retryable error
# types, and `upstream_error`, which here is a broken or truncated connection.
RETRYABLE = RETRYABLE_TYPES | {"upstream_error"}


@dataclass
class Upstream:
    """An open upstream stream whose `message_start` has been read."""

    message: dict[str, Any]
    events: AsyncIterator[tuple[bytes, bytes]]
    response: httpx2.Response
    close: Callable[[], Awaitable[None]]


@dataclass(eq=False)  # a stream is an identity, kept in a set while it runs
class Stream:
    """One relayed chat, from the first upstream attempt to its last frame."""

    client: anthropic.AsyncAnthropic
    params: dict[str, Any]
    mode: str
    idle_timeout: float
    retries: int
    backoff: float
    upstream: Upstream | None = None
    started: float = field(default_factory=time.monotonic)
    first_delta: float | None = None
    attempts: int = 0
    deltas: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    # "done", an error type, or "cancelled": the caller left.
    outcome: str = "cancelled"
    # Why the relay ended the stream itself: "cancelled" (the caller left) or
    # "server_shutdown"; None while it runs its course.
    ended_by: str | None = None

    async def open(self) -> Upstream:
        """Open the upstream, retrying what is worth retrying; raises `ApiError`."""
        while True:
            self.attempts += 1
            try:
                self.upstream = await open_upstream(self.client, self.params)
            except ApiError as exc:
                if not await self.may_retry(exc.retryable):
                    raise
            else:
                _merge_usage(self.usage, self.upstream.message.get("usage"))
                return self.upstream

    async def may_retry(self, retryable: bool) -> bool:
        """Whether to try again (after the backoff, which this waits out)."""
        if not retryable or self.attempts > self.retries or self.ended_by:
            return False
        # Exponential backoff with jitter, so retries from many streams do not align.
        await asyncio.sleep(self.backoff * 2 ** (self.attempts - 1) * random.uniform(0.75, 1.0))
        return not self.ended_by

    async def close(self) -> None:
        if self.upstream is not None:
            await close_shielded(self.upstream.close)

    async def end(self, reason: str) -> None:
        """End this stream now, from outside: the upstream connection is dropped, the
        pending read fails, and the relay's loop ends (with a frame saying why, unless
        the caller is gone)."""
        self.ended_by = reason
        if self.upstream is not None:
            await self.upstream.response.aclose()


async def close_shielded(close: Callable[[], Awaitable[None]]) -> None:
    # The caller may be a cancelled task (the client went away): shield the close, or
    # the upstream connection would stay open and keep generating tokens.
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
        await close()


async def open_upstream(client: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Upstream:
    """Start one upstream stream and read up to its `message_start`; raises `ApiError`."""
    stack = AsyncExitStack()
    try:
        response = await stack.enter_async_context(
            client.messages.with_streaming_response.create(**params, stream=True)
        )
        events = decode_events(response.http_response.aiter_bytes())
        stack.push_async_callback(events.aclose)
        async for name, data in events:
            if name == b"message_start":
                message = parse_json(data)["message"]
                return Upstream(message, events, response.http_response, stack.pop_all().aclose)
            if name == b"error":
                raise upstream_error(*event_error(parse_json(data)))
        raise ApiError(
            502, "upstream_error", "The upstream closed before the answer started.", retryable=True
        )
    except BaseException as exc:
        await close_shielded(stack.aclose)
        if isinstance(exc, (anthropic.APIError, httpx2.HTTPError)):
            raise from_sdk(exc) from None
        if isinstance(exc, (SSEDecodeError, ValueError, KeyError, TypeError)):
            raise ApiError(
                502, "upstream_error", "The upstream sent an unreadable stream.", retryable=True
            ) from None
        raise


def _merge_usage(usage: dict[str, Any], update: Any) -> None:
    if isinstance(update, dict):
        usage.update((k, v) for k, v in update.items() if v is not None)


SHUTDOWN = ("server_shutdown", "The relay is shutting down; please retry.")


def _failure(exc: Exception, stream: Stream) -> tuple[str, str]:
    if isinstance(exc, httpx2.TimeoutException):
        return "timeout_error", f"The upstream sent nothing for {stream.idle_timeout:g} s."
    if isinstance(exc, (httpx2.HTTPError, SSEDecodeError)):
        return "upstream_error", "The upstream connection failed mid-answer."
    return "upstream_error", "The upstream sent an unreadable event."


async def _drain(events: AsyncIterator[tuple[bytes, bytes]]) -> None:
    # Reading to the end of the body lets the connection go back to the pool (no new TLS
    # handshake for the next chat); the answer is complete, so a failure here is moot.
    with anyio.move_on_after(1.0):
        try:
            async for _ in events:
                pass
        except (httpx2.HTTPError, SSEDecodeError):
            pass


async def relay_frames(stream: Stream) -> AsyncIterator[bytes]:
    """Yield our frames for an opened stream; always closes the upstream."""
    upstream = stream.upstream
    assert upstream is not None
    stop: dict[str, Any] = {}
    try:
        while True:  # one pass per upstream attempt; a retry is a `continue`
            failure: tuple[str, str] | None = None
            try:
                async for name, data in upstream.events:
                    if name == b"content_block_delta":
                        delta = parse_json(data)["delta"]
                        if delta["type"] == "text_delta":
                            if not stream.deltas:
                                stream.first_delta = time.monotonic()
                                yield _start_frame(stream, upstream)
                            stream.deltas += 1
                            yield delta_frame(delta["text"])
                    elif name == b"message_delta":
                        payload = parse_json(data)
                        stop.update(payload.get("delta") or {})
                        _merge_usage(stream.usage, payload.get("usage"))
                    elif name == b"message_stop":
                        if not stream.deltas:
                            yield _start_frame(stream, upstream)
                        stream.outcome = "done"
                        yield encode_frame(b"done", _done(stop, stream.usage))
                        await _drain(upstream.events)
                        return
                    elif name == b"error":
                        failure = event_error(parse_json(data))
                        break
                    # ping, content_block_start/stop, thinking and tool deltas, and any
                    # event type the API adds later carry nothing to forward.
                else:
                    failure = (
                        "upstream_error",
                        "The upstream ended before the answer was complete.",
                    )
            except (httpx2.HTTPError, SSEDecodeError, ValueError, KeyError, TypeError) as exc:
                failure = _failure(exc, stream)

            # Nothing has reached the caller yet: another attempt cannot duplicate text.
            if not stream.deltas and await stream.may_retry(failure[0] in RETRYABLE):
                await stream.close()
                try:
                    await stream.open()
                except ApiError as exc:
                    failure = (exc.error_type, exc.message)
                else:
                    upstream = stream.upstream
                    assert upstream is not None
                    if not stream.ended_by:  # not ended while it reconnected
                        continue
            # Ended by the relay itself: nobody to tell, or a shutdown to announce.
            if stream.ended_by == "cancelled":
                return
            if stream.ended_by == "server_shutdown":
                failure = SHUTDOWN
            if not stream.deltas:
                yield _start_frame(stream, upstream)
            stream.outcome = failure[0]
            yield error_frame(*failure)
            return
    finally:
        await stream.close()


def _start_frame(stream: Stream, upstream: Upstream) -> bytes:
    message = upstream.message
    return encode_frame(
        b"start", {"id": message.get("id"), "model": message.get("model"), "mode": stream.mode}
    )


def _done(stop: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    done = {"done": True, "stop_reason": stop.get("stop_reason"), "usage": usage}
    if stop.get("stop_sequence") is not None:
        done["stop_sequence"] = stop["stop_sequence"]
    return done
