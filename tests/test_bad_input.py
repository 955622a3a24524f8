"""Malformed requests: each gets a clear 4xx JSON error, the upstream is never called, and
the service stays healthy. Nothing anywhere shows the API key."""

import json
import logging

import httpx2
import pytest

from tests.fake_upstream import http_error
from tests.support import API_KEY, post_chat

OK = {"message": "hello"}


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


BAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    # id: (raw body, status, a word the message must contain)
    "invalid-json": (b'{"message": "hi"', 422, "json"),
    "not-json": (b"hello there", 422, "json"),
    "empty-body": (b"", 422, "json"),
    "json-array": (b"[]", 422, "object"),
    "json-string": (b'"hi"', 422, "object"),
    "json-null": (b"null", 422, "object"),
    "empty-object": (b"{}", 422, "exactly one"),
    "both-message-and-messages": (
        body(message="a", messages=[{"role": "user", "content": "b"}]),
        422,
        "exactly one",
    ),
    "empty-message": (body(message=""), 422, "empty"),
    "blank-message": (body(message=" \n\t "), 422, "empty"),
    "message-wrong-type": (body(message=123), 422, "string"),
    "message-null": (body(message=None), 422, "exactly one"),
    "message-with-nul": (body(message="a\x00b"), 422, "nul"),
    "message-lone-surrogate": (b'{"message": "a\\ud800b"}', 422, "invalid json"),
    "messages-empty": (body(messages=[]), 422, "at least 1"),
    "messages-not-a-list": (body(messages="hi"), 422, "array"),
    "messages-wrong-role": (body(messages=[{"role": "system", "content": "x"}]), 422, "role"),
    "messages-missing-content": (body(messages=[{"role": "user"}]), 422, "content"),
    "messages-empty-content": (body(messages=[{"role": "user", "content": ""}]), 422, "empty"),
    "messages-end-with-assistant": (
        body(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]),
        422,
        "end with a user turn",
    ),
    "messages-extra-field": (
        body(messages=[{"role": "user", "content": "q", "name": "x"}]),
        422,
        "unknown field",
    ),
    "content-blocks-empty": (body(messages=[{"role": "user", "content": []}]), 422, "at least 1"),
    "content-block-unknown-type": (
        body(message=[{"type": "video", "url": "x"}]),
        422,
        "'text', 'image', 'document'",
    ),
    "content-block-empty-text": (body(message=[{"type": "text", "text": " "}]), 422, "empty"),
    "image-of-unknown-type": (
        body(
            message=[
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/bmp", "data": "Qk0="},
                }
            ]
        ),
        422,
        "image/png",
    ),
    "image-by-url": (
        body(message=[{"type": "image", "source": {"type": "url", "url": "http://10.0.0.1/"}}]),
        422,
        "base64",
    ),
    "messages-item-not-object": (body(messages=["hi"]), 422, "messages.0"),
    "unknown-field-temperature": (body(message="hi", temperature=0.5), 422, "temperature"),
    "max-tokens-zero": (body(message="hi", max_tokens=0), 422, "between 1 and"),
    "max-tokens-negative": (body(message="hi", max_tokens=-5), 422, "between 1 and"),
    "max-tokens-above-limit": (body(message="hi", max_tokens=4097), 422, "between 1 and 4096"),
    "max-tokens-huge": (b'{"message": "hi", "max_tokens": 1' + b"0" * 40 + b"}", 422, "max_tokens"),
    "max-tokens-float": (body(message="hi", max_tokens=1.5), 422, "integer"),
    "max-tokens-string": (body(message="hi", max_tokens="100"), 422, "integer"),
    "max-tokens-bool": (body(message="hi", max_tokens=True), 422, "integer"),
    "model-not-allowed": (body(message="hi", model="claude-expensive"), 422, "must be one of"),
    "model-empty": (body(message="hi", model=""), 422, "empty"),
    "system-wrong-type": (body(message="hi", system=42), 422, "string"),
    "system-with-nul": (body(message="hi", system="be\x00nice"), 422, "nul"),
    "non-utf8": (b'{"message": "caf\xe9"}', 422, "invalid json"),
    "deep-nesting": (
        b'{"message": "hi", "system": ' + b"[" * 1500 + b"]" * 1500 + b"}",
        422,
        "json",
    ),
    "too-large-with-content-length": (body(message="x" * 5000), 413, "exceeds"),
}


@pytest.fixture
def strict_relay(make_relay):
    return make_relay(
        max_tokens_limit=4096,
        allowed_models=["claude-a", "claude-b"],
        default_model="claude-a",
        max_body_bytes=4096,
    )


@pytest.mark.parametrize("case", list(BAD_BODIES), ids=list(BAD_BODIES))
def test_bad_body(strict_relay, upstream, case):
    raw, status, word = BAD_BODIES[case]
    reply = post_chat(strict_relay, content=raw)

    assert reply.status == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["type"] and error["message"]
    assert word.lower() in error["message"].lower()
    assert "Traceback" not in reply.text
    assert upstream.requests == [], "the upstream must never be called for a bad request"


def test_too_large_chunked_body_is_refused_while_reading(strict_relay, upstream):
    sent = []

    def chunks():
        for _ in range(1000):  # 1 MB offered, 4 KiB allowed
            sent.append(1)
            yield b"x" * 1000

    with httpx2.Client(timeout=10) as client:
        r = client.post(f"{strict_relay.url}/api/chat", content=chunks())
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"
    assert upstream.requests == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method(relay, method):
    r = httpx2.request(method, f"{relay.url}/api/chat", timeout=10)
    assert r.status_code == 405
    assert r.json()["error"]["type"] == "method_not_allowed"


def test_unknown_path_is_json_404(relay):
    r = httpx2.get(f"{relay.url}/api/nope", timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found"


def test_any_content_type_is_read_as_json(relay):
    # `curl -d` sends application/x-www-form-urlencoded; the body is JSON all the same.
    reply = post_chat(relay, OK, headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.status == 200 and reply.events[-1] == "done"


def test_service_stays_healthy_after_the_matrix(strict_relay, upstream):
    for raw, _, _ in BAD_BODIES.values():
        post_chat(strict_relay, content=raw)
    assert httpx2.get(f"{strict_relay.url}/healthz", timeout=10).status_code == 200
    reply = post_chat(strict_relay, OK)
    assert reply.status == 200
    assert reply.events == ["start", "delta", "delta", "delta", "done"]


def test_the_key_never_shows(relay, upstream, caplog, relay_log):
    caplog.set_level(logging.DEBUG)
    upstream.push(
        http_error(401, "authentication_error", "invalid x-api-key"),
        http_error(500, "api_error", "boom"),
    )
    replies = [post_chat(relay, OK), post_chat(relay, OK), post_chat(relay, content=b"{")]
    replies.append(post_chat(relay, OK))
    page = httpx2.get(f"{relay.url}/", timeout=10).text
    seen = "".join(r.text + str(r.headers) for r in replies) + page + caplog.text + relay_log.text
    assert API_KEY not in seen
    assert API_KEY[-12:] not in seen
    # ...and the failures were logged, for whoever runs the relay.
    assert "upstream answered HTTP 401" in relay_log.text


def test_a_slash_redirect_never_names_a_host_we_do_not_serve(relay):
    # Starlette's slash redirect answered before the Host check: a 307 to evil.example.
    r = httpx2.delete(f"{relay.url}/api/chat/", headers={"host": "evil.example"}, timeout=10)
    assert r.status_code in (403, 404, 405), r.status_code
    assert "evil.example" not in r.headers.get("location", "") and "location" not in r.headers
