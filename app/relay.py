"""The upstream-to-frames translation: one Anthropic streaming response in, SSE frames out.

The relay reads the raw response bytes (the SDK still builds the request, authenticates,
applies timeouts and turns error statuses into exceptions) and decodes only what it
forwards. It keeps no snapshot of the message, so each delta costs the same at the end of
a long answer as at its start, and memory per stream is a few small objects.
"""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anthropic
import anyio
import httpx2

from app.errors import ApiError, event_error, from_sdk, upstream_error
from app.sse import (
    SSEDecodeError,
    decode_events,
    delta_frame,
    encode_frame,
    error_frame,
)

# How long closing the upstream may take, even from a cancelled task.
CLOSE_TIMEOUT = 2.0


@dataclass
class Upstream:
    """An open upstream stream whose `message_start` has been read."""

    message: dict[str, Any]
    events: AsyncIterator[tuple[bytes, bytes]]
    close: Callable[[], Awaitable[None]]


async def close_shielded(close: Callable[[], Awaitable[None]]) -> None:
    # The caller may be a cancelled task (the client went away): shield the close, or
    # the upstream connection would stay open and keep generating tokens.
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
        await close()


async def open_upstream(client: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Upstream:
    """Start the upstream stream and read up to its `message_start`.

    Anything that goes wrong up to here raises `ApiError`, so the caller still gets a
    plain HTTP status instead of a stream.
    """
    stack = AsyncExitStack()
    try:
        response = await stack.enter_async_context(
            client.messages.with_streaming_response.create(**params, stream=True)
        )
        events = decode_events(response.http_response.aiter_bytes())
        stack.push_async_callback(events.aclose)
        async for name, data in events:
            if name == b"message_start":
                message = json.loads(data)["message"]
                return Upstream(message, events, stack.pop_all().aclose)
            if name == b"error":
                raise upstream_error(*event_error(json.loads(data)))
        raise ApiError(502, "upstream_error", "The upstream closed before the answer started.")
    except BaseException as exc:
        await close_shielded(stack.aclose)
        if isinstance(exc, (anthropic.APIError, httpx2.HTTPError)):
            raise from_sdk(exc) from None
        if isinstance(exc, (SSEDecodeError, ValueError, KeyError, TypeError)):
            raise ApiError(
                502, "upstream_error", "The upstream sent an unreadable stream."
            ) from None
        raise


def _merge_usage(usage: dict[str, Any], update: Any) -> None:
    if isinstance(update, dict):
        usage.update((k, v) for k, v in update.items() if v is not None)


async def _drain(events: AsyncIterator[tuple[bytes, bytes]]) -> None:
    # Reading to the end of the body lets the connection go back to the pool (no new TLS
    # handshake for the next chat); the answer is complete, so a failure here is moot.
    with anyio.move_on_after(1.0):
        try:
            async for _ in events:
                pass
        except (httpx2.HTTPError, SSEDecodeError):
            pass


async def relay_frames(upstream: Upstream, mode: str, idle_timeout: float) -> AsyncIterator[bytes]:
    """Yield our frames for one upstream stream; always closes the upstream."""
    message = upstream.message
    usage: dict[str, Any] = {}
    _merge_usage(usage, message.get("usage"))
    stop: dict[str, Any] = {}
    try:
        yield encode_frame(
            b"start",
            {"id": message.get("id"), "model": message.get("model"), "mode": mode},
        )
        async for name, data in upstream.events:
            if name == b"content_block_delta":
                delta = json.loads(data)["delta"]
                if delta["type"] == "text_delta":
                    yield delta_frame(delta["text"])
            elif name == b"message_delta":
                payload = json.loads(data)
                stop.update(payload.get("delta") or {})
                _merge_usage(usage, payload.get("usage"))
            elif name == b"message_stop":
                done = {
                    "done": True,
                    "stop_reason": stop.get("stop_reason"),
                    "usage": usage,
                }
                if stop.get("stop_sequence") is not None:
                    done["stop_sequence"] = stop["stop_sequence"]
                yield encode_frame(b"done", done)
                await _drain(upstream.events)
                return
            elif name == b"error":
                yield error_frame(*event_error(json.loads(data)))
                return
            # ping, content_block_start/stop, thinking and tool deltas, and any event
            # type the API adds later carry nothing to forward.
        yield error_frame(
            "upstream_error",
            "The upstream stream ended before the answer was complete.",
        )
    except httpx2.TimeoutException:
        yield error_frame("timeout_error", f"The upstream sent nothing for {idle_timeout:g} s.")
    except (httpx2.HTTPError, SSEDecodeError):
        yield error_frame("upstream_error", "The upstream connection failed mid-answer.")
    except (ValueError, KeyError, TypeError):
        yield error_frame("upstream_error", "The upstream sent an unreadable event.")
    finally:
        await close_shielded(upstream.close)
