"""A resumable stream's frames in Redis: written by the replica that produces them, read
by whichever replica a caller resumes on.

One writer per replica writes whatever frames have gathered, across all its streams, in one
pipeline (`XADD` per frame, entry id `0-N` for SSE id N). The journal keeps every frame, so
a write that fails (Redis away) is retried: nothing is lost, and a stream never waits for
Redis. After a stream's last frame an `end` entry tells readers it is over, and the key
expires RESUME_WINDOW later.
"""

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

import anyio
from redis.exceptions import RedisError, ResponseError

from app.cluster import Cluster, frames_key, owner_key
from app.journal import Journal
from app.sse import error_frame

if TYPE_CHECKING:
    from app.stream import Stream

log = logging.getLogger("chat_relay")

# How long a reader's XREAD waits for new frames before checking that the stream's
# replica is still alive.
BLOCK_MS = 2000
# At shutdown, how long what is pending may take to be written.
FLUSH_SECONDS = 2.0
ORPHANED = "The replica producing this answer went away; please ask again."


class Mirror:
    """The one writer of this replica's resumable streams' frames to Redis.

    A stream's journal tells it when frames come (`changed`); whatever has gathered, across
    every stream, goes out in one pipeline, and what comes while that is in flight goes in
    the next. A busy replica makes a few round trips a second however many streams run,
    not one per delta.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.streams: dict[str, _Mirrored] = {}
        self.dirty: dict[str, None] = {}  # ordered set: streams with frames to write
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def add(self, stream: "Stream") -> None:
        stream_id, journal = stream.stream_id, stream.outbox
        assert stream_id is not None and isinstance(journal, Journal)
        self.streams[stream_id] = _Mirrored(journal, stream.resume_window)
        journal.listener = partial(self.changed, stream_id)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def changed(self, stream_id: str) -> None:
        self.dirty[stream_id] = None
        self._wake.set()

    async def close(self) -> None:
        """Write what is pending (for up to FLUSH_SECONDS), then stop."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            await asyncio.wait({self._task}, timeout=FLUSH_SECONDS)
            self._task.cancel()

    async def _run(self) -> None:
        failures = 0
        while not (self._closing and not self.dirty):
            await self._wake.wait()
            self._wake.clear()
            batch, self.dirty = self.dirty, {}
            try:
                await self._write(batch)
            except RedisError as exc:
                failures += 1
                if failures == 1:
                    log.warning("redis: frames not written (%s); retrying", type(exc).__name__)
                self._retry(batch)
                await anyio.sleep(min(0.5 * failures, 5.0))  # until Redis is back
                self._wake.set()
                continue
            except Exception:  # a bug: log it, drop the batch, keep writing the others
                log.exception("redis: frames writer failed")
            failures = 0

    def _retry(self, batch: dict[str, None]) -> None:
        # Write again from each stream's first frame (Redis may have lost them); frames it
        # holds already are refused one by one, harmlessly. A finished stream whose window
        # has passed is let go: nobody can read it any more.
        now = time.monotonic()
        for stream_id in batch:
            mirrored = self.streams.get(stream_id)
            if mirrored is None:
                continue
            if mirrored.journal.closed and now > mirrored.closed_at + mirrored.window:
                del self.streams[stream_id]
            else:
                mirrored.written = 0
                self.dirty[stream_id] = None

    async def _write(self, batch: dict[str, None]) -> None:
        done, lease_ms = [], self.cluster.lease_ms
        async with self.cluster.redis.pipeline(transaction=False) as pipe:
            for stream_id in batch:
                mirrored = self.streams.get(stream_id)
                if mirrored is None:
                    continue
                journal, key = mirrored.journal, frames_key(stream_id)
                window_ms = max(int(mirrored.window * 1000), 1)
                closed, end = journal.closed, len(journal)
                for n in range(mirrored.written + 1, end + 1):
                    pipe.xadd(key, {"f": journal.frame(n)}, id=f"0-{n}")
                if closed:  # the end mark, and the window starts
                    pipe.xadd(key, {"end": 1}, id=f"0-{end + 1}")
                    pipe.pexpire(key, window_ms)
                    pipe.pexpire(owner_key(stream_id), window_ms)
                    mirrored.closed_at = mirrored.closed_at or time.monotonic()
                    done.append(stream_id)
                else:
                    pipe.pexpire(key, max(window_ms, lease_ms))
                mirrored.written = end
            for result in await pipe.execute(raise_on_error=False):
                if isinstance(result, Exception) and not _already_written(result):
                    raise result
        for stream_id in done:
            del self.streams[stream_id]


class _Mirrored:
    __slots__ = ("closed_at", "journal", "window", "written")

    def __init__(self, journal: Journal, window: float) -> None:
        self.journal, self.window = journal, window
        self.written = 0  # frames in Redis
        self.closed_at = 0.0


def _already_written(error: Exception) -> bool:
    return isinstance(error, ResponseError) and "equal or smaller" in str(error)


class RemoteReader:
    """A resume of another replica's stream: its frames after id `after`, then the rest as
    they are written, until the end, a newer reader anywhere, or its replica dying."""

    __slots__ = ("after", "closed", "cluster", "done", "scope", "stream_id", "token")

    def __init__(self, cluster: Cluster, stream_id: str, after: int) -> None:
        self.cluster, self.stream_id, self.after = cluster, stream_id, after
        self.token = secrets.token_hex(8)
        self.closed = self.done = False
        self.scope: anyio.CancelScope | None = None
        cluster.reading(stream_id, self.token, self.close)
        cluster.announce("attach", stream_id, self.token)

    def close(self) -> None:
        """Taken over: the reading ends at once."""
        self.closed = True
        if self.scope is not None:
            self.scope.cancel()

    def left(self, reason: str) -> None:
        """The caller went away: the producing replica starts its resume window."""
        self.close()
        if not self.done:
            self.done = True
            self.cluster.done_reading(self.stream_id, self.token)

    async def frames(self) -> AsyncIterator[bytes]:
        key, last, redis = frames_key(self.stream_id), self.after, self.cluster.redis
        try:
            while not self.closed:
                with anyio.CancelScope() as self.scope:
                    reply = await redis.xread({key: f"0-{last}"}, count=1000, block=BLOCK_MS)
                if self.closed:
                    return
                if not reply:
                    if await self.cluster.orphaned(self.stream_id):
                        yield error_frame("upstream_error", ORPHANED)
                        return
                    continue
                chunk = []
                for entry_id, fields in reply[0][1]:
                    if b"end" in fields:
                        if chunk:
                            yield b"".join(chunk)
                        return
                    chunk.append(fields[b"f"])
                    last = int(entry_id.split(b"-")[1])
                yield b"".join(chunk)
        except RedisError as exc:
            log.warning("redis: resumed stream lost (%s)", type(exc).__name__)
            yield error_frame("resume_unavailable", "Resuming is unavailable right now.")
        finally:
            self.left("done")
