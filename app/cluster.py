"""What replicas share through Redis (REDIS_URL): resumable streams, their stops and
takeovers, who reads them, and the per-client stream limit.

- A resumable stream's frames go to a Redis Stream (`app/mirror.py`), so any replica can
  replay them. Its owner key says which replica produces it, set again by a heartbeat (a
  `SET`, so a Redis that restarted empty gets it back): a replica that dies stops
  refreshing, and readers elsewhere learn the stream is orphaned.
- Stops and takeovers travel on one pub/sub channel that every replica listens to.
- A reader on another replica is a lease too: its replica refreshes a reader key, and the
  producing replica checks it on every heartbeat. A lost `left` message (Redis failing just
  then) only delays the resume window by a lease, never leaves an answer running unread.
- Client leases (app/leases.py), renewed by the same heartbeat.

Redis failing, or hanging, never holds up a chat: calls a request waits on go through a
deadline and a circuit breaker (`app/breaker.py`), the lease check then falls back to this
process's own count, and the mirror catches up once Redis is back. Only new resumable
requests (and resumes on other replicas) are refused meanwhile.
"""

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.breaker import Breaker, Unavailable
from app.errors import RETRY_AFTER_SECONDS, ApiError
from app.keys import CLAIM, CONTROL, UNSET, chat_key, frames_key, owner_key, reader_key
from app.leases import Leases

if TYPE_CHECKING:
    from app.stream import Stream

log = logging.getLogger("chat_relay")

