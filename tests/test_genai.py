"""Every chat a trace: the request's SERVER span, a CLIENT span per upstream request with
the GenAI conventions' attributes, and the client metrics, as a real OTLP/HTTP receiver
gets them from a relay under uvicorn."""

import httpx2

from tests.fake_upstream import answer, http_error, message_end, message_start, text_block
from tests.support import API_KEY, file_block, open_and_drop, post_chat, stop_relay, ui_body

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SERVER, CLIENT = 2, 3  # opentelemetry.proto's SpanKind
OK, ERROR = 1, 2


def chats(spans):
    return [s for s in spans if s.kind == CLIENT]


def test_a_chat_is_a_request_span_with_a_chat_span_for_its_upstream_request(
    make_relay, upstream, otlp, server_loop, relay_log
):
    relay = make_relay()
    start = message_start(cache_read_input_tokens=900, cache_creation_input_tokens=40)
    upstream.push([start, *text_block(0, ["Hello", " there"]), *message_end(output_tokens=7)])
    reply = post_chat(
        relay, {"message": "Hi", "max_tokens": 300}, headers={"traceparent": TRACEPARENT}
    )
    assert reply.events[-1] == "done"
    spans = otlp.wait_for_spans(lambda s: chats(s) and any(x.kind == SERVER for x in s))
    (request,) = [s for s in spans if s.kind == SERVER]
    (chat,) = chats(spans)
    # The caller's trace goes on: its span is the request span's parent.
    assert (request.trace_id, request.parent_id) == (TRACE_ID, PARENT_ID)
    assert (
        request.name == "POST /api/chat" and request.attributes["http.response.status_code"] == 200
    )
    assert (chat.trace_id, chat.parent_id) == (TRACE_ID, request.span_id)
    assert chat.name == "chat claude-sonnet-5-5"
    attributes = chat.attributes
    time_to_first_chunk = attributes.pop("gen_ai.response.time_to_first_chunk")
    assert 0 < time_to_first_chunk < 5
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-5-5",
        "gen_ai.request.max_tokens": 300,
        "gen_ai.request.stream": True,
        "gen_ai.response.id": "msg_fake_0001",
        "gen_ai.response.model": "claude-test",
        "gen_ai.response.finish_reasons": ["end_turn"],
        # The convention's rule for Anthropic: input + cache read + cache creation.
        "gen_ai.usage.input_tokens": 12 + 900 + 40,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.usage.cache_read.input_tokens": 900,
        "gen_ai.usage.cache_creation.input_tokens": 40,
        "server.address": "127.0.0.1",
        "server.port": int(upstream.url.rsplit(":", 1)[1]),
    }
    assert chat.status != ERROR
    assert chat.resource["service.name"] == "chat-relay"
    # The log line joins the trace, at the request's span.
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1, 2)
    line = relay_log.chats[0]
    assert (line["trace_id"], line["span_id"]) == (TRACE_ID, request.span_id)


def test_a_usechat_chat_id_is_the_conversation_id(make_relay, upstream, otlp):
    relay = make_relay()
    upstream.push(answer("ok"))
    body = ui_body("chat-0123456789abcdef")
    reply = httpx2.post(f"{relay.url}/api/chat", json=body, timeout=10)
    assert reply.status_code == 200 and "[DONE]" in reply.text
    (chat,) = chats(otlp.wait_for_spans(chats))
    assert chat.attributes["gen_ai.conversation.id"] == "chat-0123456789abcdef"


def test_a_retried_request_is_a_span_of_its_own(make_relay, upstream, otlp):
    relay = make_relay(upstream_retries=1)
    upstream.push(http_error(529, "overloaded_error", "busy"), answer("ok"))
    assert post_chat(relay).events[-1] == "done"
    spans = otlp.wait_for_spans(lambda s: len(chats(s)) == 2 and any(x.kind == SERVER for x in s))
    (request,) = [s for s in spans if s.kind == SERVER]
    failed, succeeded = sorted(chats(spans), key=lambda s: "error.type" not in s.attributes)
    assert failed.attributes["error.type"] == "overloaded_error" and failed.status == ERROR
    assert "gen_ai.response.id" not in failed.attributes  # it never started
    assert "error.type" not in succeeded.attributes
    assert succeeded.attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert {failed.parent_id, succeeded.parent_id} == {request.span_id}


def test_a_stream_the_caller_left_ends_its_span_saying_so(make_relay, upstream, otlp):
    relay = make_relay()
    upstream.push([message_start(), *text_block(0, ["one ", "two "])[:-1], ("stall",)])
    with httpx2.stream("POST", f"{relay.url}/api/chat", json={"message": "Hi"}) as reply:
        received = b""
        for chunk in reply.iter_bytes():
            received += chunk
            if b"two " in received:
                break  # and hang up
    (chat,) = chats(otlp.wait_for_spans(chats))
    assert chat.attributes["error.type"] == "cancelled" and chat.status == ERROR
    # What the upstream reported before the caller left.
    assert chat.attributes["gen_ai.response.id"] == "msg_fake_0001"
    assert "gen_ai.response.finish_reasons" not in chat.attributes


