"""Reading a request body within bounds: its size, its time, how many are read at once, and
how many bytes of bodies the process holds.

A body that arrives slowly holds a connection, a task and what it has sent so far. So a body
must arrive within REQUEST_TIMEOUT plus a second per MIN_UPLOAD_RATE bytes (a phone's photo
over a slow uplink is fine, a trickle is not), at most MAX_READING_REQUESTS bodies are read at
once, and every byte read counts against MAX_HELD_BODY_BYTES until the conversation is dropped
(at its first delta: app/stream.py): past either, 503 at once. A caller that leaves
mid-upload is one log line, not a traceback. (Headers that never finish are the front proxy's
to time out: an ASGI app only sees a request once they have arrived, and uvicorn has no
deadline for them. `deploy/nginx.conf` sets one.)
"""

import asyncio

from fastapi import Request
from starlette.requests import ClientDisconnect

from app.errors import RETRY_AFTER_SECONDS, ApiError
from app.runtime import Runtime

# The body was not read to its end: the connection cannot carry another request.
CLOSE = {"Connection": "close"}
BUSY = {"Retry-After": RETRY_AFTER_SECONDS, **CLOSE}
# What a parsed conversation holds beyond its body's bytes, per JSON value, until its first
# delta: 52-69 bytes by tracemalloc for the densest shapes (1,000 turns of four one-letter
# blocks: 157 KB of JSON held 1 MB). Counted with the bytes against MAX_HELD_BODY_BYTES,
# so that memory stays within 2.5 times it whatever a body's shape.
BYTES_PER_VALUE = 64


def full() -> ApiError:
    return ApiError(
        503,
        "overloaded_error",
        "This relay holds as many request bodies as it can; try again shortly.",
        BUSY,
    )


def hold_values(runtime: Runtime, values: int) -> int:
    """Count a parsed body's `values` against MAX_HELD_BODY_BYTES (503 past it), as
    bytes given back with the body's (`runtime.let_go`)."""
    extra = values * BYTES_PER_VALUE
    if runtime.held_bytes + extra > runtime.settings.max_held_body_bytes:
        raise full()
    runtime.held_bytes += extra
    return extra


async def read_body(request: Request, runtime: Runtime) -> bytes:
    """The whole body, which holds `len(body)` of MAX_HELD_BODY_BYTES: the caller gives it
    back with `runtime.let_go` (a started stream does, once its conversation is dropped)."""
    settings = runtime.settings
    limit = settings.max_body_bytes
    too_large = ApiError(
        413, "request_too_large", f"The request body exceeds {limit} bytes.", CLOSE
    )
    length = request.headers.get("content-length", "")
    declared = int(length) if length.isdigit() and len(length) < 16 else 0
    if declared > limit:
        raise too_large
    if runtime.held_bytes + declared > settings.max_held_body_bytes:
        raise full()  # before a byte is read
    if runtime.reading >= settings.max_reading_requests:
        raise ApiError(
            503,
            "overloaded_error",
            "This relay is reading as many requests as it can; try again shortly.",
            BUSY,
        )
    runtime.reading += 1
    chunks: list[bytes] = []
    size = 0
    body = None
    # A deadline that grows with what has arrived: a minimum average rate.
    start = asyncio.get_running_loop().time() + settings.request_timeout
    try:
        async with asyncio.timeout(settings.request_timeout) as deadline:  # 4 us; anyio 13
            async for chunk in request.stream():
                if size + len(chunk) > limit:
                    raise too_large
                if runtime.held_bytes + len(chunk) > settings.max_held_body_bytes:
                    raise full()
                runtime.held_bytes += len(chunk)
                size += len(chunk)
                chunks.append(chunk)
                deadline.reschedule(start + size / settings.min_upload_rate)
        body = b"".join(chunks)
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"The request body did not arrive within {settings.request_timeout:g} s plus a "
            f"second per {settings.min_upload_rate} bytes.",
            CLOSE,
        ) from None
    except ClientDisconnect:
        raise ApiError(499, "client_closed", "The caller left mid-request.") from None
    finally:
        runtime.reading -= 1
        if body is None:  # refused, timed out or left: nothing of it is held
            runtime.let_go(size)
    return body
