"""Demo mode: no key, the embedded upstream, the very same relay path."""

import asyncio
import time
import tracemalloc

import httpx2

from app.config import Settings
from app.demo import _usage
from tests.support import RawClient, file_block, post_chat


def demo_relay(make_relay, **settings):
    return make_relay(anthropic_api_key=None, anthropic_base_url=None, **settings)


def test_without_a_key_the_mode_is_demo(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    assert Settings(_env_file=None).mode == "demo"
    assert Settings(_env_file=None, anthropic_api_key="  ").mode == "demo"
    assert Settings(_env_file=None, anthropic_api_key="sk-x").mode == "live"
    assert Settings(_env_file=None, anthropic_base_url="http://compatible:8080").mode == "live"


def test_demo_streams_and_says_it_is_a_demo(make_relay, upstream):
    relay = demo_relay(make_relay, demo_token_delay=0)
    assert httpx2.get(f"{relay.url}/readyz").json() == {"status": "ready", "mode": "demo"}

    reply = post_chat(relay, {"message": "What is   the\nspeed of light?"})
    assert reply.status == 200
    name, start = reply.frames[0]
    assert name == "start" and start["mode"] == "demo" and start["id"].startswith("msg_demo_")
    assert reply.events.count("delta") > 20
    assert "Demo mode" in reply.text_out
    assert "What is the speed of light?" in reply.text_out
    done = reply.frames[-1][1]
    assert done["stop_reason"] == "end_turn" and done["usage"]["output_tokens"] > 20
    assert upstream.requests == [], "demo mode must not touch the network upstream"


def test_demo_honours_max_tokens_and_the_conversation(make_relay):
    relay = demo_relay(make_relay, demo_token_delay=0)
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    reply = post_chat(relay, {"messages": messages, "max_tokens": 5})
    assert reply.events.count("delta") == 5
    assert reply.frames[-1][1]["stop_reason"] == "max_tokens"
    full = post_chat(relay, {"messages": messages})
    assert "2 user turns" in full.text_out and "“three”" in full.text_out


def test_demo_streams_at_a_human_pace(make_relay):
    relay = demo_relay(make_relay)  # the default pace
    stamps = []
    with (
        httpx2.Client(timeout=30) as client,
        client.stream("POST", f"{relay.url}/api/chat", json={"message": "pace"}) as response,
    ):
        for line in response.iter_lines():
            if line == "event: delta":
                stamps.append(time.monotonic())
                if len(stamps) == 21:
                    break
    rate = 20 / (stamps[-1] - stamps[0])
    # "Tens of tokens per second": readable as it arrives, not instant.
    assert 8 < rate < 100, f"{rate:.1f} tokens/s"


def test_a_demo_chat_the_caller_leaves_is_cancelled_at_once(make_relay, relay_log, server_loop):
    # The demo upstream is a generator, not a socket: nothing fails its pending read when
    # the caller goes, so only the stream's own cancel scope can end it.
    relay = demo_relay(make_relay, demo_token_delay=0.05)
    runtime = relay.state.runtime

    async def run() -> RawClient:
        client = RawClient(relay.url, "A long answer, please")
        await client.open()
        await client.read_until(b"event: delta")
        client.hang_up()
        return client

    client = asyncio.run(run())
    assert server_loop.wait_for(lambda: not runtime.streams, 2), "the demo stream ran on"
    ended_after = time.monotonic() - client.closed_at
    assert ended_after < 0.1, f"the demo stream ended {ended_after * 1000:.0f} ms after the caller"
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1, 1)
    line = relay_log.chats[0]
    assert line["outcome"] == "cancelled" and line["mode"] == "demo"
    assert line["deltas"] < 10


def test_the_demo_reports_cache_reads_on_later_turns(make_relay):
    relay = demo_relay(make_relay, demo_token_delay=0)
    first = post_chat(relay, {"message": "one two three"}).frames[-1][1]["usage"]
    assert first["cache_read_input_tokens"] == 0 and first["cache_creation_input_tokens"] == 3
    turns = [
        {"role": "user", "content": "one two three"},
        {"role": "assistant", "content": "four five"},
        {"role": "user", "content": "six"},
    ]
    later = post_chat(relay, {"messages": turns}).frames[-1][1]["usage"]
    assert later["cache_read_input_tokens"] == 3 and later["cache_creation_input_tokens"] == 3
    off = demo_relay(make_relay, demo_token_delay=0, prompt_caching="off")
    plain = post_chat(off, {"messages": turns}).frames[-1][1]["usage"]
    assert plain["input_tokens"] == 6 and "cache_read_input_tokens" not in plain


def test_the_demo_thinks_when_asked(make_relay):
    relay = demo_relay(make_relay, demo_token_delay=0)
    reply = post_chat(relay, {"message": "Why is the sky blue?", "thinking": True})
    events = reply.events
    assert events[0] == "start" and events[1] == "thinking" and events[-1] == "done"
    assert events.index("delta") > max(i for i, e in enumerate(events) if e == "thinking")
    thought = "".join(data["text"] for name, data in reply.frames if name == "thinking")
    assert "Why is the sky blue?" in thought and "signature" not in reply.text
    assert "thinking" not in post_chat(relay, {"message": "No thinking"}).events


def test_the_demo_says_what_was_attached(make_relay):
    relay = demo_relay(make_relay, demo_token_delay=0)
    content = [
        {"type": "text", "text": "Look"},
        file_block("image/png", 300 * 1024),
        file_block("application/pdf", 2048),
    ]
    reply = post_chat(relay, {"message": content})
    assert reply.status == 200
    assert "“Look” with 2 attachments (image/png of 300 KB, application/pdf of 2 KB)" in (
        reply.text_out
    )


def test_a_long_conversation_costs_the_demo_a_bounded_count(make_relay):
    """The demo counted input tokens by splitting the whole conversation into words: 49 MB
    and 100 ms for 2 MB. Now each text is counted on at most its first 64 KiB."""
    text = "word " * 400_000  # 2 MB in one turn
    request = {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
    tracemalloc.start()
    try:
        usage = _usage(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 390_000 <= usage["input_tokens"] <= 410_000
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MB"
    relay = demo_relay(make_relay, demo_token_delay=0)
    reply = post_chat(relay, {"message": text})
    assert reply.status == 200 and reply.frames[-1][1]["usage"]["cache_creation_input_tokens"]
