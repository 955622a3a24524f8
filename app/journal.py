"""Every frame of a resumable stream, numbered, for whoever reads it now or comes back.

It stands in for the outbox (same producer side) when a caller asked for a resumable
answer: each frame gets an SSE `id:` (1, 2, 3, ...), frames are kept (at most about one per
output token: the answer's `max_tokens` bounds them), and a reader follows from any id. One
reader at a time: a new one takes over, and the previous one's stream ends, so a reloaded
tab and a stale one never both write. There is no backpressure: a detached stream keeps
reading its upstream, which is what resuming is for.
"""

import asyncio
from collections.abc import AsyncIterator


class Journal:
    __slots__ = ("_changed", "closed", "frames", "reader")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed = False
        self.reader = 0  # which reader is current: each attach() takes over
        self._changed: asyncio.Future[None] | None = None

    async def put(self, chunk: bytes) -> None:
        self.put_nowait(chunk)

    def put_nowait(self, chunk: bytes) -> None:
        # A chunk may hold two frames (`start` with the first delta); each gets its id. A
        # frame's JSON never holds a raw newline, so a blank line always ends a frame.
        for frame in chunk.split(b"\n\n")[:-1]:
            self.frames.append(b"id: %d\n%s\n\n" % (len(self.frames) + 1, frame))
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def attach(self) -> int:
        """Make a new reader the current one; the previous one's `follow` ends."""
        self.reader += 1
        self._wake()
        return self.reader

    async def follow(self, reader: int, after: int = 0) -> AsyncIterator[bytes]:
        """The frames after id `after`, then the rest as they come, while `reader` is the
        current reader, until the stream is closed and everything was sent."""
        sent = after
        while self.reader == reader:
            if sent < len(self.frames):
                chunk = b"".join(self.frames[sent:])
                sent = len(self.frames)
                yield chunk
            elif self.closed:
                return
            else:
                await self.wait()

    async def wait(self) -> None:
        """Until the next frame, close or takeover."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._changed)

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set_result(None)
            self._changed = None
