"""The `POST /api/chat` contract, frame by frame, over real HTTP on both sides."""

import pytest

from tests.fake_upstream import (
    answer,
    error_event,
    http_error,
    message_end,
    message_start,
    plain,
    text_block,
    thinking_block,
)
from tests.support import API_KEY, post_chat


def test_frames_headers_and_text(relay, upstream):
    upstream.push(answer("Hello", ", ", "world!", output_tokens=87))
    reply = post_chat(relay, {"message": "Say hello"})

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["x-accel-buffering"] == "no"
    frames = [f for f in reply.frames if f[0] != ":"]
    assert frames[0] == ("start", {"id": "msg_fake_0001", "model": "claude-test", "mode": "live"})
    assert frames[1:4] == [("delta", {"text": t}) for t in ("Hello", ", ", "world!")]
    assert frames[4] == (
        "done",
        {
            "done": True,
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 87},
        },
    )
    assert len(frames) == 5


def test_what_the_upstream_receives(relay, upstream):
    conversation = [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Follow-up"},
    ]
    body = {"messages": conversation, "system": "Be brief.", "model": "claude-x", "max_tokens": 77}
    assert post_chat(relay, body).events[-1] == "done"

    (request,) = upstream.requests
    # Prompt caching (on by default): breakpoints on the system prompt and the last turn.
    mark = {"type": "ephemeral"}
    follow_up = {"type": "text", "text": "Follow-up", "cache_control": mark}
    assert request.body == {
        "model": "claude-x",
        "max_tokens": 77,
        "messages": [*conversation[:2], {"role": "user", "content": [follow_up]}],
        "system": [{"type": "text", "text": "Be brief.", "cache_control": mark}],
        "stream": True,
    }
    # This SDK version authenticates with a bearer header; older ones sent x-api-key.
    sent = request.headers.get("authorization", "").removeprefix("Bearer ")
    assert API_KEY in (sent, request.headers.get("x-api-key"))


def test_defaults_for_model_and_max_tokens(make_relay, upstream):
    relay = make_relay(default_model="claude-default", default_max_tokens=321)
    post_chat(relay, {"message": "Hi"})
    body = upstream.requests[0].body
    assert (body["model"], body["max_tokens"]) == ("claude-default", 321)
    assert plain(body["messages"]) == [{"role": "user", "content": "Hi"}]
    assert "system" not in body


UNICODE_PIECES = [
    "naïve ",
    "日本語",
    " 🧑‍💻",
    " e\u0301",
    " \u202eRTL",
    ' \\ "quoted" \n new line\t',
    "\u2028",
]


def test_unicode_passes_unmodified(relay, upstream):
    upstream.push(answer(*UNICODE_PIECES))
    reply = post_chat(relay)
    assert [d["text"] for n, d in reply.frames if n == "delta"] == UNICODE_PIECES
    assert reply.text_out == "".join(UNICODE_PIECES)


def test_several_blocks_and_non_text_blocks_never_break_the_stream(relay, upstream):
    thinking = [
        (
            "event",
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
        ),
        (
            "event",
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Let me think"},
            },
        ),
        (
            "event",
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "abc"},
            },
        ),
        ("event", "content_block_stop", {"type": "content_block_stop", "index": 0}),
    ]
    tool = [
        (
            "event",
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {},
                },
            },
        ),
        (
            "event",
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
            },
        ),
        (
            "event",
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
            },
        ),
        ("event", "content_block_stop", {"type": "content_block_stop", "index": 2}),
    ]
    future = [
        ("event", "hologram_start", {"type": "hologram_start", "index": 4}),
        (
            "event",
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 4,
                "delta": {"type": "hologram_delta", "pixels": [1, 2]},
            },
        ),
        ("event", "ping", {"type": "ping"}),
    ]
    upstream.push(
        [
            message_start(),
            *thinking,
            *text_block(1, ["Before tool. "]),
            *tool,
            *text_block(3, ["After ", "tool."]),
            *future,
            *message_end(stop_reason="tool_use"),
        ]
    )
    reply = post_chat(relay)
    assert reply.events == ["start", "delta", "delta", "delta", "done"]
    assert reply.text_out == "Before tool. After tool."
    assert reply.frames[-1][1]["stop_reason"] == "tool_use"


def test_usage_carries_everything_the_upstream_reported(relay, upstream):
    upstream.push(
        [
            message_start(
                input_tokens=5, cache_creation_input_tokens=100, cache_read_input_tokens=2000
            ),
            *text_block(0, ["ok"]),
            *message_end(
                stop_reason="max_tokens",
                output_tokens=9,
                server_tool_use={"web_search_requests": 1},
            ),
        ]
    )
    done = post_chat(relay).frames[-1]
    assert done == (
        "done",
        {
            "done": True,
            "stop_reason": "max_tokens",
            "usage": {
                "input_tokens": 5,
                "output_tokens": 9,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 2000,
                "server_tool_use": {"web_search_requests": 1},
            },
        },
    )


