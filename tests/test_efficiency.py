"""Work per delta is constant however long the answer, memory per stream is bounded, and
a reader that does not read stops the upstream instead of filling a buffer."""

import asyncio
import gc
import json
import statistics
import time
import tracemalloc

import anthropic
import httpx2

from app.stream import Stream
from tests.fake_upstream import message_end, message_start, text_block
from tests.support import RawClient, read_a_flood_late

DELTAS = 20_000
TEXT = "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ."  # 64 chars


def sse(name: str, payload: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(payload).encode())


def long_answer_body() -> list[bytes]:
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": TEXT},
    }
    one = sse("content_block_delta", delta)
    steps = [message_start(), *message_end()]
    head = sse(steps[0][1], steps[0][2])
    tail = b"".join(sse(name, payload) for _, name, payload in steps[1:])
    return [head, *([one] * DELTAS), tail]


class MemoryTransport(httpx2.AsyncBaseTransport):
    """Serves one prepared streaming body, chunk by chunk, through the real SDK client."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        async def body():
            for chunk in self.chunks:
                yield chunk

        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())


async def relay_long_answer(marks: dict[int, float], clock) -> int:
    client = anthropic.AsyncAnthropic(
        api_key="test",
        base_url="http://memory.invalid",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=MemoryTransport(long_answer_body())),
    )
    params = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    stream = Stream(client, params, "client", "live", idle_timeout=60, retries=0, backoff=0)
    task = asyncio.ensure_future(stream.run())
    deltas = 0
    async for chunk in stream.outbox.frames():
        # The reader keeps up here, so each chunk holds one frame; count them regardless.
        for _ in range(chunk.count(b"event: delta\n")):
            deltas += 1
            if deltas % 2000 == 0:
                marks[deltas] = clock()
    await task
    await client.close()
    return deltas


def test_cost_per_delta_does_not_grow_with_the_answer():
    runs = []
    for _ in range(4):  # the first is a warm-up
        marks: dict[int, float] = {}
        assert asyncio.run(relay_long_answer(marks, time.perf_counter)) == DELTAS
        runs.append([(marks[n] - marks[n - 2000]) / 2000 for n in range(4000, DELTAS + 1, 2000)])
    # The median of three 2,000-delta blocks at each end, so one block a GC or a busy
    # machine slowed down does not decide; the best of three runs, as noise only adds.
    early = min(statistics.median(r[:3]) for r in runs[1:])
    late = min(statistics.median(r[-3:]) for r in runs[1:])
    us = f"{early * 1e6:.2f} us over deltas 2-8k, {late * 1e6:.2f} us over 14-20k"
    print(f"\nper delta: {us} ({late / early:.2f}x)")
    # An implementation that accumulates the text (a snapshot) copies ~1.2 MB per delta by
    # the end and fails this by several times.
    assert late < 1.5 * early


def test_memory_does_not_grow_with_the_answer():
    tracemalloc.start()
    try:
        marks: dict[int, float] = {}
        asyncio.run(relay_long_answer(marks, lambda: tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()
    growth = marks[DELTAS] - marks[2000]
    print(
        f"\nmemory growth from delta 2k to 20k: {growth / 1024:.1f} KiB "
        f"(answer: {DELTAS * len(TEXT) / 1e6:.1f} MB)"
    )
    # The answer is 1.3 MB; anything that keeps it, or a per-delta leak, shows here.
    assert growth < 64 * 1024


def test_a_reader_that_stops_reading_stops_the_upstream(relay, upstream, server_loop):
    count, text = 100_000, "x" * 300  # ~40 MB from the upstream, far beyond socket buffers
    upstream.default = [message_start(), ("flood", count, text), *message_end()]
    stalled_at, total, deltas = asyncio.run(read_a_flood_late(relay, upstream, server_loop))
    print(f"\nupstream stalled after {stalled_at / 1e6:.1f} of {total / 1e6:.1f} MB")
    assert stalled_at < total / 2, (
        "the relay kept reading the upstream for a reader that did not read"
    )
    assert deltas == count


def test_an_open_stream_does_not_hold_its_request(relay, upstream, server_loop):
    # Streams with 500,000-character messages held ~1.5 MB each for the whole answer when
    # the request stayed referenced; what a stream needs once it is sent is a few KB.
    upstream.default = [message_start(), *text_block(0, ["held "])[:-1], ("stall",)]
    big = "y" * 500_000
    streams = 20

    async def hold(count: int) -> list[RawClient]:
        clients = [RawClient(relay.url, f"{big} {i}") for i in range(count)]
        for client in clients:
            await client.open()
            await client.read_until(b"event: delta")
        return clients

    # The test's clients and the fake upstream (which keeps every request it received)
    # allocate from tests/ frames: what is left is the relay's share.
    relay_only = [tracemalloc.Filter(False, "*/tests/*", all_frames=True)]

    async def run() -> float:
        for client in await hold(2):  # warm-up
            client.hang_up()
        gc.collect()
        before = tracemalloc.take_snapshot().filter_traces(relay_only)
        clients = await hold(streams)
        await asyncio.sleep(0.2)
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces(relay_only)
        for client in clients:
            client.hang_up()
        return sum(s.size_diff for s in after.compare_to(before, "filename")) / streams

    tracemalloc.start(25)  # frames enough to tell a test's allocation from the relay's
    try:
        per_stream = asyncio.run(run())
    finally:
        tracemalloc.stop()
    print(f"\nheld per open stream with a 500,000-character message: {per_stream / 1024:.0f} KiB")
    assert per_stream < 200 * 1024
