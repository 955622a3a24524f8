"""The upstream-to-frames translation, as the pure function it is: no network, no loop."""

import json

import pytest

from app.errors import ApiError
from app.frames import RELAY
from app.steps import next_step
from app.translate import Answer, failure_frames, message_started, translate
from app.uistream import UI
from tests.fake_upstream import (
    cited_block,
    search_result,
    text_block,
    thinking_block,
    tool_answer,
    tool_block,
    web_citation,
    whole_block,
)
from tests.support import parse_frames, play, ui_chunks


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


# Tools in play: tool calls stream, the turn's content is kept for `done`.


def tooled(dialect=RELAY, **kw) -> Answer:
    return Answer("live", dialect, tools=True, **kw)


def test_parallel_tool_calls_stream_in_order_and_done_holds_both():
    script = tool_answer(
        text_block(0, ["Let me check both."]),
        tool_block(1, "toolu_a", "weather", ['{"city": ', '"Paris"}']),
        tool_block(2, "toolu_b", "weather", ['{"city": "Oslo"}']),
    )
    sent = parse_frames(play(tooled(), script).decode())
    assert [name for name, _ in sent] == [
        "start",
        "delta",
        "tool_start",
        "tool_delta",
        "tool_delta",
        "tool_call",
        "tool_start",
        "tool_delta",
        "tool_call",
        "done",
    ]
    calls = [payload for name, payload in sent if name == "tool_call"]
    assert calls == [
        {"id": "toolu_a", "name": "weather", "run_by": "caller", "input": {"city": "Paris"}},
        {"id": "toolu_b", "name": "weather", "run_by": "caller", "input": {"city": "Oslo"}},
    ]
    done = sent[-1][1]
    assert done["stop_reason"] == "tool_use"
    assert done["content"] == [
        {"type": "text", "text": "Let me check both."},
        {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {"city": "Oslo"}},
    ]


def test_a_tool_with_no_arguments_gets_an_empty_object():
    # The API may send no input delta at all, or an empty one: neither is a tool_delta.
    script = tool_answer(tool_block(0, "toolu_1", "now", []), tool_block(1, "toolu_2", "now", [""]))
    sent = parse_frames(play(tooled(), script).decode())
    assert "tool_delta" not in [name for name, _ in sent]
    assert [p["input"] for n, p in sent if n == "tool_call"] == [{}, {}]
    assert [b["input"] for b in sent[-1][1]["content"]] == [{}, {}]


def test_a_call_split_across_many_deltas_concatenates_exactly():
    text = json.dumps({"query": "a “quoted” ünïcode \\ query", "n": [1, 2.5, None, True]})
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    sent = parse_frames(play(tooled(), tool_answer(tool_block(0, "t", "search", pieces))).decode())
    assert "".join(p["json"] for n, p in sent if n == "tool_delta") == text
    assert next(p["input"] for n, p in sent if n == "tool_call") == json.loads(text)


def test_invalid_tool_json_is_wrapped_and_the_stream_goes_on():
    script = tool_answer(
        tool_block(0, "t1", "search", ['{"query": "cut sh']),
        tool_block(1, "t2", "search", ["[1, 2]"]),  # JSON, but not an object
        text_block(2, ["still here"]),
        stop_reason="max_tokens",
    )
    sent = parse_frames(play(tooled(), script).decode())
    calls = [p for n, p in sent if n == "tool_call"]
    assert calls[0]["input"] == {"INVALID_JSON": '{"query": "cut sh'} and "error" in calls[0]
    assert calls[1]["input"] == {"INVALID_JSON": "[1, 2]"} and "error" in calls[1]
    assert sent[-1][0] == "done" and sent[-2] == ("delta", {"text": "still here"})


def test_thinking_with_tools_keeps_the_signature_for_the_next_turn():
    script = tool_answer(
        thinking_block(0, ["Need ", "the time."], signature="SIG-123"),
        whole_block(1, {"type": "redacted_thinking", "data": "REDACTED-DATA"}),
        tool_block(2, "toolu_1", "local_time", ["{}"]),
    )
    raw = play(tooled(thinking=True), script)
    sent = parse_frames(raw.decode())
    assert [n for n, _ in sent][:3] == ["start", "thinking", "thinking"]
    shown = raw.split(b"event: done")[0]  # every frame but done
    assert b"SIG-123" not in shown and b"REDACTED-DATA" not in shown
    assert sent[-1][1]["content"][:2] == [
        {"type": "thinking", "thinking": "Need the time.", "signature": "SIG-123"},
        {"type": "redacted_thinking", "data": "REDACTED-DATA"},
    ]
    ui = ui_of(play(tooled(UI, thinking=True), script))
    ends = [c for c in ui if c["type"] == "reasoning-end"]
    assert ends[0]["providerMetadata"] == {"anthropic": {"signature": "SIG-123"}}
    redacted = next(c for c in ui if c["type"] == "reasoning-start" and "providerMetadata" in c)
    assert redacted["providerMetadata"] == {"anthropic": {"redactedData": "REDACTED-DATA"}}