def test_a_resumable_answer_ends_its_span_when_the_answer_ends(make_relay, upstream, otlp):
    relay = make_relay()
    upstream.push(answer(*[f"w{i} " for i in range(8)], delay=0.05))
    frames = open_and_drop(relay.url, 2)  # the request ends; the answer goes on
    spans = otlp.wait_for_spans(chats)
    (request,) = [s for s in spans if s.kind == SERVER]
    (chat,) = chats(spans)
    assert chat.parent_id == request.span_id and chat.ended > request.ended
    assert "error.type" not in chat.attributes
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
    # Stopped (DELETE), it says so.
    otlp.reset()
    upstream.push(answer(*[f"w{i} " for i in range(50)], delay=0.05))
    frames = open_and_drop(relay.url, 1)
    stream_id = frames[0][2]["stream_id"]
    assert httpx2.delete(f"{relay.url}/api/chat/{stream_id}").status_code == 204
    (chat,) = chats(otlp.wait_for_spans(chats))
    assert chat.attributes["error.type"] == "stopped" and chat.status == ERROR


def test_the_client_metrics_have_the_conventions_names_units_and_buckets(
    make_relay, upstream, otlp
):
    relay = make_relay()
    upstream.push(answer("a", "b", output_tokens=5))
    assert post_chat(relay).events[-1] == "done"
    tokens = otlp.wait_for_points("gen_ai.client.token.usage")
    by_type = {attrs["gen_ai.token.type"]: point for _, _, attrs, point in tokens}
    assert (by_type["input"].sum, by_type["output"].sum) == (12, 5)
    name, unit, attrs, point = tokens[0]
    assert unit == "{token}"
    assert list(point.explicit_bounds) == [4**i for i in range(14)]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == "claude-sonnet-5-5"
    (chat,) = chats(otlp.wait_for_spans(chats))
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.operation.time_to_first_chunk"):
        (_, unit, attrs, point) = otlp.wait_for_points(name)[0]
        assert unit == "s" and point.count == 1
        assert list(point.explicit_bounds) == [0.01 * 2**i for i in range(14)]
        assert "error.type" not in attrs
        (exemplar,) = point.exemplars  # the measurement's, pointing at its chat's span
        assert (exemplar.span_id.hex(), exemplar.trace_id.hex()) == (chat.span_id, chat.trace_id)
        assert exemplar.as_double == point.sum


def test_no_content_unless_asked(make_relay, upstream, otlp):
    relay = make_relay()
    upstream.push(answer("The secret answer"))
    body = {"message": "The secret question", "system": "The secret system prompt"}
    assert post_chat(relay, body).events[-1] == "done"
    (chat,) = chats(otlp.wait_for_spans(chats))
    assert not [a for a in chat.attributes if a.endswith(("messages", "instructions"))]
    sent = b"".join(otlp.bodies)
    for secret in (b"The secret", API_KEY.encode()):
        assert secret not in sent


def test_content_when_asked_with_attachments_as_their_type_and_size(
    make_relay, upstream, otlp, monkeypatch
):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    relay = make_relay()
    upstream.push(answer("Un", " chat"))
    image = file_block("image/png", 300)
    body = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]},
        ],
        "system": "Be brief.",
    }
    assert post_chat(relay, body).events[-1] == "done"
    (chat,) = chats(otlp.wait_for_spans(chats))
    assert chat.attributes["gen_ai.input.messages"] == [
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello"}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "What is it?"},
                {"type": "image", "mime_type": "image/png", "size": 300},
            ],
        },
    ]
    assert chat.attributes["gen_ai.system_instructions"] == [
        {"type": "text", "content": "Be brief."}
    ]
    assert chat.attributes["gen_ai.output.messages"] == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Un chat"}],
            "finish_reason": "end_turn",
        }
    ]
    sent = b"".join(otlp.bodies)
    assert image["source"]["data"].encode() not in sent and API_KEY.encode() not in sent


def test_an_upstream_gone_silent_ends_its_span_as_a_timeout(make_relay, upstream, otlp):
    relay = make_relay(stream_idle_timeout=0.3)
    upstream.push([message_start(), *text_block(0, ["one "])[:-1], ("stall",)])
    reply = post_chat(relay)
    assert reply.events[-1] == "error"
    (chat,) = chats(otlp.wait_for_spans(chats))
    assert chat.attributes["error.type"] == "timeout_error" and chat.status == ERROR


def test_the_shutdown_flushes_what_is_pending(make_relay, upstream, otlp, monkeypatch, server_loop):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # no export but the last one
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")
    relay = make_relay()
    upstream.push(answer("ok"))
    assert post_chat(relay).events[-1] == "done"
    assert otlp.spans == []
    server_loop.run(stop_relay(relay))
    assert len(chats(otlp.spans)) == 1
    assert otlp.wait_for_points("gen_ai.client.token.usage")
