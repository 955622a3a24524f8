"""The upstream-to-frames translation, as the pure function it is: no network, no loop."""

import json

import pytest

from app.errors import ApiError
from app.frames import RELAY
from app.translate import Answer, failure_frames, message_started, translate
from tests.support import parse_frames


def event(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def delta(text: str, kind: str = "text_delta") -> bytes:
    key = "text" if kind == "text_delta" else "partial_json"
    return event({"type": "content_block_delta", "index": 0, "delta": {"type": kind, key: text}})


START = event(
    {
        "type": "message_start",
        "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}},
    }
)
STOP = event({"type": "message_stop"})


def started() -> Answer:
    answer = Answer("live", RELAY)
    message_started(answer, START)
    return answer


def frames(*chunks: bytes | None) -> list:
    return parse_frames(b"".join(c for c in chunks if c).decode())


def test_a_whole_answer():
    answer = started()
    out = [
        translate(answer, b"content_block_start", event({"type": "content_block_start"})),
        translate(answer, b"ping", event({"type": "ping"})),
        translate(answer, b"content_block_delta", delta("Hel")),
        translate(answer, b"content_block_delta", delta("lo")),
        translate(
            answer,
            b"message_delta",
            event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 2},
                }
            ),
        ),
        translate(answer, b"message_stop", STOP),
    ]
    assert out[:2] == [None, None]
    assert frames(*out) == [
        ("start", {"id": "msg_1", "model": "m", "mode": "live"}),
        ("delta", {"text": "Hel"}),
        ("delta", {"text": "lo"}),
        (
            "done",
            {
                "done": True,
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 5, "output_tokens": 2},
            },
        ),
    ]
    assert answer.done and answer.deltas == 2


def test_start_goes_out_with_the_first_delta_only():
    answer = started()
    first = translate(answer, b"content_block_delta", delta("a"))
    second = translate(answer, b"content_block_delta", delta("b"))
    assert first is not None and first.startswith(b"event: start\n")
    assert second == b'event: delta\ndata: {"text":"b"}\n\n'


def test_an_answer_with_no_text_still_starts_before_done():
    answer = started()
    assert [n for n, _ in frames(translate(answer, b"message_stop", STOP))] == ["start", "done"]


def test_non_text_deltas_and_unknown_events_are_skipped():
    answer = started()
    assert translate(answer, b"content_block_delta", delta("{}", "input_json_delta")) is None
    assert translate(answer, b"some_future_event", event({"x": 1})) is None
    assert answer.deltas == 0


def test_an_error_event_keeps_the_upstream_type_and_says_if_retryable():
    answer = started()
    with pytest.raises(ApiError) as overloaded:
        translate(
            answer,
            b"error",
            event({"type": "error", "error": {"type": "overloaded_error", "message": "o"}}),
        )
    assert (overloaded.value.error_type, overloaded.value.retryable) == ("overloaded_error", True)
    with pytest.raises(ApiError) as invalid:
        translate(
            answer,
            b"error",
            event({"type": "error", "error": {"type": "invalid_request_error", "message": "m"}}),
        )
    assert invalid.value.retryable is False


@pytest.mark.parametrize(
    ("name", "data"),
    [
        (b"content_block_delta", b"{not json"),
        (b"content_block_delta", b'{"delta": "not an object"}'),
        (b"content_block_delta", b'{"delta": {"type": "text_delta"}}'),
        (b"message_delta", b'{"delta": 7}'),
        (b"message_delta", b"[]"),
        (b"error", b"null"),
    ],
)
def test_unreadable_events_are_a_retryable_upstream_error(name, data):
    answer = started()
    try:
        translate(answer, name, data)
    except ApiError as exc:
        assert exc.error_type in {"upstream_error", "api_error"}
        assert exc.status >= 500
    else:
        pytest.fail("an unreadable event was taken")


@pytest.mark.parametrize("data", [b'{"message": "oops"}', b'{"message": null}', b"[1]", b"{bad"])
def test_a_message_start_that_is_not_an_object_is_refused(data):
    with pytest.raises(ApiError) as exc:
        message_started(Answer("live", RELAY), data)
    assert exc.value.error_type == "upstream_error" and exc.value.retryable


def test_failure_frames_start_the_stream_if_nothing_went_yet():
    answer = started()
    assert [n for n, _ in frames(failure_frames(answer, "api_error", "x"))] == ["start", "error"]
    translate(answer, b"content_block_delta", delta("a"))
    assert [n for n, _ in frames(failure_frames(answer, "api_error", "x"))] == ["error"]


def test_usage_merges_across_events_and_keeps_what_it_does_not_know():
    answer = started()
    translate(
        answer,
        b"message_delta",
        event(
            {
                "delta": {},
                "usage": {
                    "output_tokens": 9,
                    "cache_read_input_tokens": 3,
                    "server_tool_use": {"web_search_requests": 1},
                },
            }
        ),
    )
    assert answer.usage == {
        "input_tokens": 5,
        "output_tokens": 9,
        "cache_read_input_tokens": 3,
        "server_tool_use": {"web_search_requests": 1},
    }
