"""The SSE response of one stream: sse-starlette's `EventSourceResponse`.

It sends the stream's frames as they come, a `: ping` comment every `PING_INTERVAL`, and
watches for the caller's disconnect and for a send that cannot complete within
`SEND_TIMEOUT` (a caller that stopped reading without closing). Every way the response
ends ends the stream, through the stream's one cancel scope: nobody pays for tokens nobody
reads.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

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
        send_timeout: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            frames,
            headers={"Cache-Control": "no-cache", **(headers or {})},
            ping=ping_interval,
            sep="\n",
            ping_message_factory=lambda: PING,
            send_timeout=send_timeout,
            client_close_handler_callable=self._caller_left,
        )
        self.left = left

    async def _caller_left(self, message: Message) -> None:
        self.left("cancelled")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # The caller stopped reading: the stream ends (its log line says
            # `send_timeout`). The response cannot be completed (the caller's buffers are
            # full), so uvicorn closes the connection.
            self.left("send_timeout")
            _ended_on_purpose.set(True)
        finally:
            self.left("cancelled")  # however the response ended (the first reason wins)


class QuietAbort(logging.Filter):
    """uvicorn logs an app that returned mid-response as an error; when the relay did that
    on purpose, the stream's own log line already says why."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_ended_on_purpose.get() and record.msg == UVICORN_INCOMPLETE)
