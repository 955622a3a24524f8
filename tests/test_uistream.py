"""The UI message stream encoder, through the pure translation (no network)."""

import json

import pytest

from app.frames import RELAY
from app.translate import Answer, message_started, translate
from app.uistream import UI


def chunks(raw: bytes) -> list:
    return [
        line[6:] if line == b"data: [DONE]" else json.loads(line[6:])
        for line in raw.split(b"\n")
        if line.startswith(b"data: ")
    ]


def answered(stop_reason: str, texts: list[str]) -> list:
    answer = Answer("live", UI)
    message_started(answer, b'{"message": {"id": "msg_1", "model": "m", "usage": {}}}')
    out = b""
    for text in texts:
        delta = {"index": 0, "delta": {"type": "text_delta", "text": text}}
        out += translate(answer, b"content_block_delta", json.dumps(delta).encode()) or b""
    end = {"delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 3}}
    translate(answer, b"message_delta", json.dumps(end).encode())
    return chunks(out + translate(answer, b"message_stop", b"{}"))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content-filter"),
        ("tool_use", "tool-calls"),
        ("pause_turn", "other"),
    ],
)
def test_finish_reasons(stop_reason, finish):
    finished = answered(stop_reason, ["a"])[-2]
    assert finished["finishReason"] == finish
    assert finished["messageMetadata"]["stop_reason"] == stop_reason


def test_deltas_arrive_as_sent_even_a_lone_surrogate():
    texts = ["Hé", "\ud83d", ' "quoted"\n']
    sent = answered("end_turn", texts)
    assert sent[0] == {
        "type": "start",
        "messageId": "msg_1",
        "messageMetadata": {"model": "m", "mode": "live"},
    }
    deltas = [c["delta"] for c in sent if isinstance(c, dict) and c["type"] == "text-delta"]
    assert deltas == texts and sent[-1] == b"[DONE]"


def test_an_answer_with_no_text_opens_no_text_part():
    sent = answered("end_turn", [])
    assert [c if c == b"[DONE]" else c["type"] for c in sent] == [
        "start",
        "start-step",
        "finish-step",
        "finish",
        b"[DONE]",
    ]


def thought_then_answered(dialect) -> bytes:
    answer = Answer("live", dialect, thinking=True)
    message_started(answer, b'{"message": {"id": "msg_1", "model": "m", "usage": {}}}')
    out = b""
    for index, delta in (
        (0, {"type": "thinking_delta", "thinking": "Hmm, "}),
        (0, {"type": "thinking_delta", "thinking": "yes."}),
        (0, {"type": "signature_delta", "signature": "SECRET-SIGNATURE"}),
        (1, {"type": "text_delta", "text": "Answer."}),
    ):
        payload = {"index": index, "delta": delta}
        out += translate(answer, b"content_block_delta", json.dumps(payload).encode()) or b""
    return out + translate(answer, b"message_stop", b"{}")  # type: ignore[operator]


def test_thinking_streams_as_a_reasoning_part_before_the_text():
    sent = chunks(thought_then_answered(UI))
    kinds = [c if c == b"[DONE]" else c["type"] for c in sent]
    assert kinds == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
        b"[DONE]",
    ]
    assert [c["delta"] for c in sent if c != b"[DONE]" and c["type"] == "reasoning-delta"] == [
        "Hmm, ",
        "yes.",
    ]


def test_thinking_frames_in_the_relays_own_dialect():
    raw = thought_then_answered(RELAY)
    events = [line[7:] for line in raw.split(b"\n") if line.startswith(b"event: ")]
    assert events == [b"start", b"thinking", b"thinking", b"delta", b"done"]
    assert b'{"text":"Hmm, "}' in raw and b"SECRET-SIGNATURE" not in raw


def test_thinking_nobody_asked_for_is_not_shown():
    answer = Answer("live", RELAY)  # thinking not asked for
    message_started(answer, b'{"message": {"id": "msg_1", "model": "m", "usage": {}}}')
    delta = {"index": 0, "delta": {"type": "thinking_delta", "thinking": "unasked"}}
    assert translate(answer, b"content_block_delta", json.dumps(delta).encode()) is None
