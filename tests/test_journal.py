"""A resumable stream's journal: numbered frames, replay from any id, one reader at a time."""

import asyncio
import tracemalloc

from app.journal import Journal


def test_frames_are_numbered_one_by_one_even_two_in_a_chunk():
    journal = Journal()
    journal.put_nowait(b"event: start\ndata: {}\n\nevent: delta\ndata: {}\n\n")
    journal.put_nowait(b"event: done\ndata: {}\n\n")
    assert len(journal) == 3
    assert [journal.frame(n).split(b"\n")[0] for n in (1, 2, 3)] == [b"id: 1", b"id: 2", b"id: 3"]
    assert journal.frame(3) == b"id: 3\nevent: done\ndata: {}\n\n"
    assert journal.since(1) == journal.frame(2) + journal.frame(3)


def test_a_reader_gets_what_follows_its_id_then_the_rest_live():
    async def run() -> bytes:
        journal = Journal()
        for name in (b"a", b"b", b"c"):
            journal.put_nowait(b"event: " + name + b"\ndata: 1\n\n")
        reader = journal.attach()
        got = []

        async def follow() -> None:
            async for chunk in journal.follow(reader, after=1):
                got.append(chunk)

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0)
        journal.put_nowait(b"event: d\ndata: 1\n\n")
        journal.close()
        await task
        return b"".join(got)

    out = asyncio.run(run())
    assert out.count(b"id: ") == 3 and out.startswith(b"id: 2\nevent: b")


def test_a_new_reader_takes_over():
    async def run() -> bool:
        journal = Journal()
        first = journal.attach()
        old = asyncio.ensure_future(anext(journal.follow(first), None))
        await asyncio.sleep(0)
        journal.attach()  # a reloaded tab
        return await asyncio.wait_for(old, 1) is None  # the old reader's stream ended

    assert asyncio.run(run())


def test_a_reader_cancelled_while_waiting_leaves_the_journal_working():
    # The caller left while its reader waited for the next frame; the answer goes on and
    # the caller comes back.
    async def run() -> bytes:
        journal = Journal()
        waiting = asyncio.ensure_future(anext(journal.follow(journal.attach())))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        journal.put_nowait(b"event: a\ndata: 1\n\n")  # no waiter left to wake
        back = journal.follow(journal.attach())
        first = await asyncio.wait_for(anext(back), 1)
        later = asyncio.ensure_future(anext(back))
        await asyncio.sleep(0)
        journal.put_nowait(b"event: b\ndata: 1\n\n")  # wakes the reader that came back
        return first + await asyncio.wait_for(later, 1)

    assert asyncio.run(run()) == b"id: 1\nevent: a\ndata: 1\n\nid: 2\nevent: b\ndata: 1\n\n"


def test_a_frame_costs_a_few_bytes_beyond_its_own():
    # 8,192 deltas (a long answer) of a typical 36-byte frame.
    journal = Journal()
    frame = b'event: delta\ndata: {"text":"abcd"}\n\n'
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(8192):
            journal.put_nowait(frame)
        per_frame = (tracemalloc.get_traced_memory()[0] - before) / 8192
    finally:
        tracemalloc.stop()
    id_line = len(b"id: 8192\n")
    assert per_frame < len(frame) + id_line + 16, per_frame  # a list of bytes: about +40
