"""Request bodies are read within bounds: a deadline, a cap on how many at once, and a
caller who leaves mid-upload is one log line."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import httpx2

from app.body import BYTES_PER_VALUE
from app.jsonsize import json_values
from tests.fake_upstream import answer
from tests.support import BODY_COPIES, file_block, memory_mb, raw_post


async def slow_upload(url: str):
    """Headers and the first 1,000 bytes of a 100,000-byte body, then nothing."""
    return await raw_post(url, b" " * 1000, declared=100_000)


async def answer_of(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status, and everything until the relay closed the connection."""
    raw = await asyncio.wait_for(reader.read(), 5)
    return int(raw.split(b" ", 2)[1]), raw


def test_slow_uploads_are_bounded_in_time_and_number(make_relay, server_loop, relay_log):
    relay = make_relay(request_timeout=0.5, max_reading_requests=5)
    runtime = relay.state.runtime

    async def run() -> list[tuple[int, bytes]]:
        uploads = [await slow_upload(relay.url) for _ in range(15)]
        answers = await asyncio.gather(*(answer_of(reader) for reader, _ in uploads))
        for _, writer in uploads:
            writer.close()
        return answers

    answers = asyncio.run(run())
    statuses = sorted(status for status, _ in answers)
    # Five read until the deadline, then 408; the rest were refused at once. Every
    # connection was closed by the relay (read() returned): none is held.
    assert statuses == [408] * 5 + [503] * 10, statuses
    for status, raw in answers:
        body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["type"] == {408: "request_timeout", 503: "overloaded_error"}[status]
    assert server_loop.call(lambda: runtime.reading) == 0
    assert "Traceback" not in relay_log.text


def test_a_caller_leaving_mid_upload_is_one_line(make_relay, server_loop, relay_log):
    relay = make_relay()
    runtime = relay.state.runtime

    async def run() -> None:
        _, writer = await slow_upload(relay.url)
        await asyncio.sleep(0.1)
        writer.close()

    asyncio.run(run())
    assert server_loop.wait_for(lambda: any('"status": 499' in line for line in relay_log.lines))
    assert server_loop.call(lambda: runtime.reading) == 0
    lines = [line for line in relay_log.lines if "client_closed" in line]
    assert len(lines) == 1 and json.loads(lines[0])["status"] == 499
    assert "Traceback" not in relay_log.text


