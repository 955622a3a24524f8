"""The HTTP routes. Thin: read, validate, open the upstream, hand over to the relay."""

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.errors import ApiError
from app.models import ChatRequest, upstream_params
from app.relay import open_upstream, relay_frames

router = APIRouter()
T = TypeVar("T")

# What nginx logs for a client that went away before the answer: nobody reads it.
CLIENT_CLOSED = 499


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit`."""
    too_large = ApiError(413, "request_too_large", f"The request body exceeds {limit} bytes.")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Run `work`, cancelling it if the client disconnects first (then return None)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(request.receive())
    try:
        # The body is read, so the next ASGI message can only be the disconnect.
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> dict[str, str]:
    return {"status": "ready", "mode": request.app.state.settings.mode}


@router.get("/api/config")
async def config(request: Request) -> dict[str, str]:
    """What the page needs to know before the first chat."""
    return {"mode": request.app.state.settings.mode}


@router.post(
    "/api/chat",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ChatRequest.model_json_schema()}},
        }
    },
    response_class=EventSourceResponse,
)
async def chat(request: Request) -> Response:
    settings = request.app.state.settings
    params: dict[str, Any] = upstream_params(
        await read_body(request, settings.max_body_bytes), settings
    )
    upstream = await unless_disconnected(request, open_upstream(request.app.state.client, params))
    if upstream is None:
        return Response(status_code=CLIENT_CLOSED)
    return EventSourceResponse(
        relay_frames(upstream, settings.mode, settings.stream_idle_timeout),
        headers={"Cache-Control": "no-cache"},
        ping=settings.ping_interval,
        ping_message_factory=lambda: ServerSentEvent(comment="ping", sep="\n"),
        sep="\n",
    )
