"""Reading a request body within bounds: its size, its time, and how many are read at once.

A body that arrives slowly holds a connection, a task and up to MAX_BODY_BYTES of memory;
unbounded, a few hundred slow uploads hold hundreds of MB. So a body must arrive within
REQUEST_TIMEOUT, at most MAX_READING_REQUESTS bodies are read at once (then 503 at once),
and a caller that leaves mid-upload is one log line, not a traceback. (Headers that never
finish are the front proxy's to time out: an ASGI app only sees a request once they have
arrived, and uvicorn has no deadline for them. `deploy/nginx.conf` sets one.)
"""

import asyncio

from fastapi import Request
from starlette.requests import ClientDisconnect

from app.errors import RETRY_AFTER_SECONDS, ApiError
from app.runtime import Runtime

# The body was not read to its end: the connection cannot carry another request.
CLOSE = {"Connection": "close"}


async def read_body(request: Request, runtime: Runtime) -> bytes:
    settings = runtime.settings
    limit = settings.max_body_bytes
    too_large = ApiError(
        413, "request_too_large", f"The request body exceeds {limit} bytes.", CLOSE
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    if runtime.reading >= settings.max_reading_requests:
        raise ApiError(
            503,
            "overloaded_error",
            "This relay is reading as many requests as it can; try again shortly.",
            {"Retry-After": RETRY_AFTER_SECONDS, **CLOSE},
        )
    runtime.reading += 1
    body = bytearray()
    try:
        async with asyncio.timeout(settings.request_timeout):  # 4 us; anyio.fail_after 13
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"The request body did not arrive within {settings.request_timeout:g} s.",
            CLOSE,
        ) from None
    except ClientDisconnect:
        raise ApiError(499, "client_closed", "The caller left mid-request.") from None
    finally:
        runtime.reading -= 1
    return bytes(body)