async def paced_upload(
    url: str, body: bytes, pieces: int, seconds: float, *, end: bool = True
) -> tuple[int, bytes]:
    """POST `body` chunked, in `pieces` spread over `seconds` (and then its end, or
    nothing more); the relay's answer."""
    reader, writer = await raw_post(url, b"", chunked=True)
    step = -(-len(body) // pieces)
    for start in range(0, len(body), step):
        piece = body[start : start + step]
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        await writer.drain()
        await asyncio.sleep(seconds / pieces)
    if end:
        writer.write(b"0\r\n\r\n")
    try:
        return await answer_of(reader)
    finally:
        writer.close()


def test_a_large_upload_gets_a_second_per_min_upload_rate(make_relay, server_loop):
    """A photo over a slow uplink arrives after REQUEST_TIMEOUT and is still read; a trickle
    below MIN_UPLOAD_RATE is not. What was read is given back either way."""
    relay = make_relay(request_timeout=0.3, min_upload_rate=100_000)
    runtime = relay.state.runtime
    body = json.dumps({"message": "x" * 120_000}).encode()
    # 120 KB over 0.8 s: past the 0.3 s, within 0.3 + 1.2 s.
    status, raw = asyncio.run(paced_upload(relay.url, body, 8, 0.8))
    assert status == 200 and b"event: done" in raw
    # 20 KB, then nothing: the deadline passes at 0.3 + 0.2 s.
    status, raw = asyncio.run(paced_upload(relay.url, body[:20_000], 2, 0.1, end=False))
    assert status == 408 and b"per 100000 bytes" in raw
    assert server_loop.call(lambda: runtime.held_bytes) == 0


def test_chunked_bodies_count_against_the_held_bytes_as_they_arrive(make_relay, server_loop):
    relay = make_relay(max_body_bytes=40_000, max_held_body_bytes=50_000)
    runtime = relay.state.runtime

    async def run() -> list[tuple[int, bytes]]:
        # The first holds 30 KB and waits for the rest; the second passes 50 KB in all.
        _, writer = await raw_post(relay.url, b"", chunked=True)
        writer.write(b"%x\r\n%s\r\n" % (30_000, b" " * 30_000))
        await writer.drain()
        held = partial(server_loop.wait_for, lambda: runtime.held_bytes >= 30_000)
        assert await asyncio.to_thread(held)
        second = await paced_upload(relay.url, b" " * 30_000, 3, 0.1)
        writer.close()
        return [second]

    ((status, raw),) = asyncio.run(run())
    assert status == 503 and b"holds as many request bodies" in raw
    assert server_loop.wait_for(lambda: runtime.held_bytes == 0)


def held_copies(
    make_replica, upstream, body: bytes, charged: int, count: int, *, large: bool = True
) -> float:
    """Memory `count` held `body`s cost at the peak, from their first byte read to their
    first delta, in copies of what each is `charged` against MAX_HELD_BODY_BYTES; and, for
    `large` blocks (which go back to the OS at once), that nothing of them is left while
    they stream (small objects' arenas stay in RSS, for the next bodies to reuse)."""
    process, url = make_replica(MAX_HELD_BODY_BYTES=str(max(count * charged + 2**20, 2**25)))
    upstream.push(*[answer("warm")] * 2)
    for _ in range(2):  # the allocator warmed up
        assert httpx2.post(f"{url}/api/chat", content=body, timeout=30).status_code == 200
    base = memory_mb(process.pid, "VmRSS")
    # Each answer starts after 1 s, then streams for 4 s.
    upstream.push(*[[("sleep", 1), *answer(*["word "] * 40, delay=0.1)]] * count)
    started = threading.Barrier(count + 1)

    def chat() -> bool:
        with httpx2.stream("POST", f"{url}/api/chat", content=body, timeout=30) as reply:
            lines = reply.iter_lines()
            while not next(lines).startswith("event: delta"):
                pass
            started.wait(30)  # every answer past its first delta
            started.wait(30)  # measured
            return "event: done" in list(lines)

    with ThreadPoolExecutor(count) as pool:
        replies = [pool.submit(chat) for _ in range(count)]
        started.wait(30)
        streaming = memory_mb(process.pid, "VmRSS")
        started.wait(30)
        assert all(reply.result() for reply in replies)
    copies = (memory_mb(process.pid, "VmHWM") - base) / (count * charged / 2**20)
    print(f"a held body: {copies:.2f} copies at the peak; {streaming - base:+.1f} MB streaming")
    # The conversations were dropped at their first delta: not held while they stream.
    assert not large or streaming - base < 0.25 * count * charged / 2**20
    return copies


def test_a_held_body_costs_at_most_body_copies_of_its_size(make_replica, upstream):
    """What the Deployment's arithmetic assumes (tests/test_deploy.py): a request body of B
    bytes costs at most BODY_COPIES x B of memory from its first byte read to its first
    delta (the bytes, the parsed conversation, the SDK's request body on its way upstream),
    and nothing after."""
    size = 8 * 2**20
    pdf = json.dumps({"message": [file_block("application/pdf", size // 4 * 3)]}).encode()
    charged = len(pdf) + json_values(pdf, 10**9) * BYTES_PER_VALUE
    assert held_copies(make_replica, upstream, pdf, charged, 8) <= BODY_COPIES


def test_the_densest_bodies_are_charged_what_they_become(make_replica, upstream):
    """1,000 turns of four one-letter blocks: 157 KB of JSON that held 1 MB once parsed
    (6.5 copies of its bytes, 9 in RSS), when only its bytes counted. Each of its JSON values
    is charged BYTES_PER_VALUE too, and the arithmetic holds again."""
    roles = ("user", "assistant")
    turns = [
        {"role": roles[i % 2], "content": [{"type": "text", "text": "a"}] * 4} for i in range(999)
    ]
    body = json.dumps({"messages": turns}).encode()
    charged = len(body) + json_values(body, 10**9) * BYTES_PER_VALUE
    assert charged > 6 * len(body)
    assert held_copies(make_replica, upstream, body, charged, 20, large=False) <= BODY_COPIES
