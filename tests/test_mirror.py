"""Resumable frames in a real Redis: the replica's writer (every frame once, in order, an end
mark, an expiry; nothing lost while Redis is away) and the reader on another replica."""

import asyncio
from types import SimpleNamespace

from app.cluster import Cluster, frames_key
from app.journal import Journal
from app.mirror import Mirror, RemoteReader
from tests.support import RedisServer

FRAME = b"event: delta\ndata: {}\n\n"


def stream_like(stream_id: str, journal: Journal, window: float = 5.0) -> SimpleNamespace:
    # What the mirror reads of a stream: its id, its journal, its window.
    return SimpleNamespace(stream_id=stream_id, outbox=journal, resume_window=window)


async def until(predicate) -> None:
    """Poll Redis (another process: nothing to wait on) until `predicate`, for up to 10 s."""
    async with asyncio.timeout(10):
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def test_frames_go_to_redis_once_each_and_a_reader_elsewhere_follows(redis_server):
    async def run() -> tuple[list, list[bytes], int]:
        cluster = Cluster(redis_server.url, 10.0, {}, 100)
        mirror, journal = Mirror(cluster), Journal()
        mirror.add(stream_like("s" * 32, journal))
        for _ in range(5):
            journal.put_nowait(FRAME)
        reader = RemoteReader(cluster, "s" * 32, after=2)
        got: list[bytes] = []

        async def follow() -> None:
            async for chunk in reader.frames():
                got.append(chunk)

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.1)
        journal.put_nowait(FRAME)  # live, after the reader came
        journal.close()
        await asyncio.wait_for(task, 5)
        entries = await cluster.redis.xrange(frames_key("s" * 32))
        ttl = await cluster.redis.pttl(frames_key("s" * 32))
        await mirror.close()
        await cluster.close()
        return entries, got, ttl

    entries, got, ttl = asyncio.run(run())
    assert [e[0] for e in entries] == [f"0-{n}".encode() for n in range(1, 8)]
    assert entries[-1][1] == {b"end": b"1"}
    assert 0 < ttl <= 5000, "a finished stream's frames expire RESUME_WINDOW after its end"
    body = b"".join(got)
    assert [line for line in body.split(b"\n") if line.startswith(b"id: ")] == [
        b"id: 3",
        b"id: 4",
        b"id: 5",
        b"id: 6",
    ]


def test_nothing_is_lost_while_redis_is_away(tmp_path):
    redis = RedisServer(tmp_path).start()
    try:

        async def run() -> list:
            cluster = Cluster(redis.url, 10.0, {}, 100)
            mirror, journal = Mirror(cluster), Journal()
            mirror.add(stream_like("t" * 32, journal))
            journal.put_nowait(FRAME)
            key = frames_key("t" * 32)
            await until(lambda: cluster.redis.exists(key))
            redis.stop()  # and everything it held with it
            for _ in range(3):
                journal.put_nowait(FRAME)
            journal.close()
            await asyncio.sleep(0.5)
            redis.start()  # the same port, empty

            async def all_written() -> bool:
                return await cluster.redis.xlen(key) == 5

            await until(all_written)
            entries = await cluster.redis.xrange(key)
            await mirror.close()
            await cluster.close()
            return entries

        entries = asyncio.run(run())
    finally:
        redis.stop()
    assert [e[0] for e in entries] == [f"0-{n}".encode() for n in range(1, 6)]
    assert [e[1][b"f"].split(b"\n")[0] for e in entries[:4]] == [
        b"id: 1",
        b"id: 2",
        b"id: 3",
        b"id: 4",
    ]


def test_a_new_reader_on_the_same_replica_closes_the_previous_one(redis_server):
    async def run() -> bool:
        cluster = Cluster(redis_server.url, 10.0, {}, 100)
        mirror, journal = Mirror(cluster), Journal()
        mirror.add(stream_like("u" * 32, journal))
        journal.put_nowait(FRAME)
        first = RemoteReader(cluster, "u" * 32, after=1)  # waits for frame 2
        task = asyncio.ensure_future(first.frames().__anext__())
        await asyncio.sleep(0.2)
        RemoteReader(cluster, "u" * 32, after=0)
        ended = False
        try:
            await asyncio.wait_for(task, 1)
        except StopAsyncIteration:
            ended = True
        journal.close()
        await mirror.close()
        await cluster.close()
        return ended

    assert asyncio.run(run()), "the first reader must end at once when taken over"
