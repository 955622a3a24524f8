"""What replicas share through Redis (REDIS_URL): resumable streams, their stops and
takeovers, and the per-client stream limit.

- A resumable stream's frames go to a Redis Stream (`app/mirror.py`), so any replica can
  replay them. Its owner key says which replica produces it, refreshed by a heartbeat: a
  replica that dies stops refreshing, and readers elsewhere learn the stream is orphaned.
- Stops and takeovers travel on one pub/sub channel that every replica listens to: a stop
  reaches the producing replica, a new reader closes the previous one wherever it is.
- Client leases: a sorted set per client of its streams' expiry times, refreshed by the
  heartbeat and dropped when a stream ends. A replica that dies stops refreshing, so its
  leases lapse after REDIS_LEASE_SECONDS: leases, not counters that a crash would leak.

Redis failing never breaks a stream already open or a chat that did not ask to resume:
the lease check falls back to this process's own count, and the mirror catches up once
Redis is back. Only new resumable requests (and resumes on other replicas) are refused.
"""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.errors import RETRY_AFTER_SECONDS, ApiError

if TYPE_CHECKING:
    from app.stream import Stream

log = logging.getLogger("chat_relay")

PREFIX = "chat-relay"
CONTROL = f"{PREFIX}:control"
# Redis calls that hang (a network partition) fail after this, not never.
SOCKET_TIMEOUT = 5.0

# Take a lease if the client holds fewer than ARGV[2] live ones. Redis's clock, so the
# replicas' clocks need not agree.
_LEASE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RENEW = """
local t = redis.call('TIME')
local expiry = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
"""


def frames_key(stream_id: str) -> str:
    return f"{PREFIX}:frames:{stream_id}"


def owner_key(stream_id: str) -> str:
    return f"{PREFIX}:owner:{stream_id}"


