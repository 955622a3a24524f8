"""More than one replica, through a real Redis: two relay processes share resumable
streams (resumed and stopped through the other), the per-client limit, and survive Redis
going away."""

import asyncio
import json
import re
import signal
import socket
import time
from types import SimpleNamespace

import httpx2
import pytest

from app.cluster import Cluster
from app.keys import owner_key
from tests.fake_upstream import answer, message_start, text_block
from tests.support import (
    PROMPTLY,
    WORDS,
    RedisServer,
    frames_with_ids,
    open_and_drop,
    resume,
    text_of,
    two_hundred_resumed,
    ui_answer_interrupted,
    ui_body,
    upstream_request,
    usechat,
)


@pytest.fixture
def replicas(make_replica, redis_server):
    """Two relay processes sharing one Redis."""
    env = {"REDIS_URL": redis_server.url, "MAX_STREAMS_PER_CLIENT": "1000"}
    return make_replica(**env)[1], make_replica(**env)[1]


def test_a_stream_resumes_on_the_other_replica_exactly_once(replicas, upstream):
    a, b = replicas
    upstream.push(answer(*WORDS, delay=0.02))
    first = open_and_drop(a, 10)
    stream_id = first[0][2]["stream_id"]
    rest = frames_with_ids(resume(b, stream_id, first[-1][0]).text.split("\n"))
    frames = first + rest
    assert [f[0] for f in frames] == list(range(1, len(frames) + 1))  # each once, in order
    assert text_of(frames) == "".join(WORDS) and frames[-1][1] == "done"
    assert len(upstream.requests) == 1, "resuming must not ask the upstream again"
    # Finished: still readable from the start on either replica, for the window.
    assert frames_with_ids(resume(b, stream_id).text.split("\n")) == frames
    assert frames_with_ids(resume(a, stream_id).text.split("\n")) == frames


def test_delete_on_the_other_replica_stops_at_once(replicas, upstream, server_loop):
    a, b = replicas
    upstream.push(answer(*WORDS, delay=0.05))
    first = open_and_drop(a, 2, {"message": "stop me"})
    stream_id = first[0][2]["stream_id"]
    conn = upstream_request(upstream, server_loop, "stop me", timeout=5).conn
    with (
        httpx2.Client(timeout=10) as client,
        client.stream("GET", f"{b}/api/chat/{stream_id}") as reading,  # a reader on b
    ):
        lines = reading.iter_lines()
        assert next(lines).startswith("id: ")
        stopped = time.monotonic()
        assert httpx2.delete(f"{b}/api/chat/{stream_id}").status_code == 204
        rest = frames_with_ids(list(lines))
    assert server_loop.wait_for(lambda: conn.closed is not None, 2)
    assert conn.closed - stopped < PROMPTLY, "the stop must reach the producing replica"
    assert rest[-1][1] == "error" and rest[-1][2]["error"]["type"] == "cancelled"
    assert httpx2.delete(f"{b}/api/chat/{'x' * 32}").status_code == 404
    assert httpx2.get(f"{b}/api/chat/{'x' * 32}").status_code == 404


def test_a_second_reader_takes_over_across_replicas(replicas, upstream):
    a, b = replicas
    upstream.push(answer(*WORDS, delay=0.03))
    first = open_and_drop(a, 3)
    stream_id = first[0][2]["stream_id"]
    with (
        httpx2.Client(timeout=10) as client,
        client.stream("GET", f"{b}/api/chat/{stream_id}") as stale,
    ):
        stale_lines = stale.iter_lines()
        assert next(stale_lines).startswith("id: ")
        # The new reader (on the producing replica) closes the one on the other.
        newer = frames_with_ids(resume(a, stream_id).text.split("\n"))
        stale_frames = frames_with_ids(list(stale_lines))
    assert text_of(newer) == "".join(WORDS) and newer[-1][1] == "done"
    assert not stale_frames or stale_frames[-1][1] != "done", "the stale reader ran on"


