"""The hand-over from a stream's task to its response: order, batching, backpressure."""

import asyncio

from app.outbox import HIGH_WATER, Outbox


def test_frames_come_out_in_order_and_pending_ones_in_one_piece():
    async def run() -> list[bytes]:
        outbox = Outbox()
        for frame in (b"a", b"b", b"c"):
            await outbox.put(frame)  # nobody reads yet: they queue
        outbox.close()
        return [chunk async for chunk in outbox.frames()]

    assert asyncio.run(run()) == [b"abc"]


def test_a_reader_that_keeps_up_gets_each_frame_as_it_comes():
    async def run() -> list[bytes]:
        outbox = Outbox()
        got: list[bytes] = []

        async def read() -> None:
            async for chunk in outbox.frames():
                got.append(chunk)

        reader = asyncio.ensure_future(read())
        for frame in (b"a", b"b", b"c"):
            await outbox.put(frame)
            await asyncio.sleep(0)  # the reader runs
        outbox.close()
        await reader
        return got

    assert asyncio.run(run()) == [b"a", b"b", b"c"]


def test_the_producer_waits_past_the_high_water_mark_until_the_reader_takes():
    async def run() -> tuple[bool, bool]:
        outbox = Outbox()
        big = b"x" * (HIGH_WATER // 2 + 1)
        await outbox.put(big)  # under the mark: returns at once
        second = asyncio.ensure_future(outbox.put(big))  # over it: waits
        await asyncio.sleep(0.05)
        waited = not second.done()
        frames = outbox.frames()
        assert await anext(frames) == big + big
        await asyncio.sleep(0)
        return waited, second.done()

    assert asyncio.run(run()) == (True, True)


def test_the_last_frame_goes_in_whatever_the_backlog():
    async def run() -> bytes:
        outbox = Outbox()
        outbox.put_nowait(b"x" * (HIGH_WATER * 2))
        outbox.put_nowait(b"end")
        outbox.close()
        return b"".join([chunk async for chunk in outbox.frames()])

    assert asyncio.run(run()).endswith(b"end")
