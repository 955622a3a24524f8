"""What a body may become, counted on its bytes (app/jsonsize.py): exact where it matters,
cheap everywhere, and the reviewer's bodies refused by a real relay process within its
event-loop and memory targets."""

import json
import socket
import time
from urllib.parse import urlsplit

import httpx2
import pytest

from app.jsonsize import json_values
from tests.fake_upstream import answer
from tests.support import file_block, memory_mb, ui_body

LIMIT = 100_000  # the default MAX_JSON_VALUES


@pytest.mark.parametrize(
    ("body", "count"),
    [
        (b'{"message": "hi"}', 1),
        (b'{"a": [1, 2, {"b": []}], "c": {}}', 8),
        (b'{"message": "[{, , ,}]"}', 1),  # inside a string: not values
        (rb'{"m": "a\"[,{\\", "n": [1,2]}', 4),  # escaped quotes and backslashes
        (b'{"m": "unterminated [,{', 1),  # invalid JSON: still a bounded answer
        (b'"\\', 0),
    ],
)
def test_containers_and_separators_outside_strings_are_counted(body: bytes, count: int):
    # Below the count a body is refused (above it), at the count it passes.
    assert json_values(body, count - 1) > count - 1
    assert json_values(body, count) <= count


def test_strings_full_of_commas_are_counted_exactly_past_the_quick_bound():
    # A long text with commas (a pasted CSV): the quick bound is far past the limit, the
    # exact count is not, whether its strings are few or many.
    few = json.dumps({"message": "a, b, c [x] {y} " * 200_000}).encode()
    many = json.dumps({"message": [{"type": "text", "text": "a, " * 20}] * 6000}).encode()
    assert json_values(few, LIMIT) == 1
    assert json_values(many, LIMIT) == 2 + 6000 * 2 + 5999


def test_a_full_conversation_fits_the_default_comfortably():
    """1,000 turns of 4 parts each (with the metadata the AI SDK adds) and 64 tools in
    256 KiB of JSON schema: well within MAX_JSON_VALUES."""
    part = {"type": "text", "text": "Some words, a comma.", "state": "done"}
    message = {"id": "msg_0123456789", "role": "user", "parts": [part] * 4, "metadata": {"t": 1}}
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(90)}}
    tools = [
        {"name": f"tool{i}", "description": "Does a thing.", "input_schema": schema}
        for i in range(64)
    ]
    body = {**ui_body("chatAbcdefgh01234"), "messages": [message] * 1000, "tools": tools}
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert len(json.dumps(tools, separators=(",", ":"))) > 128 * 1024
    count = json_values(raw, LIMIT)
    print(f"a full conversation and 64 tools: {count} values")
    assert count < LIMIT * 0.6


def post_timed(url: str, body: bytes) -> tuple[int, float]:
    """POST `body` on a raw socket: the status, and the seconds from its last byte sent to
    the answer (what the relay spent on it, less what it read after we were done)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(
            b"POST /api/chat HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(body)
        sent = time.perf_counter()
        head = sock.recv(65536)
        took = time.perf_counter() - sent
    return int(head.split(b" ", 2)[1]), took


# The reviewer's bodies: 32 MB of `[],` in the relay's own format, and a useChat body whose
# message carries 32 MB of nested `metadata` (7 s and 1.6 GB, and 8.3 s and 1.26 GB, before).
LISTS = b'{"message": "hi", "x": [' + b"[]," * 11_000_000 + b"[]]}"
METADATA = b'{"t": [' + b"[{}, [1]], " * 3_000_000 + b"[]]}"
NESTED = json.dumps(
    {**ui_body("chatAbcdefgh01234"), "messages": [{**ui_body("x")["messages"][0], "metadata": 0}]}
).encode()
NESTED = NESTED.replace(b'"metadata": 0', b'"metadata": ' + METADATA)


def test_the_reviewers_bodies_cost_a_moment_and_little_memory(make_replica, upstream):
    process, url = make_replica()
    upstream.push(answer("warm"))
    assert httpx2.post(f"{url}/api/chat", json={"message": "warm"}, timeout=30).status_code == 200
    base = memory_mb(process.pid, "VmHWM")
    for body in (LISTS, NESTED):
        assert len(body) > 30_000_000
        status, took = post_timed(url, body)
        print(f"{len(body) / 1e6:.0f} MB body: {status} {took * 1000:.0f} ms after its last byte")
        assert status == 413
        assert took < 0.25  # about 10-50 ms here; the target is under 100 ms of event loop
    growth = memory_mb(process.pid, "VmHWM") - base
    print(f"the relay's peak RSS grew {growth:.0f} MB")
    assert growth < 100
    # /healthz answers at once: nothing is left running.
    assert httpx2.get(f"{url}/healthz", timeout=1).status_code == 200


def test_the_largest_pdf_a_body_can_carry_still_works(make_relay, upstream):
    relay = make_relay()
    size = (relay.settings.max_body_bytes - 300) // 4 * 3  # about 25 MB of PDF
    body = json.dumps({"message": [file_block("application/pdf", size)]}).encode()
    assert relay.settings.max_body_bytes - 300 < len(body) <= relay.settings.max_body_bytes
    upstream.push(answer("Read"))
    reply = httpx2.post(f"{relay.url}/api/chat", content=body, timeout=60)
    assert reply.status_code == 200 and "event: done" in reply.text
