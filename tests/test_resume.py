"""Resumable answers (in one process): a dropped connection resumes where it stopped with
no text lost or repeated and no second upstream request; DELETE stops at once; a stream
nobody comes back to expires."""

import time

import httpx2

from tests.fake_upstream import answer, message_start, text_block
from tests.support import (
    PROMPTLY,
    WORDS,
    frames_with_ids,
    open_and_drop,
    resume,
    text_of,
    two_hundred_resumed,
)


def test_a_dropped_answer_resumes_exactly_once(make_relay, upstream, server_loop, relay_log):
    relay = make_relay()
    upstream.push(answer(*WORDS, delay=0.02))
    first = open_and_drop(relay.url, 10)
    start = first[0]
    assert start[1] == "start" and len(start[2]["stream_id"]) >= 22  # >= 128 random bits
    rest = frames_with_ids(resume(relay.url, start[2]["stream_id"], first[-1][0]).text.split("\n"))
    frames = first + rest
    assert [f[0] for f in frames] == list(range(1, len(frames) + 1))  # each once, in order
    assert text_of(frames) == "".join(WORDS)
    assert frames[-1][1] == "done"
    assert len(upstream.requests) == 1, "resuming must not ask the upstream again"
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1, 2)
    assert relay_log.chats[0]["resumes"] == 1  # the log line counts the comeback


def test_a_finished_answer_replays_from_the_start_without_last_event_id(relay, upstream):
    upstream.push(answer("a", "b", "c"))
    reply = httpx2.post(f"{relay.url}/api/chat", json={"message": "x", "resumable": True})
    frames = frames_with_ids(reply.text.split("\n"))
    again = frames_with_ids(resume(relay.url, frames[0][2]["stream_id"]).text.split("\n"))
    assert again == frames and frames[-1][1] == "done"


def test_unknown_ids_and_tokens(make_relay, upstream):
    relay = make_relay(relay_token="s3cret")
    assert resume(relay.url, "nope", authorization="Bearer s3cret").status_code == 404
    assert resume(relay.url, "nope").status_code == 401
    assert (
        httpx2.delete(
            f"{relay.url}/api/chat/nope", headers={"authorization": "Bearer s3cret"}
        ).status_code
        == 404
    )


def test_delete_stops_at_once_and_the_reader_hears_it(make_relay, upstream, server_loop):
    relay = make_relay()
    upstream.push(answer(*WORDS, delay=0.05))
    lines: list[str] = []
    with (
        httpx2.Client(timeout=10) as client,
        client.stream(
            "POST", f"{relay.url}/api/chat", json={"message": "stop me", "resumable": True}
        ) as reply,
    ):
        stream_id = None
        stopped_at = 0.0
        for line in reply.iter_lines():
            lines.append(line)
            frames = frames_with_ids(lines)
            if stream_id is None and frames:
                stream_id = frames[0][2]["stream_id"]
                stopped_at = time.monotonic()
                assert httpx2.delete(f"{relay.url}/api/chat/{stream_id}").status_code == 204
    frames = frames_with_ids(lines)
    assert frames[-1][1] == "error" and frames[-1][2]["error"]["type"] == "cancelled"
    conn = server_loop.call(lambda: upstream.requests[0].conn)
    assert server_loop.wait_for(lambda: conn.closed is not None, 2)
    assert conn.closed - stopped_at < PROMPTLY


def test_a_stream_nobody_resumes_expires(make_relay, upstream, server_loop, relay_log):
    relay = make_relay(resume_window=0.3)
    runtime = relay.state.runtime
    upstream.push([message_start(), *text_block(0, ["one ", "two "])[:-1], ("stall",)])
    first = open_and_drop(relay.url, 2)
    conn = server_loop.call(lambda: upstream.requests[0].conn)
    assert server_loop.wait_for(lambda: conn.closed is not None, 2), "it ran on past the window"
    assert server_loop.wait_for(lambda: runtime.slots.active == 0, 1)
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1, 1)
    assert relay_log.chats[0]["outcome"] == "expired" and relay_log.chats[0]["deltas"] == 2
    stream_id = first[0][2]["stream_id"]
    # Within the window a replay says how it ended (never just an end of the body), so a
    # client can tell it from a dropped connection; after the window, 404.
    replay = frames_with_ids(resume(relay.url, stream_id).text.split("\n"))
    assert text_of(replay) == "one two " and replay[-1][1] == "error"
    assert replay[-1][2]["error"]["type"] == "expired"
    assert server_loop.wait_for(lambda: runtime.kept.get(stream_id) is None, 2)
    assert resume(relay.url, stream_id).status_code == 404


def test_without_resumable_nothing_changes(make_relay, upstream, server_loop):
    relay = make_relay()
    reply = httpx2.post(f"{relay.url}/api/chat", json={"message": "plain"})
    assert "id: " not in reply.text and "stream_id" not in reply.text
    off = make_relay(resume_window=0)  # resuming turned off: `resumable` changes nothing
    upstream.push(answer(*WORDS, delay=0.02))
    frames = open_and_drop(off.url, 3)
    assert all(f[0] == 0 for f in frames) and "stream_id" not in frames[0][2]
    conn = server_loop.call(lambda: upstream.requests[-1].conn)
    assert server_loop.wait_for(lambda: conn.closed is not None, 1), "a dropped caller must cancel"


