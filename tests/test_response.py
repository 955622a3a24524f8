"""The SSE response (sse-starlette's): a caller that stops reading without closing is
ended after SEND_TIMEOUT, like one that leaves."""

import asyncio
from urllib.parse import urlsplit

from tests.fake_upstream import message_end, message_start


def test_a_caller_that_stops_reading_is_ended_after_the_send_timeout(
    make_relay, upstream, server_loop, relay_log
):
    relay = make_relay(send_timeout=0.5)
    runtime = relay.state.runtime
    upstream.default = [message_start(), ("flood", 100_000, "x" * 300), *message_end()]
    url = urlsplit(relay.url)

    async def run() -> None:
        _, writer = await asyncio.open_connection(url.hostname, url.port)
        body = b'{"message": "never read"}'
        writer.write(
            b"POST /api/chat HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
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