def resume_unavailable() -> ApiError:
    return ApiError(
        503,
        "resume_unavailable",
        'Resuming is unavailable right now (its store cannot be reached); ask without "resumable".',
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


class Cluster:
    def __init__(
        self, url: str, lease_seconds: float, streams: Mapping[str, "Stream"], max_streams: int
    ) -> None:
        # A resume of another replica's stream holds a connection while it waits for
        # frames; writes hold one for a round trip. Past the cap a call waits for a free
        # connection (up to SOCKET_TIMEOUT) rather than failing. One quick retry: a call
        # that cannot reach Redis fails in about a second, not after long backoffs.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_streams + 64,
            timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
            socket_connect_timeout=1.0,
            socket_timeout=SOCKET_TIMEOUT,
        )
        self.redis = aioredis.Redis.from_pool(pool)
        self.replica = secrets.token_hex(8)
        self.lease_ms = int(lease_seconds * 1000)
        self.heartbeat = lease_seconds / 3
        self.streams = streams  # this replica's resumable streams, by id
        self.leases: dict[str, set[str]] = {}  # client key -> lease members held here
        # Resumes of other replicas' streams read here: stream id -> (token, close).
        self.readers: dict[str, tuple[str, Callable[[], None]]] = {}
        self._lease = self.redis.register_script(_LEASE)
        self._renew = self.redis.register_script(_RENEW)
        self._tasks: set[asyncio.Task[None]] = set()
        self._count = 0

    def start(self) -> None:
        self._spawn(self._listen())
        self._spawn(self._beat())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()

    # Per-client leases ---------------------------------------------------------------

    async def lease(self, client: str, limit: int) -> str | None:
        """Take a lease for one of `client`'s streams (429 if it holds `limit`); None when
        Redis cannot be reached: the caller then relies on its own process's count."""
        self._count += 1
        member = f"{self.replica}:{self._count}"
        try:
            key = _leases_key(client)
            taken = await self._lease(keys=[key], args=[member, limit, self.lease_ms])
        except RedisError as exc:
            log.warning("redis: lease check skipped (%s)", type(exc).__name__)
            return None
        if not taken:
            raise ApiError(
                429,
                "rate_limit_error",
                f"At most {limit} streams at once per client.",
                {"Retry-After": RETRY_AFTER_SECONDS},
            )
        self.leases.setdefault(client, set()).add(member)
        return member

    async def release(self, client: str, member: str) -> None:
        held = self.leases.get(client)
        if held is not None:
            held.discard(member)
            if not held:
                del self.leases[client]
        with contextlib.suppress(RedisError):  # else it lapses within REDIS_LEASE_SECONDS
            await self.redis.zrem(_leases_key(client), member)

    # Resumable streams ---------------------------------------------------------------

    async def register(self, stream_id: str) -> None:
        """Claim a new resumable stream for this replica, before its 200: a resume on any
        replica finds it from then on. 503 `resume_unavailable` if Redis cannot be reached."""
        try:
            await self.redis.set(owner_key(stream_id), self.replica, px=self.lease_ms)
        except RedisError as exc:
            log.warning("redis: resumable stream refused (%s)", type(exc).__name__)
            raise resume_unavailable() from None

    async def known(self, stream_id: str) -> bool:
        """Whether another replica's stream `stream_id` can be read (503 if Redis can't)."""
        try:
            return bool(await self.redis.exists(frames_key(stream_id), owner_key(stream_id)))
        except RedisError:
            raise resume_unavailable() from None

    async def orphaned(self, stream_id: str) -> bool:
        """Whether the replica producing `stream_id` stopped refreshing it (it died)."""
        return not await self.redis.exists(owner_key(stream_id))

    def announce(self, op: str, stream_id: str, token: str = "-") -> None:
        """Tell every replica: `stop` a stream, a reader `attach`ed to it, or `left` it."""
        self._spawn(self._publish(f"{op} {stream_id} {self.replica} {token}"))

    async def stop(self, stream_id: str) -> None:
        try:
            await self._publish(f"stop {stream_id} {self.replica} -", strict=True)
        except RedisError:
            raise resume_unavailable() from None

    def reading(self, stream_id: str, token: str, close: Callable[[], None]) -> None:
        """A reader here now reads another replica's `stream_id`; a previous one closes."""
        previous = self.readers.get(stream_id)
        if previous is not None:
            previous[1]()
        self.readers[stream_id] = (token, close)

    def done_reading(self, stream_id: str, token: str) -> None:
        if self.readers.get(stream_id, ("",))[0] == token:
            del self.readers[stream_id]
        self.announce("left", stream_id, token)

    def _control(self, message: bytes) -> None:
        try:
            op, stream_id, replica, token = message.decode().split(" ")
        except ValueError:
            return
        if replica == self.replica:
            return
        reader = self.readers.get(stream_id)
        if op == "attach" and reader is not None and reader[0] != token:
            reader[1]()  # taken over from another replica
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if op == "stop":
            stream.end("stopped")
        elif op == "attach":
            stream.attach_remote(token)
        elif op == "left":
            stream.left_remote(token)

    async def _publish(self, message: str, *, strict: bool = False) -> None:
        try:
            await self.redis.publish(CONTROL, message)
        except RedisError:
            if strict:
                raise

    async def _listen(self) -> None:
        # Reconnects for as long as the process runs: Redis may come and go.
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CONTROL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._control(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("redis: control channel lost (%s); reconnecting", type(exc).__name__)
            await anyio.sleep(1.0)

    async def _beat(self) -> None:
        """Refresh what this replica holds: its leases, and its running streams' keys."""
        while True:
            await anyio.sleep(self.heartbeat)
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for client, members in self.leases.items():
                        await self._renew(
                            keys=[_leases_key(client)], args=[self.lease_ms, *members], client=pipe
                        )
                    for stream_id, stream in self.streams.items():
                        if stream.outcome is None:
                            pipe.pexpire(owner_key(stream_id), self.lease_ms)
                            pipe.pexpire(frames_key(stream_id), self.lease_ms, gt=True)
                    await pipe.execute()
            except RedisError as exc:
                log.warning("redis: heartbeat failed (%s)", type(exc).__name__)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _leases_key(client: str) -> str:
    return f"{PREFIX}:leases:{client}"
