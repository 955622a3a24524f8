"""A resumable stream's frames in Redis: written by the replica that produces them, read
by whichever replica a caller resumes on.

The writer follows the stream's journal like a reader does and writes whatever has
gathered since its last write in one pipeline (`XADD` per frame, entry id `0-N` for SSE id
N), so a busy stream costs one round trip per batch, not per delta. The journal keeps every
frame, so a write that fails (Redis away) is retried from where it stopped: nothing is lost,
and the stream itself never waits for Redis. After the last frame an `end` entry tells
readers the stream is over, and the key expires RESUME_WINDOW later.
"""

import logging
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
from redis.exceptions import RedisError

from app.cluster import Cluster, frames_key, owner_key
from app.journal import Journal
from app.sse import error_frame

if TYPE_CHECKING:
    from app.stream import Stream

log = logging.getLogger("chat_relay")

# How long a reader's XREAD waits for new frames before checking that the stream's
# replica is still alive.
BLOCK_MS = 2000
ORPHANED = "The replica producing this answer went away; please ask again."


async def write(cluster: Cluster, stream: "Stream") -> None:
    """Copy the stream's journal to Redis until it is closed and written, then mark the
    end."""
    stream_id, journal, window = stream.stream_id, stream.outbox, stream.resume_window
    assert stream_id is not None and isinstance(journal, Journal)
    key, window_ms = frames_key(stream_id), max(int(window * 1000), 1)
    live_ms = max(window_ms, cluster.lease_ms)
    written, failures = 0, 0
    while True:
        closed = journal.closed
        end = len(journal)
        if written == end and not closed:
            await journal.wait()
            continue
        try:
            if failures:  # a failed batch may have been written in part: ask where it ends
                top = await cluster.redis.xrevrange(key, count=1)
                written = int(top[0][0].split(b"-")[1]) if top else 0
                if written > end:  # the end mark is in: all was written
                    return
            async with cluster.redis.pipeline(transaction=False) as pipe:
                for n in range(written, end):
                    pipe.xadd(key, {"f": journal.frame(n + 1)}, id=f"0-{n + 1}")
                if closed:
                    pipe.xadd(key, {"end": 1}, id=f"0-{end + 1}")
                    pipe.pexpire(key, window_ms)
                    pipe.pexpire(owner_key(stream_id), window_ms)
                else:
                    pipe.pexpire(key, live_ms)
                await pipe.execute()
        except RedisError as exc:
            failures += 1
            if failures == 1:
                log.warning("redis: frames not written (%s); retrying", type(exc).__name__)
            if closed and failures * 2 > window:  # the window is over: nobody can read it
                return
            await anyio.sleep(min(2.0 * failures, 5.0))  # until Redis is back
            continue
        written, failures = end, 0
        if closed:
            return


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
