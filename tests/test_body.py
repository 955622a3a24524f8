"""Request bodies are read within bounds: a deadline, a cap on how many at once, and a
caller who leaves mid-upload is one log line."""

import asyncio
import json

from tests.support import raw_post


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
