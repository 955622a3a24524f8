"""The watchdog (app/watchdog.py): what has waited longer than its timeout is ended within a
tick, and nothing else; a stream read slowly is not an idle one."""

import asyncio
import time

from app.watchdog import Watchdog
from tests.fake_upstream import message_end, message_start
from tests.support import raw_post


class Waiter:
    def __init__(self, since: float | None) -> None:
        self.waiting_since = since
        self.ended = 0.0

    def too_late(self) -> None:  # told again each tick until it ends: the first counts
        self.ended = self.ended or time.monotonic()


def test_only_the_late_are_ended_within_a_tick():
    async def run() -> tuple[list[Waiter], list[Waiter], float]:
        now = asyncio.get_running_loop().time()
        streams = [Waiter(now), Waiter(None), Waiter(now + 10)]
        dog = Watchdog(streams, idle=0.2, send=0.4)
        responses = [Waiter(now), Waiter(None)]
        dog.responses.update(responses)
        started = time.monotonic()
        dog.start()
        await asyncio.sleep(0.5)
        dog.stop()
        return streams, responses, started

    streams, responses, started = asyncio.run(run())
    assert 0.2 <= streams[0].ended - started < 0.2 + 0.05 + 0.1  # a tick is 0.05 s
    assert 0.4 <= responses[0].ended - started < 0.4 + 0.05 + 0.1
    assert [w.ended for w in (streams[1], streams[2], responses[1])] == [0.0, 0.0, 0.0]


def test_ticks_are_a_quarter_of_the_shortest_timeout_and_at_most_a_quarter_second():
    assert Watchdog([], idle=60, send=30).tick == 0.25
    assert Watchdog([], idle=0.4, send=30).tick == 0.1


def test_a_slow_reader_is_not_a_silent_upstream(make_relay, upstream, relay_log, server_loop):
    """The outbox full (the caller reads slowly) for longer than STREAM_IDLE_TIMEOUT: the
    stream waits for its reader, and is not ended as idle."""
    relay = make_relay(stream_idle_timeout=0.3, send_timeout=30)
    upstream.default = [message_start(), ("flood", 30_000, "x" * 300), *message_end()]

    async def run() -> bytes:
        reader, writer = await raw_post(relay.url, b'{"message": "read slowly"}')
        await asyncio.sleep(1.0)  # nothing read: the outbox fills, the upstream waits
        body = b""
        while b"event: done" not in body and b"event: error" not in body:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk
            body += chunk
        writer.close()
        return body

    body = asyncio.run(run())
    assert b"event: done" in body and b"timeout_error" not in body
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1)
    assert relay_log.chats[0]["outcome"] == "done"
