"""Protection, limits, retries and observability, against the relay under uvicorn."""

import asyncio
import random
import re

import httpx2
import pytest

from tests.fake_upstream import answer, error_event, http_error, message_start, plain, text_block
from tests.support import PROMPTLY, RawClient, post_chat

STALL = [message_start(), *text_block(0, ["held "])[:-1], ("stall",)]


def metric(relay, name: str, labels: str = "") -> float:
    text = httpx2.get(f"{relay.url}/metrics").text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# ---- the relay token ----------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong-token",
        "Basic dG9rZW4=",
        "Bearer",
        "s3cret-token",
        "Bearer s3cret-tokenX",
    ],
)
def test_token_required_and_checked(make_relay, upstream, header):
    relay = make_relay(relay_token="s3cret-token")
    headers = {"authorization": header} if header else {}
    reply = post_chat(relay, {"message": "hi"}, headers=headers)
    assert reply.status == 401
    assert reply.json()["error"]["type"] == "authentication_error"
    assert reply.headers["www-authenticate"] == "Bearer"
    assert upstream.requests == [], "the upstream must never be called without the token"


def test_right_token_streams(make_relay):
    relay = make_relay(relay_token="s3cret-token")
    reply = post_chat(relay, {"message": "hi"}, headers={"authorization": "bearer s3cret-token"})
    assert reply.status == 200 and reply.events[-1] == "done"


# ---- stream limits ------------------------------------------------------------------


async def hold_streams(relay, count: int, xff: str | None = None) -> list[RawClient]:
    clients = []
    for i in range(count):
        client = RawClient(relay.url, f"held {i} {xff}")
        await client.open(headers={"x-forwarded-for": xff} if xff else None)
        await client.read_until(b"event: delta")
        clients.append(client)
    return clients


def test_concurrency_limit_answers_503_at_once(make_relay, upstream):
    relay = make_relay(max_concurrent_streams=2, max_streams_per_client=10)
    upstream.default = STALL

    async def run():
        held = await hold_streams(relay, 2)
        reply = await asyncio.to_thread(post_chat, relay, {"message": "one more"})
        for client in held:
            client.hang_up()
        return reply

    reply = asyncio.run(run())
    assert reply.status == 503
    assert reply.headers["retry-after"] == "2"
    assert reply.json()["error"]["type"] == "overloaded_error"
    assert len(upstream.requests) == 2, "a refused stream must not reach the upstream"


def test_per_client_limit_answers_429_and_other_clients_pass(make_relay, upstream):
    relay = make_relay(max_concurrent_streams=10, max_streams_per_client=1)
    upstream.default = STALL

    async def run():
        held = await hold_streams(relay, 1, xff="203.0.113.7")
        same = await asyncio.to_thread(
            post_chat, relay, {"message": "x"}, headers={"x-forwarded-for": "203.0.113.7"}
        )
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 only because it is told to
        # (its --forwarded-allow-ips default): this one is another client.
        other = await hold_streams(relay, 1, xff="198.51.100.9")
        for client in held + other:
            client.hang_up()
        return same

    same = asyncio.run(run())
    assert same.status == 429
    assert same.headers["retry-after"] == "2"
    assert same.json()["error"]["type"] == "rate_limit_error"


def test_proxy_headers_are_ignored_unless_trusted(make_relay, upstream):
    # The app rewrites the client itself (app/identity.py), as uvicorn would: neither trusts.
    relay = make_relay(
        max_streams_per_client=1, forwarded_allow_ips="", server={"forwarded_allow_ips": ""}
    )
    upstream.default = STALL

    async def run():
        held = await hold_streams(relay, 1, xff="203.0.113.7")
        spoofed = await asyncio.to_thread(
            post_chat, relay, {"message": "x"}, headers={"x-forwarded-for": "198.51.100.9"}
        )
        for client in held:
            client.hang_up()
        return spoofed

    assert asyncio.run(run()).status == 429, "an untrusted X-Forwarded-For must not pick the key"


