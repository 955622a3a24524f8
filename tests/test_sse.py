"""The upstream SSE decoder and our frame encoder, on adversarial chunkings."""

import asyncio
import json
import random

import pytest

from app.frames import delta
from app.sse import (
    MAX_EVENT_BYTES,
    SSEDecodeError,
    decode_events,
    error_frame,
    parse_json,
)
from tests.support import parse_frames


def decode(chunks: list[bytes]) -> list[tuple[bytes, bytes]]:
    async def run() -> list[tuple[bytes, bytes]]:
        async def source():
            for chunk in chunks:
                yield chunk

        return [event async for event in decode_events(source())]

    return asyncio.run(run())


STREAM = (
    ": a comment first\n"
    "event: message_start\n"
    'data: {"type":"message_start"}\n'
    "\n"
    "event: content_block_delta\n"
    'data: {"text":"naïve 日本語 🧑‍💻"}\n'
    "\n"
    "event: multi\n"
    "data: line one\n"
    "data:line two\n"
    "data: \n"
    "\n"
    "id: 7\n"
    "retry: 100\n"
    "\n"
    "data: no event name\n"
    "\n"
    "event: message_stop\n"
    "data: {}\n"
    "\n"
).encode()

EXPECTED = [
    (b"message_start", b'{"type":"message_start"}'),
    (b"content_block_delta", '{"text":"naïve 日本語 🧑‍💻"}'.encode()),
    (b"multi", b"line one\nline two\n"),
    (b"message", b"no event name"),
    (b"message_stop", b"{}"),
]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_split_point(newline):
    stream = STREAM.replace(b"\n", newline)
    assert decode([stream]) == EXPECTED
    for cut in range(1, len(stream)):
        assert decode([stream[:cut], stream[cut:]]) == EXPECTED, cut


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_one_byte_at_a_time(newline):
    stream = STREAM.replace(b"\n", newline)
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == EXPECTED


def test_random_chunkings_and_mixed_line_endings():
    rng = random.Random(7)
    for _ in range(300):
        stream = b""
        for line in STREAM.split(b"\n")[:-1]:
            # CR then an empty line's LF would read as one CRLF: that is the spec, not a split.
            endings = (
                [b"\r", b"\r\n"] if not line and stream.endswith(b"\r") else [b"\n", b"\r\n", b"\r"]
            )
            stream += line + rng.choice(endings)
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 20)))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert decode(chunks) == EXPECTED


def test_incomplete_event_at_eof_is_not_dispatched():
    assert decode([b"event: a\ndata: 1\n\nevent: b\ndata: 2\n"]) == [(b"a", b"1")]


def test_event_size_is_bounded():
    with pytest.raises(SSEDecodeError):
        decode([b"data: ", b"x" * (MAX_EVENT_BYTES + 1)])
    with pytest.raises(SSEDecodeError):
        decode([b"data: xxxxxxxxxx\n" * (MAX_EVENT_BYTES // 10 + 1)])


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "",
        'quotes " and \\ backslash',
        "new\nline\r\n",
        "tab\t",
        "日本語 🧑‍💻",
        "\u2028\u2029",
        "\x00\x1f",
        "a\ud800b",
    ],
)
def test_delta_frame_round_trips(text):
    frame = delta(None, text)  # type: ignore[arg-type]  # the own dialect's, on `quote`
    frame.decode("utf-8")  # always valid UTF-8 on the wire
    assert frame.count(b"\n") == 3  # one event line, one data line, one blank line
    assert parse_frames(frame.decode()) == [("delta", {"text": text})]


def test_error_frame():
    frame = error_frame("overloaded_error", "Overloaded \ud83d")
    assert parse_frames(frame.decode()) == [
        ("error", {"error": {"type": "overloaded_error", "message": "Overloaded \ud83d"}})
    ]
    assert json.loads(frame.split(b"data: ")[1])["error"]["type"] == "overloaded_error"


def test_parse_json_accepts_what_the_standard_library_accepts():
    assert parse_json(b'{"text": "\\ud83d\\ude00 ok"}') == {"text": "😀 ok"}
    assert parse_json(b'{"text": "lone \\ud800"}') == {"text": "lone \ud800"}
    with pytest.raises(ValueError):
        parse_json(b"{not json")
