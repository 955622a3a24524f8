"""A resumable stream's frames in Redis: written by the replica that produces them, read
by whichever replica a caller resumes on.

One writer per replica writes whatever frames have gathered, across all its streams, in one
pipeline (entry id `0-N` for SSE id N). A stream's frames are appended by a script that
first checks what Redis holds: if it holds fewer than the writer wrote (it restarted empty,
or failed over to a replica that lagged), it says how many, and the writer goes back and
writes from there. So Redis never holds a gap, and a reader never serves one. The journal
keeps every frame, so a write that fails (Redis away, out of memory) is simply tried again,
with a backoff, and a stream never waits for Redis. A round writes at most
`FRAMES_PER_ROUND` frames, so catching up after a long outage never blocks the event loop.
After a stream's last frame an `end` entry tells readers it is over, and the key expires
RESUME_WINDOW later.
"""

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

import anyio
from redis.exceptions import RedisError

from app.cluster import Cluster
from app.dialect import Dialect
from app.frames import RELAY
from app.journal import Journal
from app.keys import frames_key, owner_key

if TYPE_CHECKING:
    from app.stream import Stream

log = logging.getLogger("chat_relay")

# How long a reader's XREAD waits for new frames before checking that the stream's
# replica is still alive.
BLOCK_MS = 2000
# At shutdown, how long what is pending may take to be written.
FLUSH_SECONDS = 2.0
# Frames one round of the writer sends at most (about 100 KB): building and parsing a round
# costs a few ms of the event loop, however far behind the writer is.
FRAMES_PER_ROUND = 1000
ORPHANED = "The replica producing this answer went away; please ask again."
GAP = "Part of this answer was lost; please ask again."

# Append frames ARGV[6..] to the frames key KEYS[1], as ids ARGV[1] + 1 on, unless Redis
# holds fewer than ARGV[1] entries: then nothing is written, and the reply says how many it
# holds. Frames it holds already are skipped (a retried round). ARGV[3] = '1' adds the end
# mark. The frames key expires in ARGV[2] ms, the owner key KEYS[2] (ARGV[4]) in ARGV[5].
_APPEND = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local held = 0
if top[1] then held = tonumber(string.match(top[1][1], '%d+$')) end
local n = tonumber(ARGV[1])
if held < n then return {0, held} end
for i = 6, #ARGV do
  n = n + 1
  if n > held then redis.call('XADD', KEYS[1], '0-' .. n, 'f', ARGV[i]) end