def test_slots_are_always_released_under_churn(make_relay, upstream, server_loop):
    relay = make_relay(
        max_concurrent_streams=8,
        max_streams_per_client=8,
        stream_idle_timeout=0.3,
        upstream_retries=0,
    )
    rng = random.Random(11)
    kinds = {
        "done": answer("a", "b", delay=0.01),
        "mid-error": [
            message_start(),
            *text_block(0, ["x"])[:-1],
            error_event("api_error", "boom"),
        ],
        "pre-error": http_error(500, "api_error", "boom"),
        "reset": [message_start(), ("reset",)],
        "idle": [message_start(), ("stall",)],
        "cancel": answer(*[f"w{i} " for i in range(200)], delay=0.01),
    }
    for name, script in kinds.items():
        upstream.by_message[name] = script

    async def one(i: int) -> int:
        name = rng.choice([*kinds, "bad"])
        client = RawClient(relay.url, name if name != "bad" else "")
        await client.open()
        if name == "cancel":
            await client.read_until(b"event: delta", rng.randint(1, 5))
        else:
            while chunk := await client.reader.read(65536):
                client.received += chunk
                if client.received.endswith(b"0\r\n\r\n") or b"content-length" in client.received:
                    break
        client.hang_up()
        return 0

    async def run() -> None:
        for start in range(0, 160, 8):  # eight at a time: exactly the limit
            await asyncio.gather(*(one(i) for i in range(start, start + 8)))

    asyncio.run(run())
    slots = relay.state.runtime.slots
    assert server_loop.wait_for(lambda: slots.active == 0 and not slots.by_client), (
        f"slots leaked: {slots.active} active, {slots.by_client}"
    )
    assert server_loop.call(lambda: len(relay.state.runtime.streams)) == 0
    # And all eight slots can be used again.
    upstream.default = STALL

    async def use_all_slots() -> None:
        for client in await hold_streams(relay, 8):
            client.hang_up()

    asyncio.run(use_all_slots())


# ---- CORS ---------------------------------------------------------------------------


def preflight(
    relay, origin: str, method: str = "POST", headers: str = "content-type", path: str = ""
) -> httpx2.Response:
    return httpx2.options(
        f"{relay.url}/api/chat{path}",
        headers={
            "origin": origin,
            "access-control-request-method": method,
            "access-control-request-headers": headers,
        },
    )


def test_no_cors_by_default(relay):
    assert (
        "access-control-allow-origin" not in preflight(relay, "https://elsewhere.example").headers
    )


def test_cors_for_the_listed_origins_only(make_relay):
    relay = make_relay(cors_origins="https://app.example, https://two.example")
    ok = preflight(relay, "https://app.example")
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in preflight(relay, "https://evil.example").headers


def test_cors_lets_an_allowed_origin_resume_and_stop(make_relay):
    # A front end on an allowed origin resumes with Last-Event-ID and stops with DELETE.
    relay = make_relay(cors_origins="https://app.example")
    path = "/" + "a" * 32
    resume = preflight(relay, "https://app.example", "GET", "last-event-id", path)
    assert resume.status_code == 200, resume.text
    assert "last-event-id" in resume.headers["access-control-allow-headers"].lower()
    stop = preflight(relay, "https://app.example", "DELETE", "authorization", path)
    assert stop.status_code == 200, stop.text
    assert "DELETE" in stop.headers["access-control-allow-methods"]


# ---- retries before the first delta -------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        http_error(529, "overloaded_error", "Overloaded"),
        http_error(500, "api_error", "boom"),
        [message_start(), error_event("overloaded_error", "Overloaded")],
        [message_start(), ("reset",)],
        [("reset",)],
    ],
    ids=["529", "500", "error-event-after-start", "reset-after-start", "reset-before-headers"],
)
def test_failures_before_the_first_delta_are_retried(make_relay, upstream, failure):
    relay = make_relay(upstream_retries=2)
    upstream.push(failure, failure, answer("Third ", "time."))
    reply = post_chat(relay)
    assert reply.status == 200
    assert reply.events == ["start", "delta", "delta", "done"]
    assert reply.text_out == "Third time."
    assert len(upstream.requests) == 3


