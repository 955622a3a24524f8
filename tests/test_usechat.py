"""useChat() against the relay with no glue: the AI SDK's own client (its
`DefaultChatTransport` and `readUIMessageStream`, under node) on a real uvicorn, and the UI
message stream's contract on the wire: resume by chat id, 204 when nothing runs, a stop
that stops, a new answer that ends the old one."""

import json

import httpx2

from tests.fake_upstream import (
    answer,
    error_event,
    http_error,
    message_start,
    plain,
    text_block,
    text_of,
    tool_answer,
    tool_block,
)
from tests.support import PROMPTLY, WORDS, ui_answer_interrupted, ui_body, ui_chunks, usechat

CHAT = "chatAbcdefgh01234"  # 17 of [A-Za-z0-9_-], as the AI SDK makes them (16)


def test_the_ai_sdk_builds_the_answer_and_its_usage(relay, upstream):
    upstream.push(answer("Hello", ", ", "world."))
    message = usechat(relay.url, "send", CHAT)
    assert message["text"] == "Hello, world."
    metadata = message["metadata"]
    assert metadata["usage"]["input_tokens"] == 12 and metadata["usage"]["output_tokens"] == 87
    assert metadata["stop_reason"] == "end_turn" and metadata["model"] == "claude-test"
    assert message["id"] == "msg_fake_0001"  # the upstream message's id


def test_the_wire_format(relay, upstream):
    upstream.push(answer("a", "b", stop_reason="max_tokens"))
    reply = httpx2.post(f"{relay.url}/api/chat", json=ui_body(CHAT))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert reply.headers["x-accel-buffering"] == "no"
    assert "content-security-policy" in reply.headers
    chunks = ui_chunks(reply.text)
    assert [c if c == "[DONE]" else c["type"] for c in chunks] == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert chunks[-2]["finishReason"] == "length"
    assert "event:" not in reply.text  # only data lines (and comments)


def test_conversion_of_earlier_turns(relay, upstream):
    body = ui_body(CHAT, system="Be brief.")
    body["messages"] = [
        {"id": "s", "role": "system", "parts": [{"type": "text", "text": "You are kind."}]},
        {"id": "1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]},
        {
            "id": "2",
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {"type": "reasoning", "text": "hmm"},
                {"type": "text", "text": "Hello!"},
                {"type": "tool-search", "toolCallId": "t", "state": "output-available"},
            ],
        },
        {"id": "3", "role": "user", "parts": [{"type": "text", "text": "Again"}]},
    ]
    assert httpx2.post(f"{relay.url}/api/chat", json=body).status_code == 200
    sent = upstream.requests[0].body
    assert text_of(sent["system"]) == "Be brief.\n\nYou are kind."
    assert sent["messages"][:2] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
    ]
    assert plain(sent["messages"][2:]) == [{"role": "user", "content": "Again"}]


def test_a_dropped_answer_resumes_whole_with_one_upstream_request(relay, upstream):
    upstream.push(answer(*WORDS, delay=0.03))
    dropped = usechat(relay.url, "drop", CHAT, chunks=6)
    assert dropped["chunks"][:4] == ["start", "start-step", "text-start", "text-delta"]
    resumed = usechat(relay.url, "resume", CHAT)
    assert resumed["text"] == "".join(WORDS), "rebuilt from the replay: whole, nothing twice"
    assert resumed["metadata"]["stop_reason"] == "end_turn"
    assert len(upstream.requests) == 1


def test_reconnect_is_204_when_nothing_runs(relay, upstream):
    assert usechat(relay.url, "resume", "neverAskedAnything0") == {"none": True}
    upstream.push(answer("done"))
    reply = httpx2.post(f"{relay.url}/api/chat", json=ui_body(CHAT, resumable=True))
    assert reply.status_code == 200 and ui_chunks(reply.text)[-1] == "[DONE]"
    # Finished: nothing to resume, so the AI SDK keeps the message it has.
    assert usechat(relay.url, "resume", CHAT) == {"none": True}
    assert httpx2.get(f"{relay.url}/api/chat/short/stream").status_code == 204


def test_delete_stops_the_answer_at_once(relay, upstream, server_loop):
    upstream.push(answer(*WORDS, delay=0.05))
    url = f"{relay.url}/api/chat/{CHAT}/stream"
    rest, stopped, status = ui_answer_interrupted(
        relay.url, ui_body(CHAT, resumable=True), lambda c: c.delete(url).status_code
    )
    assert status == 204
    conn = server_loop.call(lambda: upstream.requests[0].conn)
    assert server_loop.wait_for(lambda: conn.closed is not None, 2)
    assert conn.closed - stopped < PROMPTLY
    assert rest[-2:] == [{"type": "abort"}, "[DONE]"]
    assert httpx2.delete(url).status_code == 204  # nothing runs: still 204


def test_a_new_answer_for_the_chat_ends_the_old_one(relay, upstream, server_loop):
    upstream.push(answer(*WORDS, delay=0.05), answer("new"))
    body = ui_body(CHAT, resumable=True)
    regenerate = {**body, "trigger": "regenerate-message"}
    rest, _, newer = ui_answer_interrupted(
        relay.url, body, lambda c: c.post(f"{relay.url}/api/chat", json=regenerate)
    )
    first = server_loop.call(lambda: upstream.requests[0].conn)
    assert server_loop.wait_for(lambda: first.closed is not None, 2)
    assert rest[-2:] == [{"type": "abort"}, "[DONE]"]
    assert ui_chunks(newer.text)[-1] == "[DONE]"


