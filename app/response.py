"""The SSE response of one stream: sse-starlette's `EventSourceResponse`.

It sends the stream's frames as they come, a `: ping` comment every `PING_INTERVAL`, and
watches for the caller's disconnect. A send that cannot complete within `SEND_TIMEOUT` (a
caller that stopped reading without closing) is the watchdog's (app/watchdog.py): each
send notes when it started, and a late one is cancelled through this response's one cancel
scope. sse-starlette's own `send_timeout` is left off: it puts a cancel scope with a timer
around every send (measured: about a tenth of the CPU per delta). Every way the response
ends ends the stream: nobody pays for tokens nobody reads.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Receive, Scope, Send

from app.watchdog import Watchdog

UVICORN_INCOMPLETE = "ASGI callable returned without completing response."
PING = ServerSentEvent(comment="ping", sep="\n")

# Set when the relay ended a response mid-body on purpose (see `QuietAbort`).
_ended_on_purpose: ContextVar[bool] = ContextVar("ended_on_purpose", default=False)


class ChatResponse(EventSourceResponse):
    """`frames` as SSE; `left(reason)` is told when the caller goes (`cancelled`) or stops
    reading (`send_timeout`), and ends the stream or, if resumable, detaches it."""

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        left: Callable[[str], None],
        *,
        ping_interval: float,
        watchdog: Watchdog,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            frames,
            headers={"Cache-Control": "no-cache", **(headers or {})},
            ping=ping_interval,
            sep="\n",
            ping_message_factory=lambda: PING,
            client_close_handler_callable=self._caller_left,
        )
        self.left = left
        self.watchdog = watchdog
        self.waiting_since: float | None = None  # when the send under way started
        self._scope = anyio.CancelScope()

    async def _caller_left(self, message: Message) -> None:
        self.left("cancelled")

    def too_late(self) -> None:
        """A send waited SEND_TIMEOUT: the caller stopped reading. The stream ends (its log
        line says `send_timeout`); the response cannot be completed (the caller's buffers
        are full), so uvicorn closes the connection."""
        self.left("send_timeout")
        self._scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        clock = asyncio.get_running_loop().time

        async def timed(message: Message) -> None:
            self.waiting_since = clock()
            await send(message)
            self.waiting_since = None

        self.watchdog.responses.add(self)
        try:
            with self._scope:
                await super().__call__(scope, receive, timed)
            if self._scope.cancelled_caught:
                _ended_on_purpose.set(True)
        finally:
            self.watchdog.responses.discard(self)
            self.left("cancelled")  # however the response ended (the first reason wins)


class QuietAbort(logging.Filter):
    """uvicorn logs an app that returned mid-response as an error; when the relay did that
    on purpose, the stream's own log line already says why."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_ended_on_purpose.get() and record.msg == UVICORN_INCOMPLETE)
