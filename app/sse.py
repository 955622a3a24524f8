"""Server-Sent Events: decoding the upstream's bytes, and encoding our frames (sse-starlette
sends them: `app/response.py`).

The decoder works on bytes, not text: the only bytes that split lines (CR, LF) and fields
(`:`) are ASCII, so a multi-byte UTF-8 character split across two network reads is simply
carried over in the buffer, and only the `data` payload is ever decoded (by the JSON
parser). Each byte is scanned a bounded number of times, so the cost per event does not
depend on how long the stream has been running.
"""

import json
from collections.abc import AsyncIterator
from json.encoder import encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import jiter
from starlette.types import Receive

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


def compact_json(payload: object) -> bytes:
    # Compact JSON as UTF-8. JSON never holds a raw newline, so it fits one `data:` line.
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode()


def encode_frame(event: bytes, payload: object) -> bytes:
    return b"event: " + event + b"\ndata: " + compact_json(payload) + b"\n\n"


def quote(text: str) -> bytes:
    """`text` as a JSON string, for the hot path of either dialect: one C-level string
    escape, no dict, no generic dumps."""
    try:
        return encode_basestring(text).encode()
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8; the \uXXXX escape carries it intact.
        return encode_basestring_ascii(text).encode()


def error_frame(error_type: str, message: str) -> bytes:
    return encode_frame(b"error", {"error": {"type": error_type, "message": message}})


async def until_disconnected(receive: Receive) -> None:
    """Return when the client has gone. Only call it once the request body is read: then
    the server has nothing else to hand over but the disconnect."""
    while (await receive())["type"] != "http.disconnect":
        pass