def test_a_caller_that_leaves_cancels_the_upstream(relay, upstream, server_loop):
    # Not resumable: what makes the AI SDK's stop() stop.
    upstream.push(answer(*WORDS, delay=0.05))
    usechat(relay.url, "leave", "notResumable0000", chunks=4)
    conn = server_loop.call(lambda: upstream.requests[0].conn)
    assert server_loop.wait_for(lambda: conn.closed is not None, 2)


def test_bad_bodies_get_clear_errors(relay):
    def post(body):
        return httpx2.post(f"{relay.url}/api/chat", json=body)

    short = post(ui_body("short", resumable=True))
    assert short.status_code == 400 and "16 to 128" in short.json()["error"]["message"]
    unknown = post({**ui_body(CHAT), "x" * 5000: 1})
    assert unknown.status_code == 422 and len(unknown.json()["error"]["message"]) < 300
    assert "accepted: id, messages" in unknown.json()["error"]["message"]
    ends_with_assistant = ui_body(CHAT)
    ends_with_assistant["messages"][0]["role"] = "assistant"
    assert post(ends_with_assistant).status_code == 422
    secret = "do-not-echo-" + "z" * 40
    bad_part = ui_body(CHAT)
    bad_part["messages"][0]["parts"] = [{"type": 7, "text": secret}]
    refused = post(bad_part)
    assert refused.status_code == 422 and secret not in refused.text


def test_failures_after_the_start_are_one_error_chunk_in_the_relays_words(make_relay, upstream):
    relay = make_relay(upstream_retries=0, ping_interval=0.05)
    secret = "internal cluster 7 melted"
    upstream.push(
        [
            message_start(),
            *text_block(0, ["one "])[:-1],
            ("sleep", 0.2),  # pings meanwhile: comments, never data
            error_event("overloaded_error", secret),
        ]
    )
    reply = httpx2.post(f"{relay.url}/api/chat", json=ui_body(CHAT))
    chunks = ui_chunks(reply.text)
    assert chunks[-2]["type"] == "error" and chunks[-1] == "[DONE]"
    assert secret not in reply.text and "overloaded" in chunks[-2]["errorText"]
    assert ": ping" in reply.text and "data: ping" not in reply.text


def test_failures_before_the_start_stay_plain_http(make_relay, upstream):
    relay = make_relay(upstream_retries=0)
    upstream.push(http_error(529, "overloaded_error", "Overloaded"))
    reply = httpx2.post(f"{relay.url}/api/chat", json=ui_body(CHAT))
    assert reply.status_code == 503
    assert reply.json()["error"]["type"] == "overloaded_error"


def test_resume_and_stop_need_what_post_needs(make_relay):
    relay = make_relay(relay_token="s3cret")
    url = f"{relay.url}/api/chat/{CHAT}/stream"
    assert httpx2.get(url).status_code == 401 and httpx2.delete(url).status_code == 401
    cross_site = {"origin": "https://evil.example"}
    assert (
        httpx2.get(url, headers={"authorization": "Bearer s3cret", **cross_site}).status_code == 403
    )
    assert httpx2.get(url, headers={"authorization": "Bearer s3cret"}).status_code == 204


def test_thinking_becomes_a_reasoning_part(make_relay):
    relay = make_relay(anthropic_api_key=None, anthropic_base_url=None, demo_token_delay=0)
    message = usechat(relay.url, "think", CHAT, "Why is the sky blue?")
    assert "Why is the sky blue?" in message["reasoning"]
    assert "Demo mode" in message["text"] and "signature" not in message["reasoning"]
    assert usechat(relay.url, "send", CHAT)["reasoning"] == ""


def test_the_ai_sdks_own_client_runs_a_client_tool_round_trip(make_relay, upstream):
    # useChat's own loop (AbstractChat): onToolCall + addToolOutput, then
    # sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls.
    relay = make_relay()
    upstream.push(
        tool_answer(
            text_block(0, ["Let me look."]),
            tool_block(1, "toolu_42", "local_time", ["{", "}"]),
        ),
        answer("It is 12:34 in Paris."),
    )
    out = usechat(relay.url, "tool", CHAT, "What time is it?")
    assert out["status"] == "ready" and out.get("error") is None and out["requests"] == 2
    _, assistant = out["messages"]
    tool_part = next(p for p in assistant["parts"] if p["type"] == "tool-local_time")
    assert tool_part["state"] == "output-available" and tool_part["toolCallId"] == "toolu_42"
    text = "".join(p["text"] for p in assistant["parts"] if p["type"] == "text")
    assert text == "Let me look.It is 12:34 in Paris."  # the continuation, in the same message
    first, second = (r.body for r in upstream.requests)
    assert first["tools"][0]["name"] == "local_time"
    turns = second["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][-1] == {
        "type": "tool_use",
        "id": "toolu_42",
        "name": "local_time",
        "input": {},
    }
    assert turns[2]["content"][0]["tool_use_id"] == "toolu_42"
    assert json.loads(turns[2]["content"][0]["content"]) == {
        "time": "12:34",
        "zone": "Europe/Paris",
    }
