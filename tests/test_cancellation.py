"""When the caller goes away, the upstream request is closed at once: the fake upstream
sees its TCP connection close, and nothing is left running."""

import asyncio
import contextlib
import random
import statistics

import pytest

from tests.fake_upstream import answer, message_start, text_block
from tests.support import (
    PROMPTLY,
    RawClient,
    close_latency,
    heap_frozen,
    post_chat,
    upstream_request,
)

LONG = answer(*[f"word{i} " for i in range(500)], delay=0.01)
PACED = answer(*[f"word{i} " for i in range(100)], delay=0.05)  # 20 deltas/s, as in the bench


def task_baseline(relay, server_loop) -> int:
    # One chat first: sse-starlette starts a process-wide shutdown watcher on its first
    # response, which is not a leak.
    assert post_chat(relay).events[-1] == "done"
    return server_loop.tasks()


STALL_AFTER_START = [message_start(), ("stall",)]
STALL_MID_ANSWER = [message_start(), *text_block(0, ["one ", "two "])[:-1], ("stall",)]


@pytest.mark.parametrize(
    ("script", "marker", "count"),
    [
        ([("hang",)], None, 0),
        (STALL_AFTER_START, b"HTTP/1.1 200", 1),  # `start` waits for the first delta
        (LONG, b"event: delta", 5),
        (STALL_MID_ANSWER, b"event: delta", 2),
    ],
    ids=["before-upstream-answers", "before-first-delta", "mid-stream", "during-upstream-stall"],
)
def test_one_stream_cancelled(relay, upstream, server_loop, script, marker, count):
    upstream.by_message["cancel me"] = script
    baseline = task_baseline(relay, server_loop)

    async def run() -> RawClient:
        client = RawClient(relay.url, "cancel me")
        await client.open()
        if marker:
            await client.read_until(marker, count)
        else:
            upstream_request(upstream, server_loop, "cancel me")
            await asyncio.sleep(0.05)
        client.hang_up()
        return client

    client = asyncio.run(run())
    latency = close_latency(upstream, server_loop, client)
    assert 0 <= latency < PROMPTLY, f"upstream closed {latency * 1000:.1f} ms after the client"
    assert server_loop.settles_to(baseline), "a task was left behind"


def test_hundred_concurrent_streams_closed_at_random_points(make_relay, upstream, server_loop):
    relay = make_relay(max_streams_per_client=1000)
    rng = random.Random(2026)
    kinds = [PACED, STALL_AFTER_START, STALL_MID_ANSWER, [("hang",)]]
    plans = []
    for i in range(100):
        script = kinds[0] if i % 2 else rng.choice(kinds)
        upstream.by_message[f"stream {i}"] = script
        plans.append((f"stream {i}", rng.uniform(0.05, 1.5)))
    baseline = task_baseline(relay, server_loop)

    async def one(message: str, after: float) -> RawClient:
        # Arrivals spread over half a second (all 100 still overlap): a burst of 100 at the
        # same instant would measure the queue of their request set-up, not cancellation.
        await asyncio.sleep(0.5 * int(message.split()[1]) / 100)
        client = RawClient(relay.url, message)
        await client.open()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.read_until(b"event: done"), after)
        client.hang_up()
        return client

    async def run() -> list[RawClient]:
        return await asyncio.gather(*(one(m, t) for m, t in plans))

    with heap_frozen():
        clients = asyncio.run(run())
    # A client that hung up before the relay called the upstream never costs a request.
    reached = [c for c in clients if upstream_request(upstream, server_loop, c.message, 0.2)]
    assert len(reached) >= 80
    latencies = sorted(close_latency(upstream, server_loop, c) for c in reached)
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"\ncancel latency, 100 concurrent ({len(reached)} reached the upstream): "
        f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"
    )
    assert latencies[-1] < PROMPTLY, f"worst close took {latencies[-1] * 1000:.1f} ms"

    # Nothing is left active: no upstream response, no task.
    assert server_loop.wait_for(lambda: upstream.responses_in_flight() == 0)
    assert server_loop.settles_to(baseline), "tasks were left behind"


def test_cancellation_latency_single_stream_distribution(relay, upstream, server_loop):
    """50 sequential mid-stream cancels: the figure for p50/p99 on one stream."""
    upstream.default = LONG

    async def run() -> list[float]:
        out = []
        for i in range(50):
            client = RawClient(relay.url, f"seq {i}")
            await client.open()
            await client.read_until(b"event: delta", 3)
            client.hang_up()
            out.append(client)
        return out

    clients = asyncio.run(run())
    latencies = sorted(close_latency(upstream, server_loop, c) for c in clients)
    p50, p99 = statistics.median(latencies), latencies[-1]
    print(f"\ncancel latency, single stream x50: p50 {p50 * 1000:.2f} ms, max {p99 * 1000:.2f} ms")
    assert p99 < PROMPTLY
