"""The HTTP routes. Thin: admit, read, validate, open the upstream, hand over to the relay."""

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app import telemetry
from app.admission import check_origin, client_key
from app.body import hold_values, read_body
from app.errors import ApiError, shutting_down
from app.identity import Caller
from app.models import ChatRequest, upstream_params
from app.response import ChatResponse
from app.runtime import STREAM_ID, Runtime
from app.sse import until_disconnected
from app.uimessages import CHAT_ID
from app.uistream import UI

router = APIRouter()

# What nginx logs for a client that went away before the answer: nobody reads it.
CLIENT_CLOSED = 499


async def caller_left_first(request: Request, ready: "asyncio.Future[object]") -> bool:
    """Wait for `ready`; True if the caller disconnected before it resolved."""
    watcher = asyncio.ensure_future(until_disconnected(request.receive))
    try:
        await asyncio.wait({ready, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    return not ready.done()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    mode = runtime.settings.mode
    ready: dict[str, Any] = {"status": "ready", "mode": mode}
    if runtime.hub is not None:  # which MCP servers are connected: their tools are offered
        ready["mcp_servers"] = runtime.hub.status()
    if runtime.draining:
        return JSONResponse({**ready, "status": "draining"}, status_code=503)
    return JSONResponse(ready)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    if request.app.state.runtime.settings.metrics_port:
        raise ApiError(404, "not_found", "Not Found")  # served on METRICS_PORT instead
    body, content_type = await anyio.to_thread.run_sync(telemetry.metrics_body)
    return Response(body, media_type=content_type)


@router.get("/api/config")
async def config(request: Request) -> dict[str, Any]:
    """What the page needs to know before the first chat."""
    settings = request.app.state.runtime.settings
    return {
        "mode": settings.mode,
        "auth": request.app.state.identities.bearer,
        "resume": settings.resume_window > 0,
        "models": settings.allowed_models or [settings.default_model],
        "default_model": settings.default_model,
    }


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
        telemetry.rejected(exc.error_type, exc.status, client_key(request))
        raise


async def _chat(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    if runtime.draining:
        raise shutting_down()
    check_origin(request, settings)
    caller: Caller = await request.app.state.identities.identify(request)
    body = await read_body(request, runtime)
    held = len(body)
    try:
        ask = upstream_params(body, settings)
        held += hold_values(runtime, ask.values)  # what its parsed form holds too
    except BaseException:
        runtime.let_go(held)
        raise
    del body  # the stream holds the conversation (and `held`) until its first delta
    if ask.chat_id is not None:  # the caller's chat: another's of the same id is another
        ask.chat_id = caller.scope(ask.chat_id, CHAT_ID)
    stream = runtime.start(
        ask,
        caller.key,
        held,
        log_content=settings.log_content,
        scoped=partial(caller.scope, form=STREAM_ID),
    )
    try:
        # The status is decided once the upstream's `message_start` arrives, so every
        # failure before it is plain HTTP; a caller that leaves meanwhile ends the stream.
        if await caller_left_first(request, stream.ready):
            return Response(status_code=CLIENT_CLOSED)
    finally:
        if not stream.ready.done():  # the caller left, or this handler was cancelled
            stream.end("cancelled")
    failure = stream.ready.result()
    if failure is not None:
        raise failure
    reader, frames = stream.read()
    return ChatResponse(
        frames,
        partial(stream.left, reader),
        ping_interval=settings.ping_interval,
        watchdog=runtime.watchdog,
        headers=stream.dialect.headers,
    )


async def check_caller(request: Request) -> tuple[Runtime, Caller]:
    """What `POST /api/chat` asks of a caller (the origin, an identity when callers have
    them); the runtime, and the caller."""
    runtime: Runtime = request.app.state.runtime
    check_origin(request, runtime.settings)
    return runtime, await request.app.state.identities.identify(request)


@router.get("/api/chat/{stream_id}", response_class=Response)
async def resume(request: Request, stream_id: str) -> Response:
    """The frames after `Last-Event-ID` (from the first without it), then the rest live;
    204 when the answer is over and has nothing after it (an `EventSource` then stops)."""
    last = request.headers.get("last-event-id", "0") or "0"
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not (last.isascii() and last.isdigit() and len(last) <= 9):
        raise ApiError(400, "invalid_request_error", "Last-Event-ID: a frame id, or none.")
    runtime, caller = await check_caller(request)
    # Another caller's stream id is one that does not exist: the same 404, the same path.
    found = caller.scope(stream_id, STREAM_ID)
    return replay(runtime, await runtime.read(found, int(last), caller.key))


@router.delete("/api/chat/{stream_id}", status_code=204, response_class=Response)
async def stop(request: Request, stream_id: str) -> Response:
    """Stop the stream now: its upstream is closed; a reader hears `cancelled`."""
    runtime, caller = await check_caller(request)
    await runtime.stop(caller.scope(stream_id, STREAM_ID))
    return Response(status_code=204)


@router.get("/api/chat/{chat_id}/stream", response_class=Response)
async def resume_chat(request: Request, chat_id: str) -> Response:
    """useChat's resume (`resume: true`): the chat's running answer from its first chunk,
    then live to `[DONE]`; 204 when none runs (unknown, finished or expired)."""
    runtime, caller = await check_caller(request)
    stream_id = await runtime.chat_stream(caller.scope(chat_id, CHAT_ID))
    reading = None
    if stream_id is not None:
        reading = await runtime.read(stream_id, 0, caller.key, UI, running=True)
    return replay(runtime, reading, UI.headers)


@router.delete("/api/chat/{chat_id}/stream", status_code=204, response_class=Response)
async def stop_chat(request: Request, chat_id: str) -> Response:
    """Stop the chat's running answer now (204 whether one ran or not)."""
    runtime, caller = await check_caller(request)
    stream_id = await runtime.chat_stream(caller.scope(chat_id, CHAT_ID))
    if stream_id is not None:
        await runtime.stop(stream_id, missing_ok=True)
    return Response(status_code=204)


def replay(
    runtime: Runtime,
    reading: tuple[AsyncIterator[bytes], Callable[[str], None]] | None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A resumed stream's response; 204 when there is nothing to read (an `EventSource`,
    and the AI SDK, then stop asking)."""
    if reading is None:
        return Response(status_code=204)
    telemetry.RESUMED.inc()
    settings = runtime.settings
    return ChatResponse(
        *reading,
        ping_interval=settings.ping_interval,
        watchdog=runtime.watchdog,
        headers=headers,
    )
