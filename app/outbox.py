"""Frames on their way from a stream's producer task to the response that sends them.

A bounded hand-over, not a queue of objects: the producer appends encoded frames and
wakes the reader; the reader takes everything pending in one piece (frames that queued up
while it was sending go out in one write, so a busy relay batches without ever delaying a
frame). Past `HIGH_WATER` unsent bytes the producer waits, so a caller that reads slowly
stops the upstream reads and TCP flow control pushes back: memory per stream stays bounded.
"""

import asyncio
from collections.abc import AsyncIterator

# Unsent bytes past which the producer waits for the reader.
HIGH_WATER = 64 * 1024


class Outbox:
    __slots__ = ("_closed", "_pending", "_reader", "_size", "_writer")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._size = 0
        self._closed = False
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None

    async def put(self, frame: bytes) -> None:
        """Queue a frame; waits while the reader is `HIGH_WATER` bytes behind."""
        self.put_nowait(frame)
        if self._size > HIGH_WATER:
            self._writer = asyncio.get_running_loop().create_future()
            try:
                await self._writer
            finally:
                self._writer = None

    def put_nowait(self, frame: bytes) -> None:
        """Queue a frame whatever the backlog (for the one last frame of a stream)."""
        self._pending.append(frame)
        self._size += len(frame)
        _wake(self._reader)

    @property
    def blocked(self) -> bool:
        """Whether the producer waits for the reader (the stream is not idle, just read
        slowly)."""
        return self._writer is not None

    def close(self) -> None:
        """No more frames: the reader ends once it has sent what is pending."""
        self._closed = True
        _wake(self._reader)

    async def frames(self) -> AsyncIterator[bytes]:
        """The reader's side: everything pending in one piece, until closed and sent."""
        while True:
            if self._pending:
                pending = self._pending
                self._pending, self._size = [], 0
                _wake(self._writer)
                yield pending[0] if len(pending) == 1 else b"".join(pending)
            elif self._closed:
                return
            else:
                self._reader = asyncio.get_running_loop().create_future()
                try:
                    await self._reader
                finally:
                    self._reader = None


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