def test_the_client_limit_holds_across_replicas_and_lapses_with_a_dead_one(
    make_replica, redis_server, upstream
):
    env = {"REDIS_URL": redis_server.url, "MAX_STREAMS_PER_CLIENT": "2"}
    env["REDIS_LEASE_SECONDS"] = "1"
    (_, a), (process_b, b) = make_replica(**env), make_replica(**env)
    upstream.default = answer(*WORDS, delay=0.1)  # 6 s: they stay open
    with (
        httpx2.Client(timeout=10) as client,
        client.stream("POST", f"{a}/api/chat", json={"message": "1"}) as one,
        client.stream("POST", f"{b}/api/chat", json={"message": "2"}) as two,
    ):
        assert one.status_code == two.status_code == 200
        third = client.post(f"{a}/api/chat", json={"message": "3"})
        assert third.status_code == 429, "two streams open on two replicas: at the limit"
        assert third.json()["error"]["type"] == "rate_limit_error"
        process_b.kill()  # b dies holding a lease; it lapses
        process_b.wait()
        time.sleep(1.5)
        assert client.post(f"{a}/api/chat", json={"message": "4"}).status_code == 200


def test_redis_going_away_spares_open_streams_and_plain_chats(make_replica, upstream, tmp_path):
    redis = RedisServer(tmp_path).start()
    try:
        _, a = make_replica(REDIS_URL=redis.url)
        upstream.by_message["long"] = answer(*WORDS, delay=0.02)
        with (
            httpx2.Client(timeout=10) as client,
            client.stream(
                "POST", f"{a}/api/chat", json={"message": "long", "resumable": True}
            ) as open_,
        ):
            lines = open_.iter_lines()
            head = next(lines)
            redis.stop()
            frames = frames_with_ids([head, *lines])
            assert text_of(frames) == "".join(WORDS) and frames[-1][1] == "done"
        refused = httpx2.post(f"{a}/api/chat", json={"message": "x", "resumable": True})
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "resume_unavailable"
        assert "resum" in refused.json()["error"]["message"].lower()
        plain = httpx2.post(f"{a}/api/chat", json={"message": "plain"})
        assert plain.status_code == 200 and "event: done" in plain.text
    finally:
        redis.stop()


def test_a_reader_hears_when_the_producing_replica_dies(make_replica, redis_server, upstream):
    env = {"REDIS_URL": redis_server.url, "REDIS_LEASE_SECONDS": "1"}
    (process_a, a), (_, b) = make_replica(**env), make_replica(**env)
    upstream.push([message_start(), *text_block(0, ["one ", "two "])[:-1], ("stall",)])
    first = open_and_drop(a, 2)
    process_a.kill()
    reply = resume(b, first[0][2]["stream_id"], first[-1][0])
    last = [line for line in reply.text.split("\n") if line.startswith("data: ")][-1]
    assert json.loads(last[6:])["error"]["type"] == "upstream_error"


def test_two_hundred_streams_resumed_half_on_the_other_replica(
    make_replica, redis_server, upstream
):
    env = {"REDIS_URL": redis_server.url, "MAX_STREAMS_PER_CLIENT": "1000"}
    env["MAX_READING_REQUESTS"] = "1000"  # 200 arrivals a second, on a loaded machine
    replicas = [make_replica(**env)[1], make_replica(**env)[1]]
    waits = two_hundred_resumed(replicas, upstream, seed=20)
    print(f"\nresume to first replayed frame, 200 streams, two replicas: {waits}")


def test_ids_that_cannot_be_ours_cost_redis_nothing(make_relay, redis_server):
    relay = make_relay(redis_url=redis_server.url)

    def exists_calls() -> int:
        with socket.create_connection(("127.0.0.1", redis_server.port)) as s:
            s.sendall(b"INFO commandstats\r\n")
            time.sleep(0.1)
            stats = s.recv(65536)
        found = re.search(rb"cmdstat_exists:calls=(\d+)", stats)
        return int(found.group(1)) if found else 0

    before = exists_calls()
    with httpx2.Client(timeout=10) as client:
        for attempt in ("x" * 8000, "=" * 32, "a" * 31, "%00" * 32):
            assert client.get(f"{relay.url}/api/chat/{attempt}").status_code in (404, 414)
            assert client.delete(f"{relay.url}/api/chat/{attempt}").status_code in (404, 414)
        huge = {"last-event-id": "9" * 8000}
        assert client.get(f"{relay.url}/api/chat/{'a' * 32}", headers=huge).status_code == 400
    assert exists_calls() == before, "a malformed id must be refused before Redis"
    # A well-formed unknown id costs one call.
    assert httpx2.get(f"{relay.url}/api/chat/{'a' * 32}").status_code == 404
    assert exists_calls() == before + 1