def test_retries_are_bounded(make_relay, upstream):
    relay = make_relay(upstream_retries=2)
    upstream.push(*[http_error(529, "overloaded_error", "Overloaded")] * 5)
    assert post_chat(relay).status == 503
    assert len(upstream.requests) == 3


def test_mid_stream_retries_are_bounded_too(make_relay, upstream):
    relay = make_relay(upstream_retries=1)
    failing = [message_start(), error_event("overloaded_error", "Overloaded")]
    upstream.push(failing, failing, answer("never"))
    reply = post_chat(relay)
    assert reply.events == ["start", "error"]
    assert reply.frames[-1][1]["error"]["type"] == "overloaded_error"
    assert len(upstream.requests) == 2


@pytest.mark.parametrize(
    "failure",
    [
        http_error(429, "rate_limit_error", "slow down"),
        http_error(401, "authentication_error", "bad key"),
        http_error(400, "invalid_request_error", "bad"),
    ],
    ids=["429", "401", "400"],
)
def test_caller_errors_are_not_retried(make_relay, upstream, failure):
    relay = make_relay(upstream_retries=2)
    upstream.push(failure)
    assert post_chat(relay).status in (429, 502, 400)
    assert len(upstream.requests) == 1


def test_no_retry_once_text_reached_the_caller(make_relay, upstream):
    relay = make_relay(upstream_retries=2)
    upstream.push([message_start(), *text_block(0, ["Once "])[:-1], ("reset",)], answer("Twice"))
    reply = post_chat(relay)
    assert reply.events == ["start", "delta", "error"]
    assert reply.text_out == "Once "
    assert len(upstream.requests) == 1


# ---- what each stream cost, and how it ended -----------------------------------------


def test_log_line_and_metrics_per_stream(relay, upstream, relay_log, server_loop):
    before = {
        "done": metric(relay, "chat_relay_streams_completed_total"),
        "cancelled": metric(relay, "chat_relay_streams_cancelled_total"),
        "failed": metric(relay, "chat_relay_streams_failed_total", '{type="overloaded_error"}'),
        "in": metric(relay, "chat_relay_input_tokens_total", '{model="claude-sonnet-5-5"}'),
        "rejected": metric(
            relay, "chat_relay_rejected_requests_total", '{reason="invalid_request_error"}'
        ),
    }
    upstream.by_message["ok"] = answer("fine")
    upstream.by_message["fail"] = [
        message_start(),
        *text_block(0, ["x"])[:-1],
        error_event("overloaded_error", "o"),
    ]
    upstream.by_message["cancel"] = answer(*[f"w{i} " for i in range(300)], delay=0.02)
    post_chat(relay, {"message": "ok"})
    post_chat(relay, {"message": "fail"})
    post_chat(relay, {"message": ""})

    async def cancel():
        client = RawClient(relay.url, "cancel")
        await client.open()
        await client.read_until(b"event: delta", 5)
        client.hang_up()

    asyncio.run(cancel())
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 3, 3)

    by_outcome = {line["outcome"]: line for line in relay_log.chats}
    assert set(by_outcome) == {"done", "overloaded_error", "cancelled"}
    done, cancelled = by_outcome["done"], by_outcome["cancelled"]
    assert done["input_tokens"] == 12 and done["output_tokens"] == 87
    assert done["tokens_partial"] is False and done["status"] == 200
    assert done["ttft_ms"] is not None and done["duration_ms"] >= done["ttft_ms"]
    assert re.fullmatch(r"[0-9a-f]{32}", done["request_id"])
    # A cancelled stream still says what it cost: input from message_start, output so far.
    assert cancelled["input_tokens"] == 12
    assert cancelled["deltas"] >= 5 and cancelled["output_tokens"] >= cancelled["deltas"]
    assert cancelled["tokens_partial"] is True
    assert "messages" not in done  # no content unless LOG_CONTENT=true

    assert metric(relay, "chat_relay_streams_completed_total") == before["done"] + 1
    assert metric(relay, "chat_relay_streams_cancelled_total") == before["cancelled"] + 1
    failed = metric(relay, "chat_relay_streams_failed_total", '{type="overloaded_error"}')
    assert failed == before["failed"] + 1
    tokens_in = metric(relay, "chat_relay_input_tokens_total", '{model="claude-sonnet-5-5"}')
    assert tokens_in == before["in"] + 36
    rejected = metric(
        relay, "chat_relay_rejected_requests_total", '{reason="invalid_request_error"}'
    )
    assert rejected == before["rejected"] + 1
    assert metric(relay, "chat_relay_active_streams") == 0
    assert (
        "chat_relay_time_to_first_delta_seconds_bucket" in httpx2.get(f"{relay.url}/metrics").text
    )


