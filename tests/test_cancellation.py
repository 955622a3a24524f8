"""When the caller goes away, the upstream request is closed at once: the fake upstream
sees its TCP connection close, and nothing is left running."""

import asyncio
import contextlib
import json
import random
import statistics
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import post_chat
from tests.fake_upstream import answer, message_start, text_block

# Generous: the target is p99 < 50 ms; this only has to catch "not promptly".
PROMPTLY = 0.5


class RawClient:
    """An HTTP client that can hang up at an exact moment and say when it did."""

    def __init__(self, url: str, message: str) -> None:
        self.url = urlsplit(url)
        self.message = message
        self.received = b""
        self.closed_at = 0.0

    async def open(self, headers: dict[str, str] | None = None) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.url.hostname, self.url.port)
        body = json.dumps({"message": self.message}).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"POST /api/chat HTTP/1.1\r\nhost: {self.url.netloc}\r\n{extra}"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()

    async def read_until(self, marker: bytes, count: int = 1) -> None:
        while self.received.count(marker) < count:
            chunk = await self.reader.read(65536)
            assert chunk, f"stream ended before {count} x {marker!r}: {self.received[-300:]!r}"
            self.received += chunk

    def hang_up(self) -> None:
        self.closed_at = time.monotonic()
        self.writer.close()


def upstream_request(upstream, server_loop, message, timeout=2.0):
    def find():
        return next(
            (r for r in upstream.requests if r.body["messages"][-1]["content"] == message), None
        )

    server_loop.wait_for(lambda: find() is not None, timeout)
    return server_loop.call(find)


def close_latency(upstream, server_loop, client: RawClient) -> float:
    request = upstream_request(upstream, server_loop, client.message)
    assert request is not None, f"no upstream request for {client.message}"
    assert server_loop.wait_for(lambda: request.conn.closed is not None, timeout=5), (
        "the upstream connection was never closed"
    )
    return request.conn.closed - client.closed_at


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