def test_two_hundred_streams_dropped_and_resumed_at_random_points(make_relay, upstream):
    # 200 arrivals in a second, the relay and the fake upstream on one event loop: on a
    # loaded machine more than MAX_READING_REQUESTS (64) bodies can be arriving at once, and
    # an upstream's headers can take longer than the tests' 5 s idle timeout. Neither limit
    # is what this test is about.
    relay = make_relay(
        max_streams_per_client=1000, max_reading_requests=1000, stream_idle_timeout=30
    )
    # 20 deltas/s per stream, as in the bench: 200 streams, 4,000 deltas/s, one shared loop.
    waits = two_hundred_resumed([relay.url], upstream, seed=10)
    print(f"\nresume request to first replayed frame, 200 streams: {waits}")


def test_finished_answers_kept_for_resuming_have_a_byte_budget(make_relay, upstream):
    # Budget: 1 slot x 128 KiB. Each answer costs about 50 KB (frames and overhead).
    relay = make_relay(max_concurrent_streams=1)
    ids = []
    for _ in range(4):
        upstream.push(answer(*["x" * 40] * 600))
        reply = httpx2.post(f"{relay.url}/api/chat", json={"message": "x", "resumable": True})
        ids.append(frames_with_ids(reply.text.split("\n"))[0][2]["stream_id"])
    kept = relay.state.runtime.kept
    assert 0 < kept.nbytes <= kept.budget
    assert [resume(relay.url, i).status_code for i in ids] == [404, 404, 200, 200]


def test_a_frame_id_that_is_not_ascii_digits_is_a_400(relay, upstream, relay_log):
    upstream.push(answer("a"))
    reply = httpx2.post(f"{relay.url}/api/chat", json={"message": "x", "resumable": True})
    stream_id = frames_with_ids(reply.text.split("\n"))[0][2]["stream_id"]
    for odd in ("²".encode("latin-1"), b"\xd9\xa3", b"-1", b"1e3"):  # superscript, Arabic 3
        again = httpx2.get(f"{relay.url}/api/chat/{stream_id}", headers={"last-event-id": odd})
        assert again.status_code == 400, odd
        assert again.json()["error"]["type"] == "invalid_request_error"
    assert "Traceback" not in relay_log.text and "unhandled" not in relay_log.text


def test_past_the_end_of_a_finished_answer_is_204(relay, upstream):
    # What the SSE standard tells a client (a browser's EventSource) to stop reconnecting.
    upstream.push(answer("a", "b"))
    reply = httpx2.post(f"{relay.url}/api/chat", json={"message": "x", "resumable": True})
    frames = frames_with_ids(reply.text.split("\n"))
    stream_id, last = frames[0][2]["stream_id"], frames[-1][0]
    assert resume(relay.url, stream_id, last).status_code == 204
    assert resume(relay.url, stream_id, last + 5).status_code == 204
    before = resume(relay.url, stream_id, last - 1)
    assert before.status_code == 200 and frames_with_ids(before.text.split("\n")) == frames[-1:]


def test_stream_ids_stay_out_of_the_access_log(make_relay, upstream, server_loop, relay_log):
    relay = make_relay({"log_level": "info"})  # uvicorn's access log on
    upstream.push(answer("a"))
    reply = httpx2.post(f"{relay.url}/api/chat", json={"message": "x", "resumable": True})
    stream_id = frames_with_ids(reply.text.split("\n"))[0][2]["stream_id"]
    resume(relay.url, stream_id)
    httpx2.delete(f"{relay.url}/api/chat/{stream_id}")
    assert server_loop.wait_for(lambda: relay_log.text.count("/api/chat/~") >= 2, 2), relay_log.text
    assert stream_id not in relay_log.text, "the id is the capability to read and stop it"


def test_readers_per_client_are_limited(make_relay, upstream, server_loop):
    relay = make_relay(max_streams_per_client=2)
    upstream.default = answer(*WORDS, delay=0.05)
    ids = [open_and_drop(relay.url, 1)[0][2]["stream_id"] for _ in range(2)]
    with (
        httpx2.Client(timeout=10) as client,
        client.stream("GET", f"{relay.url}/api/chat/{ids[0]}") as one,
        client.stream("GET", f"{relay.url}/api/chat/{ids[1]}") as two,
    ):
        assert one.status_code == two.status_code == 200
        third = client.get(f"{relay.url}/api/chat/{ids[0]}")
        assert third.status_code == 429, "two readers open: at the limit"
    # Readers that left give their place back.
    assert server_loop.wait_for(lambda: not relay.state.runtime.readers.by_client, 2)
    assert resume(relay.url, ids[0]).status_code == 200