# Redis calls that hang (a network partition) fail after this, not never. Calls a request
# waits on have a much shorter deadline (app/breaker.py).
SOCKET_TIMEOUT = 5.0
# Connections kept for everything but remote readers (which each hold one while waiting).
RESERVED_CONNECTIONS = 64
# Every so many heartbeats, idle pooled connections are closed (opened again when needed).
IDLE_BEATS = 4


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
        # Remote readers hold a connection each while they wait for frames (at most
        # MAX_CONCURRENT_STREAMS: app/admission.py); the rest of the pool serves writes and
        # the request path. Past the cap a call waits for a free connection rather than
        # failing. One quick retry: a call that cannot reach Redis fails in about a second.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_streams + RESERVED_CONNECTIONS,
            timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
            socket_connect_timeout=1.0,
            socket_timeout=SOCKET_TIMEOUT,
        )
        self.redis = aioredis.Redis.from_pool(pool)
        self.breaker = Breaker()
        self.replica = secrets.token_hex(8)
        self.lease_seconds = lease_seconds
        self.lease_ms = int(lease_seconds * 1000)
        self.leases = Leases(self.redis, self.breaker, self.replica, self.lease_ms)
        self.heartbeat = lease_seconds / 3
        self.streams = streams  # this replica's resumable streams, by id
        # Resumes of other replicas' streams read here: stream id -> (token, close).
        self.readers: dict[str, tuple[str, Callable[[], None]]] = {}
        # Told when Redis lost what it held (it restarted empty): the mirror writes again.
        self.on_lost: Callable[[], None] = lambda: None
        self._run_id: str | None = None
        self._reached = time.monotonic()  # when a heartbeat last reached Redis
        self._tasks: set[asyncio.Task[None]] = set()
        self._unset = self.redis.register_script(UNSET)
        self._claim = self.redis.register_script(CLAIM)

    def start(self) -> None:
        self._spawn(self._listen())
        self._spawn(self._beat())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()

    # Resumable streams ---------------------------------------------------------------

    async def register(self, stream_id: str, chat_id: str | None) -> None:
        """Claim a new resumable stream for this replica, before its 200: a resume on any
        replica finds it from then on (by its chat's id too, and a previous answer of that
        chat running elsewhere is stopped). 503 `resume_unavailable` if Redis does not
        answer."""

        async def claim() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(owner_key(stream_id), self.replica, px=self.lease_ms)
                if chat_id is not None:
                    pipe.set(chat_key(chat_id), stream_id, px=self.lease_ms, get=True)
                return await pipe.execute()

        try:
            replies = await self.breaker.call(claim)
        except Unavailable:
            log.warning("redis: resumable stream refused (unavailable)")
            raise resume_unavailable() from None
        previous = replies[1] if chat_id is not None else None
        if previous and previous.decode() not in self.streams:  # this replica's: ended here
            self.announce("stop", previous.decode())

    async def chat_stream(self, chat_id: str) -> str | None:
        """The stream id of chat `chat_id`'s answer, if one ran lately (503 if Redis does
        not answer)."""
        try:
            found = await self.breaker.call(lambda: self.redis.get(chat_key(chat_id)))
        except Unavailable:
            raise resume_unavailable() from None
        return found.decode() if found else None

    async def probe(self, stream_id: str) -> tuple[bool, int | None]:
        """Whether another replica's stream `stream_id` can be read, and, if it is over,
        how many frames it has (503 if Redis does not answer)."""

        async def ask() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(frames_key(stream_id), owner_key(stream_id))
                pipe.xrevrange(frames_key(stream_id), count=1)
                return await pipe.execute()

        try:
            exists, top = await self.breaker.call(ask)
        except Unavailable:
            raise resume_unavailable() from None
        ended = None
        if top and b"end" in top[0][1]:  # the end mark's id is one past the last frame
            ended = int(top[0][0].split(b"-")[1]) - 1
        return bool(exists), ended

    async def orphaned(self, stream_id: str) -> bool:
        """Whether the replica producing `stream_id` has no owner key (it may have died)."""
        return not await self.redis.exists(owner_key(stream_id))

    def announce(self, op: str, stream_id: str, token: str = "-") -> None:
        """Tell every replica: `stop` a stream, or a reader `attach`ed to it."""
        self._spawn(self._publish(f"{op} {stream_id} {self.replica} {token}"))

    async def stop(self, stream_id: str) -> None:
        message = f"stop {stream_id} {self.replica} -"
        try:
            await self.breaker.call(lambda: self.redis.publish(CONTROL, message))
        except Unavailable:
            raise resume_unavailable() from None

    def reading(self, stream_id: str, token: str, close: Callable[[], None]) -> None:
        """A reader here now reads another replica's `stream_id`: its presence is a lease
        from now on, and every replica hears of it (a previous reader closes)."""
        previous = self.readers.get(stream_id)
        if previous is not None:
            previous[1]()
        self.readers[stream_id] = (token, close)

        async def attach() -> None:
            with contextlib.suppress(RedisError):
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.set(reader_key(stream_id), token, px=self.lease_ms)
                    pipe.publish(CONTROL, f"attach {stream_id} {self.replica} {token}")
                    await pipe.execute()

        self._spawn(attach())

    def done_reading(self, stream_id: str, token: str) -> None:
        if self.readers.get(stream_id, ("",))[0] == token:
            del self.readers[stream_id]

        async def leave() -> None:
            # The presence first (if it is still this reader's: a newer one may have taken
            # over), then the message: a producer that hears `left` finds no reader key. If
            # both are lost, the key lapses within a lease anyway.
            with contextlib.suppress(RedisError):
                async with self.redis.pipeline(transaction=False) as pipe:
                    await self._unset(keys=[reader_key(stream_id)], args=[token], client=pipe)
                    pipe.publish(CONTROL, f"left {stream_id} {self.replica} {token}")
                    await pipe.execute()

        self._spawn(leave())

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

    async def _publish(self, message: str) -> None:
        with contextlib.suppress(RedisError):
            await self.redis.publish(CONTROL, message)

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
        beats = 0
        while True:
            await anyio.sleep(self.heartbeat)
            beats += 1
            try:
                if beats % IDLE_BEATS == 0:
                    # A burst (remote readers, catching up) leaves connections idle in the
                    # pool for good: close them, so descriptors come back to their level.
                    await self.redis.connection_pool.disconnect(inuse_connections=False)
                await self.beat()
            except RedisError as exc:
                log.warning("redis: heartbeat failed (%s)", type(exc).__name__)
                if time.monotonic() - self._reached > self.lease_seconds:
                    # Nobody elsewhere can be reading through a Redis this replica has not
                    # reached for a lease: their resume windows start.
                    for stream in self.streams.values():
                        stream.remote_present(None)

    async def beat(self) -> None:
        """Refresh what this replica holds (its leases, its running streams' keys, the
        presence of its remote readers), check on the remote readers of its own streams,
        and notice a Redis that restarted empty."""
        lease_ms = self.lease_ms
        watched = [
            (stream_id, stream)
            for stream_id, stream in self.streams.items()
            if stream.outcome is None and stream.remote_token is not None
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.info("server")
            for stream_id, _ in watched:
                pipe.get(reader_key(stream_id))
            await self.leases.renew(pipe)
            for stream_id, stream in self.streams.items():
                if stream.outcome is None:
                    pipe.set(owner_key(stream_id), self.replica, px=lease_ms)
                    pipe.pexpire(frames_key(stream_id), lease_ms, gt=True)
                    if stream.chat_id is not None:
                        keys, args = [chat_key(stream.chat_id)], [stream_id, lease_ms]
                        await self._claim(keys=keys, args=args, client=pipe)
            for stream_id, (token, _) in self.readers.items():
                pipe.set(reader_key(stream_id), token, px=lease_ms)
            replies = await pipe.execute()
        self._reached = time.monotonic()
        run_id = replies[0].get("run_id")
        if self._run_id is not None and run_id != self._run_id:
            log.warning("redis: the server restarted; writing resumable frames again")
            self.on_lost()
        self._run_id = run_id
        for (_, stream), present in zip(watched, replies[1:], strict=False):
            stream.remote_present(present.decode() if present else None)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