# A bad day for Redis -----------------------------------------------------------------


def test_a_resume_after_redis_restarted_empty_serves_no_gap(make_replica, upstream, tmp_path):
    redis = RedisServer(tmp_path).start()
    try:
        env = {"REDIS_URL": redis.url, "REDIS_LEASE_SECONDS": "1"}
        (_, a), (_, b) = make_replica(**env), make_replica(**env)
        upstream.push(answer(*WORDS[:12], delay=0.5))  # slow: Redis restarts between writes
        first = open_and_drop(a, 3)
        redis.stop()
        redis.start()  # the same port, empty
        time.sleep(1.2)  # a delta or two written after the restart
        frames = frames_with_ids(resume(b, first[0][2]["stream_id"]).text.split("\n"))
    finally:
        redis.stop()
    assert [f[0] for f in frames] == list(range(1, len(frames) + 1)), "a gap was served"
    assert frames[0][1] == "start"
    assert frames[-1][1] == "done", frames[-2:]  # not a false "replica went away"
    assert text_of(frames) == "".join(WORDS[:12])


def test_the_heartbeat_sets_owner_keys_again_after_redis_lost_them(tmp_path):
    redis = RedisServer(tmp_path).start()
    stream = SimpleNamespace(outcome=None, remote_token=None, chat_id=None)

    async def run() -> tuple[bool, int]:
        lost = []
        cluster = Cluster(redis.url, 10.0, {"o" * 32: stream}, 100)  # type: ignore[dict-item]
        cluster.on_lost = lambda: lost.append(1)
        await cluster.beat()
        redis.stop()
        redis.start()  # empty: the owner key is gone, and PEXPIRE cannot bring it back
        await cluster.beat()
        back = bool(await cluster.redis.exists(owner_key("o" * 32)))
        await cluster.close()
        return back, len(lost)

    try:
        back, lost = asyncio.run(run())
    finally:
        redis.stop()
    assert back, "a live stream's owner key must survive a Redis restart"
    assert lost == 1, "a restart is noticed: the mirror writes everything again"


def test_a_lost_left_message_still_starts_the_window(
    make_replica, redis_server, upstream, server_loop
):
    # The reading replica dies: no `left` is ever published. Its reader lease lapses, and
    # the producer's window starts then, instead of the answer running to its end unread.
    env = {"REDIS_URL": redis_server.url, "REDIS_LEASE_SECONDS": "1", "RESUME_WINDOW": "2"}
    (_, a), (process_b, b) = make_replica(**env), make_replica(**env)
    upstream.push(answer(*WORDS, delay=0.3, output_tokens=60))  # 18 s
    first = open_and_drop(a, 1, {"message": "read elsewhere"})
    conn = upstream_request(upstream, server_loop, "read elsewhere").conn
    with (
        httpx2.Client(timeout=10) as client,
        client.stream("GET", f"{b}/api/chat/{first[0][2]['stream_id']}") as reading,
    ):
        lines = reading.iter_lines()  # kept: a dropped iterator closes the connection
        assert next(lines).startswith("id: ")
        time.sleep(2.5)  # past the window: the reader on b is what keeps it going
        assert server_loop.call(lambda: conn.closed) is None
        process_b.kill()
        killed = time.monotonic()
    closed = server_loop.wait_for(lambda: conn.closed is not None, 8)
    assert closed, "the answer ran on with nobody reading it"
    # The lease (1 s), a heartbeat to notice it, then the window (2 s).
    assert conn.closed - killed < 5