def test_pings_while_the_upstream_is_silent(make_relay, upstream):
    relay = make_relay(ping_interval=0.2)
    upstream.push(
        [
            message_start(),
            *text_block(0, ["a"]),
            ("sleep", 1.1),
            *text_block(0, ["b"]),
            *message_end(),
        ]
    )
    reply = post_chat(relay)
    assert reply.text.count(": ping\n\n") >= 3
    names = [n for n, _ in reply.frames]
    # The pings fall in the silence, between the two deltas.
    first, second = names.index("delta"), len(names) - 1 - names[::-1].index("delta")
    assert names[first + 1 : second].count(":") >= 3
    assert reply.events == ["start", "delta", "delta", "done"]


# After the stream has started: exactly one error frame, no done.
@pytest.mark.parametrize(
    ("tail", "error_type"),
    [
        ([error_event("overloaded_error", "Overloaded")], "overloaded_error"),
        ([error_event("api_error", "Internal server error")], "api_error"),
        ([("reset",)], "upstream_error"),
        ([("truncate",)], "upstream_error"),
        ([("raw", b"event: content_block_delta\ndata: {not json}\n\n")], "upstream_error"),
        ([], "upstream_error"),  # a clean end of body without message_stop
        ([("stall",)], "timeout_error"),
    ],
    ids=[
        "error-event",
        "api-error-event",
        "reset",
        "truncated",
        "garbage",
        "no-message-stop",
        "stall",
    ],
)
def test_mid_stream_failures_end_with_one_error_frame(
    make_relay, upstream, server_loop, tail, error_type
):
    relay = make_relay(stream_idle_timeout=0.5)
    upstream.push([message_start(), *text_block(0, ["partial ", "answer"])[:-1], *tail])
    reply = post_chat(relay)

    assert reply.status == 200
    assert reply.events == ["start", "delta", "delta", "error"]
    assert reply.text_out == "partial answer"
    error = reply.frames[-1][1]["error"]
    assert error["type"] == error_type
    assert error["message"]
    assert server_loop.wait_for(lambda: upstream.responses_in_flight() == 0), (
        "the upstream response must not be left open"
    )


ORG_TEXT = "Org org_01SECRET has hit 4,000,000 tokens/min (tier 4)\n\u202egnp.live"


def test_upstream_error_text_mid_answer_goes_to_the_log_not_the_caller(
    make_relay, upstream, relay_log
):
    relay = make_relay(upstream_retries=0)
    upstream.push(
        [message_start(), *text_block(0, ["x"])[:-1], error_event("overloaded_error", ORG_TEXT)]
    )
    reply = post_chat(relay)
    assert reply.frames[-1] == (
        "error",
        {
            "error": {
                "type": "overloaded_error",
                "message": "The upstream is overloaded; try again shortly.",
            }
        },
    )
    assert "org_01SECRET" not in reply.text
    # The operator still sees it: escaped, on one line.
    line = next(line for line in relay_log.lines if "org_01SECRET" in line)
    assert "\n" not in line and "\u202e" not in line and "\\u202e" in line


def test_an_invented_upstream_error_type_is_not_passed_on(make_relay, upstream):
    relay = make_relay(upstream_retries=0)
    upstream.push([message_start(), *text_block(0, ["x"])[:-1], error_event("x" * 500, "made up")])
    assert post_chat(relay).frames[-1][1]["error"]["type"] == "upstream_error"


# Before the stream starts: a plain HTTP status with a JSON error body.
@pytest.mark.parametrize(
    ("script", "status", "error_type"),
    [
        (
            http_error(400, "invalid_request_error", "messages: too long for the model"),
            400,
            "invalid_request_error",
        ),
        (http_error(401, "authentication_error", "invalid x-api-key"), 502, "upstream_error"),
        (http_error(403, "permission_error", "no access"), 502, "upstream_error"),
        (http_error(404, "not_found_error", "model: claude-nope"), 400, "not_found_error"),
        (http_error(500, "api_error", "Internal server error"), 502, "upstream_error"),
        (http_error(529, "overloaded_error", "Overloaded"), 503, "overloaded_error"),
        ([error_event("overloaded_error", "Overloaded")], 503, "overloaded_error"),
        ([("reset",)], 502, "upstream_error"),
        ([("truncate",)], 502, "upstream_error"),
        ([("stall",)], 504, "timeout_error"),
    ],
    ids=[
        "400",
        "401",
        "403",
        "404",
        "500",
        "529",
        "error-event-first",
        "reset",
        "truncated",
        "stall",
    ],
)
def test_pre_stream_failures_are_plain_http(make_relay, upstream, script, status, error_type):
    relay = make_relay(stream_idle_timeout=0.5, upstream_retries=0)
    upstream.push(script)
    reply = post_chat(relay)
    assert reply.status == status
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    assert API_KEY not in reply.text