def test_server_tools_stream_their_results_and_citations_without_encrypted_fields():
    url = "https://example.org/a"
    script = tool_answer(
        tool_block(0, "srvtoolu_1", "web_search", ['{"query": "x"}'], kind="server_tool_use"),
        whole_block(1, search_result("srvtoolu_1", url, "javascript:alert(1)")),
        cited_block(2, web_citation(url, "cited words"), ["The answer."]),
        cited_block(3, web_citation("javascript:alert(1)", "x"), [" More."]),
        cited_block(4, web_citation(url, "again"), [" Again."]),  # the same source
        stop_reason="end_turn",
        server_tool_use={"web_search_requests": 1},
    )
    raw = play(tooled(), script)
    frames_ = parse_frames(raw.decode())
    shown = raw.split(b"event: done")[0]
    assert b"ENCRYPTED" not in shown
    start = next(p for n, p in frames_ if n == "tool_start")
    assert start == {"id": "srvtoolu_1", "name": "web_search", "run_by": "anthropic"}
    result = next(p for n, p in frames_ if n == "tool_result")
    assert result["output"][0] == {"url": url, "title": "Page 0", "page_age": "2 days"}
    assert result["name"] == "web_search" and result["run_by"] == "anthropic"
    citation = next(p for n, p in frames_ if n == "citation")
    assert citation == {
        "type": "web_search_result_location",
        "url": url,
        "title": "Page 0",
        "cited_text": "cited words",
    }
    done = frames_[-1][1]
    assert done["usage"]["server_tool_use"] == {"web_search_requests": 1}
    assert done["content"][1]["content"][0]["encrypted_content"] == "ENCRYPTED-CONTENT-0"
    assert done["content"][2]["citations"][0]["encrypted_index"] == "ENCRYPTED-INDEX"
    ui = ui_of(play(tooled(UI), script))
    assert b"ENCRYPTED" not in play(tooled(UI), script)
    kinds = [c["type"] for c in ui]
    assert kinds.index("tool-input-start") < kinds.index("tool-output-available")
    assert next(c for c in ui if c["type"] == "tool-input-start")["providerExecuted"] is True
    sources = [c for c in ui if c["type"] == "source-url"]
    assert sources == [
        {"type": "source-url", "sourceId": "source-1", "url": url, "title": "Page 0"}
    ]


def test_a_server_tool_error_is_a_tool_result_error():
    error = {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}
    block = {"type": "web_search_tool_result", "tool_use_id": "s1", "content": error}
    script = tool_answer(
        tool_block(0, "s1", "web_search", ["{}"], kind="server_tool_use"),
        whole_block(1, block),
        stop_reason="end_turn",
    )
    result = next(p for n, p in parse_frames(play(tooled(), script).decode()) if n == "tool_result")
    assert result == {
        "id": "s1",
        "name": "web_search",
        "run_by": "anthropic",
        "error": "max_uses_exceeded",
    }
    ui = ui_of(play(tooled(UI), script))
    assert {
        "type": "tool-output-error",
        "toolCallId": "s1",
        "errorText": "max_uses_exceeded",
        "providerExecuted": True,
    } in ui


def test_pause_turn_is_continued_as_one_answer_with_the_usage_summed():
    first = tool_answer(
        tool_block(0, "s1", "web_search", ["{}"], kind="server_tool_use"),
        stop_reason="pause_turn",
        output_tokens=10,
    )
    second = tool_answer(text_block(0, ["Done."]), stop_reason="end_turn", output_tokens=5)
    for dialect in (RELAY, UI):
        answer = tooled(dialect, max_steps=3)
        out = play(answer, first)
        assert answer.paused and not answer.done
        next_step(answer)
        out += play(answer, second)
        assert answer.done and answer.steps == 2
        if dialect is RELAY:
            sent = parse_frames(out.decode())
            assert [n for n, _ in sent].count("start") == 1 and sent[-1][0] == "done"
            assert sent[-1][1]["usage"]["output_tokens"] == 15
            assert sent[-1][1]["usage"]["input_tokens"] == 24
            assert [b["type"] for b in sent[-1][1]["content"]] == ["server_tool_use", "text"]
        else:
            kinds = [c["type"] for c in ui_of(out)]
            assert kinds.count("start") == 1 and kinds.count("finish") == 1
            assert kinds.count("start-step") == 2 and kinds.count("finish-step") == 2


def test_a_pause_past_the_step_limit_ends_the_answer():
    answer = tooled(max_steps=1)
    sent = parse_frames(play(answer, tool_answer(stop_reason="pause_turn")).decode())
    assert answer.done and sent[-1][1]["stop_reason"] == "pause_turn"


def test_without_tools_in_play_tool_blocks_are_skipped_and_no_content_kept():
    script = tool_answer(text_block(0, ["Hi"]), tool_block(1, "t", "x", ['{"a": 1}']))
    answer = Answer("live", RELAY)
    sent = parse_frames(play(answer, script).decode())
    assert [n for n, _ in sent] == ["start", "delta", "done"]
    assert "content" not in sent[-1][1] and answer.content == []


def test_a_tool_delta_costs_what_a_text_delta_costs():
    # One append and one encode each; neither grows with what came before.
    answer = tooled()
    play(answer, tool_answer(tool_block(0, "t", "x", []))[:2])  # its start, no input yet
    piece = event({"index": 0, "delta": {"type": "input_json_delta", "partial_json": "ab"}})
    first = translate(answer, b"content_block_delta", piece)
    for _ in range(10_000):
        later = translate(answer, b"content_block_delta", piece)
    assert first == later == b'event: tool_delta\ndata: {"id":"t","json":"ab"}\n\n'
    assert len(answer.blocks[0].pieces) == 10_001


def ui_of(raw: bytes) -> list:
    return [c for c in ui_chunks(raw.decode()) if c != "[DONE]"]
