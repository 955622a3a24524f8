"""The HTTP routes. Thin: admit, read, validate, open the upstream, hand over to the relay."""

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app import telemetry
from app.admission import check_token, client_key
from app.errors import ApiError
from app.models import ChatRequest, upstream_params
from app.relay import Stream, relay_frames
from app.sse import EventStream, until_disconnected

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
    watcher = asyncio.ensure_future(until_disconnected(request.receive))
    try:
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
async def readyz(request: Request) -> Response:
    state = request.app.state
    if state.draining:
        return JSONResponse({"status": "draining", "mode": state.settings.mode}, status_code=503)
    return JSONResponse({"status": "ready", "mode": state.settings.mode})


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = telemetry.metrics_body()
    return Response(body, media_type=content_type)


@router.get("/api/config")
async def config(request: Request) -> dict[str, Any]:
    """What the page needs to know before the first chat."""
    settings = request.app.state.settings
    return {"mode": settings.mode, "auth": settings.relay_token is not None}


@router.post(
    "/api/chat",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ChatRequest.model_json_schema()}},
        }
    },
    response_class=Response,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The answer, as SSE frames."}
    },
)
async def chat(request: Request) -> Response:
    try:
        return await _chat(request)
    except ApiError as exc:
        telemetry.rejected(exc.error_type)
        raise


async def _chat(request: Request) -> Response:
    state = request.app.state
    settings = state.settings
    if state.draining:
        raise ApiError(503, "server_shutdown", "The relay is shutting down.", {"Retry-After": "2"})
    check_token(request, settings)
    params = upstream_params(await read_body(request, settings.max_body_bytes), settings)

    client = client_key(request)
    state.slots.acquire(client)
    stream = Stream(
        state.client,
        params,
        settings.mode,
        settings.stream_idle_timeout,
        settings.upstream_retries,
        settings.upstream_retry_backoff,
    )
    try:
        opened = await unless_disconnected(request, stream.open())
    except BaseException:
        state.slots.release(client)
        raise
    if opened is None:
        state.slots.release(client)
        return Response(status_code=CLIENT_CLOSED)

    state.streams.add(stream)
    telemetry.stream_started()
    logged = params["messages"] if settings.log_content else None

    async def on_end() -> None:
        # However the response ended (done, error, the caller gone, even before its
        # first frame): the upstream is closed, the slot freed, the stream accounted for.
        await stream.close()
        state.slots.release(client)
        state.streams.discard(stream)
        telemetry.stream_ended(stream, client, logged)
        if state.draining and not state.streams:
            state.drained.set()

    async def on_disconnect() -> None:
        await stream.end("cancelled")

    return EventStream(
        relay_frames(stream),
        ping_interval=settings.ping_interval,
        on_disconnect=on_disconnect,
        on_end=on_end,
    )