end
if ARGV[3] == '1' and n + 1 > held then redis.call('XADD', KEYS[1], '0-' .. (n + 1), 'end', 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
return {1, n}
"""


class Mirror:
    """The one writer of this replica's resumable streams' frames to Redis.

    A stream's journal tells it when frames come (`changed`); whatever has gathered, across
    every stream, goes out in one pipeline, and what comes while that is in flight goes in
    the next. A busy replica makes a few round trips a second however many streams run,
    not one per delta.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        # This replica's resumable streams, until their window passes (`forget`).
        self.streams: dict[str, _Mirrored] = {}
        self.dirty: dict[str, None] = {}  # ordered set: streams with frames to write
        self._append = cluster.redis.register_script(_APPEND)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        cluster.on_lost = self.lost

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

    def forget(self, stream_id: str) -> None:
        """The stream's window has passed: nobody can read it any more."""
        self.streams.pop(stream_id, None)

    def lost(self) -> None:
        """Redis restarted: check every stream it should hold, and write again what it
        lost (finished ones within their window too)."""
        for stream_id in self.streams:
            self.changed(stream_id)

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
            try:
                await self._round()
            except RedisError as exc:  # Redis away, or out of memory: back off, keep it all
                failures += 1
                if failures == 1:
                    log.warning("redis: frames not written (%s); retrying", type(exc).__name__)
                await anyio.sleep(min(0.25 * 2**failures, 5.0))
                self._wake.set()
                continue
            except Exception:  # a bug: log it, keep writing
                log.exception("redis: frames writer failed")
            failures = 0
            if self.dirty:  # more than a round's worth: on with it, after others ran
                self._wake.set()
                await asyncio.sleep(0)

    async def _round(self) -> None:
        """One pipeline: up to FRAMES_PER_ROUND frames of the streams with frames to write."""
        cluster, room = self.cluster, FRAMES_PER_ROUND
        sent: list[tuple[str, _Mirrored, int]] = []
        async with cluster.redis.pipeline(transaction=False) as pipe:
            for stream_id in list(self.dirty):
                if room <= 0:
                    break
                del self.dirty[stream_id]
                mirrored = self.streams.get(stream_id)
                if mirrored is None:
                    continue
                journal, written = mirrored.journal, mirrored.written
                upto = min(len(journal), written + room)
                if upto < len(journal):
                    self.dirty[stream_id] = None  # the rest in a later round
                ended = journal.closed and upto == len(journal)
                window_ms = max(int(mirrored.window * 1000), 1)
                frames_ms = window_ms if ended else max(window_ms, cluster.lease_ms)
                owner_ms = window_ms if ended else cluster.lease_ms
                frames = [journal.frame(n) for n in range(written + 1, upto + 1)]
                args = [written, frames_ms, int(ended), cluster.replica, owner_ms, *frames]
                keys = [frames_key(stream_id), owner_key(stream_id)]
                await self._append(keys=keys, args=args, client=pipe)
                sent.append((stream_id, mirrored, upto))
                room -= max(len(frames), 1)
            if not sent:
                return
            try:
                replies = await pipe.execute(raise_on_error=False)
            except BaseException:
                for stream_id, *_ in sent:  # all of them again, later
                    self.dirty[stream_id] = None
                raise
        failure = None
        for (stream_id, mirrored, upto), reply in zip(sent, replies, strict=True):
            if isinstance(reply, Exception):  # e.g. OOM: this stream again, later
                failure = reply
                self.dirty[stream_id] = None
            elif reply[0] == 1:
                mirrored.written = upto
            else:  # Redis lost frames: from where it stands
                log.warning("redis: frames lost; writing them again from %d", reply[1])
                mirrored.written = int(reply[1])
                self.dirty[stream_id] = None
        if failure is not None:
            raise failure


class _Mirrored:
    __slots__ = ("journal", "window", "written")

    def __init__(self, journal: Journal, window: float) -> None:
        self.journal, self.window = journal, window
        self.written = 0  # frames in Redis


class RemoteReader:
    """A resume of another replica's stream: its frames after id `after`, then the rest as
    they are written, until the end, a newer reader anywhere, or its replica dying."""

    __slots__ = ("after", "closed", "cluster", "dialect", "done", "scope", "stream_id", "token")

    def __init__(
        self, cluster: Cluster, stream_id: str, after: int, dialect: Dialect = RELAY
    ) -> None:
        self.cluster, self.stream_id, self.after = cluster, stream_id, after
        self.dialect = dialect  # for the errors it ends with itself
        self.token = secrets.token_hex(8)
        self.closed = self.done = False
        self.scope: anyio.CancelScope | None = None
        cluster.reading(stream_id, self.token, self.close)

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
        error_frame = self.dialect.failed
        ownerless_since = None  # the owner key can be briefly gone (Redis restarted empty)
        try:
            while not self.closed:
                with anyio.CancelScope() as self.scope:
                    reply = await redis.xread({key: f"0-{last}"}, count=1000, block=BLOCK_MS)
                if self.closed:
                    return
                if not reply:
                    if not await self.cluster.orphaned(self.stream_id):
                        ownerless_since = None
                    elif ownerless_since is None:
                        ownerless_since = time.monotonic()
                    elif time.monotonic() - ownerless_since > self.cluster.lease_seconds:
                        yield error_frame("upstream_error", ORPHANED)
                        return
                    continue
                chunk = []
                for entry_id, fields in reply[0][1]:
                    n = int(entry_id.split(b"-")[1])
                    if n != last + 1:  # never serve a gap (the writer makes none: belt and braces)
                        chunk.append(error_frame("resume_unavailable", GAP))
                        yield b"".join(chunk)
                        return
                    if b"end" in fields:
                        if chunk:
                            yield b"".join(chunk)
                        return
                    chunk.append(fields[b"f"])
                    last = n
                yield b"".join(chunk)
        except RedisError as exc:
            log.warning("redis: resumed stream lost (%s)", type(exc).__name__)
            yield error_frame("resume_unavailable", "Resuming is unavailable right now.")
        finally:
            self.left("done")
