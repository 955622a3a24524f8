"""Resumable frames in a real Redis: the replica's writer (every frame once, in order, an end
mark, an expiry; nothing lost while Redis is away) and the reader on another replica."""

import asyncio
from types import SimpleNamespace

from app.cluster import Cluster
from app.journal import Journal
from app.keys import frames_key
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


def through_a_restart(tmp_path, before: int, while_down: int, after: int) -> list:
    """`before` frames written, Redis restarted empty (`while_down` frames put while it is
    down, `after` once it is back), the stream closed: the entries Redis holds in the end."""
    redis = RedisServer(tmp_path).start()
    try:

        async def run() -> list:
            cluster = Cluster(redis.url, 10.0, {}, 100)
            mirror, journal = Mirror(cluster), Journal()
            mirror.add(stream_like("t" * 32, journal))
            key = frames_key("t" * 32)

            def holds(count: int):
                async def check() -> bool:
                    return await cluster.redis.xlen(key) == count

                return check

            for _ in range(before):
                journal.put_nowait(FRAME)
            await until(holds(before))
            redis.stop()  # and everything it held with it
            for _ in range(while_down):
                journal.put_nowait(FRAME)
            await asyncio.sleep(0.5 if while_down else 0)  # writes fail meanwhile
            redis.start()  # the same port, empty
            for _ in range(after):
                journal.put_nowait(FRAME)
            journal.close()
            await until(holds(before + while_down + after + 1))
            entries = await cluster.redis.xrange(key)
            await mirror.close()
            await cluster.close()
            return entries

        return asyncio.run(run())
    finally:
        redis.stop()


def test_nothing_is_lost_while_redis_is_away(tmp_path):
    entries = through_a_restart(tmp_path, before=1, while_down=3, after=0)
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


def test_a_redis_restarted_empty_between_writes_gets_every_frame_again(tmp_path):
    # No write fails: the reconnected pipeline reaches an empty server. The writer must
    # notice that Redis lost frames 1-3, not append 4 and 5 after nothing.
    entries = through_a_restart(tmp_path, before=3, while_down=0, after=2)
    assert [e[0] for e in entries] == [f"0-{n}".encode() for n in range(1, 7)]
    assert entries[-1][1] == {b"end": b"1"}


def lag_while(tmp_path, fault: str) -> tuple[float, list[int]]:
    """40 streams of 1,500 frames gathered while Redis cannot take them (`fault`:
    `stopped`, or `oom` at maxmemory), then Redis back: the event loop's longest stall
    while the writer catches up, and how many entries each stream has in Redis."""
    redis = RedisServer(tmp_path).start()
    try:

        async def run() -> tuple[float, list[int]]:
            cluster = Cluster(redis.url, 10.0, {}, 100)
            mirror = Mirror(cluster)
            ids = [f"{n:032d}" for n in range(40)]
            journals = [Journal() for _ in ids]
            for stream_id, journal in zip(ids, journals, strict=True):
                mirror.add(stream_like(stream_id, journal, window=60))
            if fault == "oom":
                await cluster.redis.config_set("maxmemory", "1mb")
            else:
                redis.stop()
            stalls: list[float] = []

            async def ticker() -> None:
                while True:
                    started = asyncio.get_running_loop().time()
                    await asyncio.sleep(0.005)
                    stalls.append(asyncio.get_running_loop().time() - started - 0.005)

            tick = asyncio.ensure_future(ticker())
            for _ in range(1500):
                for journal in journals:
                    journal.put_nowait(FRAME)
                await asyncio.sleep(0)
            for journal in journals:
                journal.close()
            await asyncio.sleep(1.5)  # failed writes meanwhile
            if fault == "oom":
                await cluster.redis.config_set("maxmemory", "0")
            else:
                redis.start()

            async def all_written() -> bool:
                async with cluster.redis.pipeline(transaction=False) as pipe:
                    for stream_id in ids:
                        pipe.xlen(frames_key(stream_id))
                    return all(n == 1501 for n in await pipe.execute())

            async with asyncio.timeout(30):
                while not await all_written():  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            tick.cancel()
            counts = [await cluster.redis.xlen(frames_key(i)) for i in ids]
            await mirror.close()
            await cluster.close()
            return max(stalls), counts

        return asyncio.run(run())
    finally:
        redis.stop()


def test_catching_up_after_an_outage_never_blocks_the_event_loop(tmp_path):
    stall, counts = lag_while(tmp_path, "stopped")
    print(f"\nlongest event-loop stall while catching up 60,000 frames: {stall * 1000:.0f} ms")
    assert counts == [1501] * 40  # every frame and the end mark, once
    assert stall < 0.25, f"the writer blocked the event loop for {stall:.2f} s"


def test_redis_out_of_memory_backs_off_and_loses_nothing(tmp_path):
    stall, counts = lag_while(tmp_path, "oom")
    print(f"\nlongest event-loop stall at maxmemory and after: {stall * 1000:.0f} ms")
    assert counts == [1501] * 40
    assert stall < 0.25, f"the writer blocked the event loop for {stall:.2f} s"