def test_a_hung_redis_delays_no_chat(make_relay, upstream, tmp_path):
    redis = RedisServer(tmp_path).start()
    try:
        relay = make_relay(redis_url=redis.url)
        assert httpx2.post(f"{relay.url}/api/chat", json={"message": "warm"}).status_code == 200
        redis.process.send_signal(signal.SIGSTOP)  # answers nothing, refuses nothing
        waits = []
        with httpx2.Client(timeout=30) as client:
            for n in range(6):
                started = time.monotonic()
                with client.stream("POST", f"{relay.url}/api/chat", json={"message": str(n)}) as r:
                    assert r.status_code == 200
                    waits.append(time.monotonic() - started)
            started = time.monotonic()
            resumable = client.post(
                f"{relay.url}/api/chat", json={"message": "r", "resumable": True}
            )
            resumable_wait = time.monotonic() - started
            started = time.monotonic()
            resumed = client.get(f"{relay.url}/api/chat/{'a' * 32}")
            resume_wait = time.monotonic() - started
        redis.process.send_signal(signal.SIGCONT)
    finally:
        redis.stop()
    print(f"\nplain chats' first bytes with Redis hung: {[round(w, 3) for w in waits]} s")
    assert max(waits) < 1.0, "plain chats must not wait for a hung Redis"
    assert resumable.status_code == 503 and resumable_wait < 2.0
    assert resumable.json()["error"]["type"] == "resume_unavailable"
    assert resumed.status_code == 503 and resume_wait < 2.0


def test_past_the_end_elsewhere_is_204_at_once_and_remote_readers_are_capped(
    make_replica, redis_server, upstream
):
    env = {"REDIS_URL": redis_server.url, "MAX_STREAMS_PER_CLIENT": "1000"}
    (_, a), (_, b) = make_replica(**env), make_replica(**env, MAX_CONCURRENT_STREAMS="1")
    upstream.push(answer("a", "b"))
    done = frames_with_ids(
        httpx2.post(f"{a}/api/chat", json={"message": "x", "resumable": True}).text.split("\n")
    )
    stream_id, last = done[0][2]["stream_id"], done[-1][0]
    time.sleep(0.3)  # written to Redis
    started = time.monotonic()
    assert resume(b, stream_id, last).status_code == 204
    assert time.monotonic() - started < 1.0
    # Each remote reader holds a Redis connection: b serves at most MAX_CONCURRENT_STREAMS.
    upstream.default = answer(*WORDS, delay=0.05)
    ids = [open_and_drop(a, 1)[0][2]["stream_id"] for _ in range(2)]
    with (
        httpx2.Client(timeout=10) as client,
        client.stream("GET", f"{b}/api/chat/{ids[0]}") as one,
    ):
        assert one.status_code == 200
        second = client.get(f"{b}/api/chat/{ids[1]}")
        assert second.status_code == 503 and second.json()["error"]["type"] == "overloaded_error"


def test_a_usechat_answer_resumes_and_stops_through_the_other_replica(
    replicas, upstream, server_loop
):
    a, b = replicas
    chat = "chatAcrossReplicas01"
    upstream.push(answer(*WORDS, delay=0.03))
    dropped = usechat(a, "drop", chat, chunks=5)
    assert dropped["chunks"][0] == "start"
    resumed = usechat(b, "resume", chat)
    assert resumed["text"] == "".join(WORDS) and len(upstream.requests) == 1
    assert usechat(b, "resume", chat) == {"none": True}  # finished: nothing runs
    # A second answer of the chat, stopped through the other replica.
    upstream.push(answer(*WORDS, delay=0.05))
    url = f"{b}/api/chat/{chat}/stream"
    rest, stopped, status = ui_answer_interrupted(
        a, ui_body(chat, resumable=True), lambda c: c.delete(url).status_code
    )
    assert status == 204
    conn = server_loop.call(lambda: upstream.requests[-1].conn)
    assert server_loop.wait_for(lambda: conn.closed is not None, 2)
    assert conn.closed - stopped < PROMPTLY
    assert rest[-2:] == [{"type": "abort"}, "[DONE]"]