def test_content_is_logged_only_when_asked(make_relay, relay_log, server_loop):
    relay = make_relay(log_content=True)
    post_chat(relay, {"message": "log me"})
    # The line is written once the response has ended, just after its last byte left.
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1)
    line = relay_log.chats[-1]
    # What went upstream, prompt caching's mark included.
    assert plain(line["messages"]) == [{"role": "user", "content": "log me"}]


def test_request_id(relay, relay_log, server_loop):
    r = httpx2.get(f"{relay.url}/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    given = post_chat(relay, {"message": "hi"}, headers={"x-request-id": "trace-42.abc"})
    assert given.headers["x-request-id"] == "trace-42.abc"
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1)
    assert relay_log.chats[-1]["request_id"] == "trace-42.abc"
    for bad in ("x" * 200, "evil\tinjection", "a b"):
        r = httpx2.get(f"{relay.url}/healthz", headers={"x-request-id": bad})
        assert r.headers["x-request-id"] != bad


def test_a_caller_gone_during_a_retry_does_not_start_the_next_attempt(
    make_relay, upstream, server_loop
):
    relay = make_relay(upstream_retries=2, upstream_retry_backoff=0.3)
    upstream.by_message["retry me"] = [message_start(), error_event("overloaded_error", "o")]

    async def run() -> None:
        client = RawClient(relay.url, "retry me")
        await client.open()
        await client.read_until(b"HTTP/1.1 200")
        upstream.by_message["retry me"] = answer(*[f"w{i} " for i in range(200)], delay=0.02)
        client.hang_up()  # during the backoff before the second attempt
        await asyncio.sleep(1.0)

    asyncio.run(run())
    # No second attempt was opened for a caller who had left.
    assert len(upstream.requests) == 1
    assert server_loop.wait_for(lambda: upstream.responses_in_flight() == 0)


def test_a_caller_gone_while_reconnecting_stops_the_new_attempt(make_relay, upstream, server_loop):
    relay = make_relay(upstream_retries=2)
    # The second attempt's upstream never answers: only the stream's own end can stop it.
    upstream.push([message_start(), error_event("overloaded_error", "o")], [("hang",)])

    async def run() -> RawClient:
        client = RawClient(relay.url, "reconnect")
        await client.open()
        await client.read_until(b"HTTP/1.1 200")
        assert server_loop.wait_for(lambda: len(upstream.requests) == 2, 2)
        await asyncio.sleep(0.05)  # the second attempt is waiting for its headers
        client.hang_up()
        return client

    client = asyncio.run(run())
    second = server_loop.call(lambda: upstream.requests[1].conn)
    assert server_loop.wait_for(lambda: second.closed is not None, 2), (
        "the new attempt went on for a caller who had left"
    )
    assert second.closed - client.closed_at < PROMPTLY