def test_upstream_400_message_is_passed_on(relay, upstream):
    upstream.push(http_error(400, "invalid_request_error", "prompt is too long: 300000 tokens"))
    assert post_chat(relay).json()["error"]["message"] == "prompt is too long: 300000 tokens"


def test_upstream_401_details_are_not_shown(relay, upstream):
    upstream.push(http_error(401, "authentication_error", "invalid x-api-key"))
    reply = post_chat(relay)
    assert "x-api-key" not in reply.text and "authentication" not in reply.text


def test_429_passes_on_retry_after_in_the_relays_words(relay, upstream):
    upstream.push(http_error(429, "rate_limit_error", ORG_TEXT, {"retry-after": "17"}))
    reply = post_chat(relay)
    assert reply.status == 429
    assert reply.headers["retry-after"] == "17"
    assert reply.json()["error"] == {
        "type": "rate_limit_error",
        "message": "The upstream is rate limiting this relay; try again in 17 s.",
    }
    assert len(upstream.requests) == 1, "a 429 is the caller's to retry, not the relay's"


def test_an_odd_retry_after_is_not_passed_on(relay, upstream):
    upstream.push(http_error(429, "rate_limit_error", "r", {"retry-after": "soon\x7f<script>"}))
    reply = post_chat(relay)
    assert reply.status == 429 and "retry-after" not in reply.headers


def test_unreachable_upstream_is_502(make_relay):
    relay = make_relay(
        anthropic_base_url="http://127.0.0.1:9", upstream_retries=0
    )  # nothing listens there
    reply = post_chat(relay)
    assert reply.status == 502
    assert reply.json()["error"]["type"] == "upstream_error"


def test_health_and_readiness(relay):
    import httpx2

    assert httpx2.get(f"{relay.url}/healthz").json() == {"status": "ok"}
    ready = httpx2.get(f"{relay.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "mode": "live"}


def test_an_egress_proxy_from_the_environment_is_used(make_relay, upstream, monkeypatch):
    # The fake upstream doubles as a forward proxy: it answers whatever it is asked.
    monkeypatch.setenv("HTTP_PROXY", upstream.url)
    relay = make_relay(anthropic_base_url="http://api.example.invalid")
    reply = post_chat(relay)
    assert reply.events[-1] == "done"
    assert upstream.requests[0].line == "POST http://api.example.invalid/v1/messages HTTP/1.1"


def test_a_message_start_that_is_not_an_object_is_a_clean_502(make_relay, upstream, server_loop):
    relay = make_relay(upstream_retries=0)
    bad_start = ("event", "message_start", {"type": "message_start", "message": "oops"})
    upstream.push([bad_start, ("stall",)])
    reply = post_chat(relay)
    assert reply.status == 502
    assert reply.json() == {
        "error": {"type": "upstream_error", "message": "The upstream sent an unreadable event."}
    }
    assert "content-security-policy" in reply.headers
    conn = server_loop.call(lambda: upstream.requests[0].conn)
    assert server_loop.wait_for(lambda: conn.closed is not None, 1), "the upstream was left open"


def test_thinking_on_request(make_relay, upstream):
    relay = make_relay()
    redacted = {"type": "redacted_thinking", "data": "REDACTED-abc"}
    redacted_start = {"type": "content_block_start", "index": 1, "content_block": redacted}
    thinking = [
        *thinking_block(0, ["Let me see."], signature="SIG-xyz"),
        ("event", "content_block_start", redacted_start),
        ("event", "content_block_stop", {"type": "content_block_stop", "index": 1}),
    ]
    upstream.push([message_start(), *thinking, *text_block(2, ["Blue."]), *message_end()])
    reply = post_chat(relay, {"message": "Why?", "thinking": True})
    assert reply.events == ["start", "thinking", "delta", "done"]
    assert reply.frames[1][1] == {"text": "Let me see."}
    assert "SIG-xyz" not in reply.text and "REDACTED-abc" not in reply.text
    assert upstream.requests[0].body["thinking"] == {"type": "adaptive", "display": "summarized"}
    upstream.push(answer("Plain."))
    post_chat(relay, {"message": "No thinking"})
    assert "thinking" not in upstream.requests[1].body
