"""Every frame of a resumable stream, numbered, for whoever reads it now or comes back.

It stands in for the outbox (same producer side) when a caller asked for a resumable
answer: each frame gets an SSE `id:` (1, 2, 3, ...), frames are kept (at most about one per
output token: the answer's `max_tokens` bounds them), and a reader follows from any id. One
reader at a time: a new one takes over, and the previous one's stream ends, so a reloaded
tab and a stale one never both write. There is no backpressure: a detached stream keeps
reading its upstream, which is what resuming is for.
"""

import asyncio
from array import array
from collections.abc import AsyncIterator, Callable


class Journal:
    __slots__ = ("_changed", "_data", "_ends", "closed", "listener", "reader")

    def __init__(self) -> None:
        # Frames back to back in one buffer, with where each ends: about 5 bytes of
        # overhead a frame, where a list of bytes objects costs about 40.
        self._data = bytearray()
        self._ends = array("Q")
        self.closed = False
        self.reader = 0  # which reader is current: each attach() takes over
        self._changed: asyncio.Future[None] | None = None
        # Told of each new frame, and the close (the Redis writer, app/mirror.py).
        self.listener: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def nbytes(self) -> int:
        return len(self._data)

    def frame(self, n: int) -> bytes:
        """Frame `n` (ids count from 1)."""
        return self._copy(self._ends[n - 2] if n > 1 else 0, self._ends[n - 1])

    def since(self, after: int) -> bytes:
        """Every frame after id `after`, in one piece."""
        return self._copy(self._ends[after - 1] if after else 0, len(self._data))

    def _copy(self, start: int, end: int) -> bytes:
        # One copy (slicing the bytearray itself would copy twice); the view is released
        # at once, so the buffer can grow again.
        with memoryview(self._data) as view:
            return view[start:end].tobytes()

    blocked = False  # a journal keeps every frame: its producer never waits

    async def put(self, chunk: bytes) -> None:
        self.put_nowait(chunk)

    def put_nowait(self, chunk: bytes) -> None:
        # A chunk may hold two frames (`start` with the first delta); each gets its id. A
        # frame's JSON never holds a raw newline, so a blank line always ends a frame.
        data, ends = self._data, self._ends
        for frame in chunk.split(b"\n\n")[:-1]:
            data += b"id: %d\n%s\n\n" % (len(ends) + 1, frame)
            ends.append(len(data))
        self._wake()
        if self.listener is not None:
            self.listener()

    def close(self) -> None:
        self.closed = True
        # Kept for the resume window from here on: no room to grow (a bytearray holds
        # about a fifth more than it uses).
        self._data = bytes(self._data)  # type: ignore[assignment]
        self._wake()
        if self.listener is not None:
            self.listener()
            self.listener = None  # nothing follows

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
            if sent < len(self._ends):
                chunk = self.since(sent)
                sent = len(self._ends)
                yield chunk
            elif self.closed:
                return
            else:
                await self.wait()

    async def wait(self) -> None:
        """Until the next frame, close or takeover."""
        # Only the current reader waits (a takeover wakes the previous one first), so the
        # future is awaited as it is: a shield would cost a second future and two callbacks
        # per frame. A reader cancelled while waiting leaves it cancelled; the next wait
        # makes a new one.
        changed = self._changed
        if changed is None or changed.done():
            changed = self._changed = asyncio.get_running_loop().create_future()
        await changed

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)
