"""The upstream client: the SDK's aiohttp transport, with no connection cap of its own and
connections kept for the next chat."""

import asyncio

from tests.fake_upstream import message_start, text_block
from tests.support import RawClient, post_chat

STALL = [message_start(), *text_block(0, ["held "])[:-1], ("stall",)]


def test_a_connection_is_reused_after_message_stop(relay, upstream):
    assert post_chat(relay).events[-1] == "done"
    assert post_chat(relay).events[-1] == "done"
    first, second = upstream.requests
    assert first.conn is second.conn, "the second chat opened a new upstream connection"


def test_no_connection_cap_but_max_concurrent_streams(make_relay, upstream, server_loop):
    # aiohttp caps a session at 100 connections unless told otherwise: the 101st stream
    # would wait for a free connection, silently, instead of streaming.
    streams = 120
    relay = make_relay(max_concurrent_streams=streams, max_streams_per_client=1000)
    upstream.default = STALL

    async def run() -> tuple[int, int]:
        clients = [RawClient(relay.url, f"held {i}") for i in range(streams)]
        await asyncio.gather(*(c.open() for c in clients))
        await asyncio.wait_for(
            asyncio.gather(*(c.read_until(b"event: delta") for c in clients)), 20
        )
        open_upstream = server_loop.call(upstream.open_connections)
        # One more than MAX_CONCURRENT_STREAMS: that limit, and only it, answers.
        extra = await asyncio.to_thread(post_chat, relay, {"message": "one more"})
        for client in clients:
            client.hang_up()
        return open_upstream, extra.status

    open_upstream, extra_status = asyncio.run(run())
    assert open_upstream >= streams
    assert extra_status == 503
    assert server_loop.wait_for(lambda: upstream.open_connections() == 0, 5)
