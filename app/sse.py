"""Server-Sent Events: decoding the upstream's bytes, encoding our frames, and the ASGI
response that streams them.

The decoder works on bytes, not text: the only bytes that split lines (CR, LF) and fields
(`:`) are ASCII, so a multi-byte UTF-8 character split across two network reads is simply
carried over in the buffer, and only the `data` payload is ever decoded (by the JSON
parser). Each byte is scanned a bounded number of times, so the cost per event does not
depend on how long the stream has been running.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from json.encoder import encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import jiter
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

# An upstream event larger than this is a broken upstream, not an answer to relay.
MAX_EVENT_BYTES = 1024 * 1024


class SSEDecodeError(Exception):
    """The upstream's byte stream is not a usable event stream."""


async def decode_events(
    chunks: AsyncIterator[bytes],
) -> AsyncIterator[tuple[bytes, bytes]]:
    """Yield `(event, data)` for each complete event in a stream of byte chunks.

    Follows the SSE parsing rules: lines end in CRLF, LF or CR; `:` starts a comment;
    several `data` lines join with LF; an empty line dispatches. Events without data
    are dropped, as the specification says. `id` and `retry` are ignored.
    """
    buffer = b""
    event = b""
    data: list[bytes] = []
    size = 0
    stream = aiter(chunks)
    while True:
        chunk = await anext(stream, None)
        if chunk is None:
            # At the end, a held-back CR can only have been a line end.
            if not buffer.endswith(b"\r"):
                return
            chunk = b"\n"
        buffer += chunk
        if b"\r" in buffer:
            # A CR at the very end may be the first half of a CRLF: keep it for later.
            held = buffer.endswith(b"\r")
            body = buffer[:-1] if held else buffer
            buffer = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if held else b"")
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > MAX_EVENT_BYTES:
            raise SSEDecodeError("upstream event exceeds the size limit")
        for line in lines:
            if not line:
                if data:
                    yield event or b"message", b"\n".join(data)
                event = b""
                data = []
                size = 0
            elif line[0] == 0x3A:  # ":" starts a comment
                continue
            else:
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    size += len(value)
                    if size > MAX_EVENT_BYTES:
                        raise SSEDecodeError("upstream event exceeds the size limit")
                    data.append(value)
                elif name == b"event":
                    event = value


def parse_json(data: bytes) -> Any:
    # jiter (already the SDK's JSON parser) takes 0.4 us for a delta event, the standard
    # library 2.7 us. It refuses unpaired surrogate escapes, which the standard library
    # accepts: then the latter decides.
    try:
        return jiter.from_json(data, cache_mode="keys")
    except ValueError:
        return json.loads(data)


def _json(payload: object) -> bytes:
    # Compact JSON as UTF-8. JSON never holds a raw newline, so it fits one `data:` line.
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode()


def encode_frame(event: bytes, payload: object) -> bytes:
    return b"event: " + event + b"\ndata: " + _json(payload) + b"\n\n"


def delta_frame(text: str) -> bytes:
    # The hot path: one C-level string escape, no dict, no generic dumps.
    try:
        quoted = encode_basestring(text).encode()
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8; the \uXXXX escape carries it intact.
        quoted = encode_basestring_ascii(text).encode()
    return b'event: delta\ndata: {"text":' + quoted + b"}\n\n"


def error_frame(error_type: str, message: str) -> bytes:
    return encode_frame(b"error", {"error": {"type": error_type, "message": message}})


PING_COMMENT = b": ping\n\n"


async def until_disconnected(receive: Receive) -> None:
    """Return when the client has gone. Only call it once the request body is read: then
    the server has nothing else to hand over but the disconnect."""
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream(Response):
    """The ASGI response of one relayed stream: pre-encoded frames out as they come, a
    `: ping` only while the stream is silent, and `on_disconnect` the moment the client
    goes away (even while nothing is being sent, e.g. during an upstream stall).

    It sends each frame straight to the server: no per-frame cancel scope or lock. Its
    only per-frame bookkeeping is a counter the ping timer reads.
    """

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        ping_interval: float,
        on_disconnect: Callable[[], Awaitable[None]],
        on_end: Callable[[], Awaitable[None]],
    ) -> None:
        # A Response by type (so the framework hands it on as is), built by hand: none of
        # Response's body handling applies.
        self.status_code = 200
        self.raw_headers = HEADERS
        self.background = None
        self.frames = frames
        self.ping_interval = ping_interval
        self.on_disconnect = on_disconnect
        self.on_end = on_end
        self.sent = 0
        self.done = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        watcher = loop.create_task(self._watch(receive))
        self.timer = loop.call_later(self.ping_interval, self._tick, send, 0)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for frame in self.frames:
                self.sent += 1
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.done = True
            self.timer.cancel()
            watcher.cancel()
            await self.on_end()

    async def _watch(self, receive: Receive) -> None:
        await until_disconnected(receive)
        if not self.done:
            await self.on_disconnect()

    def _tick(self, send: Send, seen: int) -> None:
        if self.done:
            return
        loop = asyncio.get_running_loop()
        if self.sent == seen:  # nothing went out for a whole interval
            # Kept on self: the loop holds tasks only weakly.
            self.ping = loop.create_task(send(PING_MESSAGE))
        self.timer = loop.call_later(self.ping_interval, self._tick, send, self.sent)


HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
PING_MESSAGE = {"type": "http.response.body", "body": PING_COMMENT, "more_body": True}
