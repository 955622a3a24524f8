"""The SSE response (sse-starlette's): a caller that stops reading without closing is
ended after SEND_TIMEOUT, like one that leaves."""

import asyncio

from tests.fake_upstream import message_end, message_start
from tests.support import raw_post


def test_a_caller_that_stops_reading_is_ended_after_the_send_timeout(
    make_relay, upstream, server_loop, relay_log
):
    relay = make_relay(send_timeout=0.5)
    runtime = relay.state.runtime
    upstream.default = [message_start(), ("flood", 100_000, "x" * 300), *message_end()]

    async def run() -> None:
        _, writer = await raw_post(relay.url, b'{"message": "never read"}')
        # Hold the connection open and read nothing, as a stuck client would.
        conn_closed = await asyncio.to_thread(
            server_loop.wait_for,
            lambda: bool(upstream.requests) and upstream.requests[0].conn.closed is not None,
            10,
        )
        writer.close()
        assert conn_closed, "the upstream stayed open for a caller that stopped reading"

    asyncio.run(run())
    assert server_loop.wait_for(lambda: runtime.slots.active == 0 and not runtime.streams, 2)
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1, 2)
    assert relay_log.chats[0]["outcome"] == "send_timeout"
    # The stream's own line says why; no traceback, no "ASGI callable returned" error.
    assert "Traceback" not in relay_log.text
    assert "ASGI callable" not in relay_log.text
