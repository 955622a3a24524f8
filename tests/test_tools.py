"""The caller's tools (app/tools.py, app/turns.py): every refusal comes before anything goes
upstream, and a whole round trip through a real relay: the tool call streams, its result
goes back on the next turn, and the upstream sees `tool_use` and `tool_result` with one id."""

import json
import time

import pytest

from tests.fake_upstream import answer, text_block, tool_answer, tool_block
from tests.support import frames_with_ids, open_and_drop, post_chat, resume, ui_body, ui_chunks

WEATHER = {
    "name": "weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
ASKED = {"role": "user", "content": "Weather in Paris?"}
CALLED = {
    "role": "assistant",
    "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ],
}
ANSWERED = {
    "role": "user",
    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny, 21 °C"}],
}


def tool(**fields: object) -> dict:
    return {**WEATHER, **fields}


REFUSED: dict[str, tuple[dict, str]] = {
    # id: (body, words the message must contain)
    "tools-not-a-list": ({"message": "hi", "tools": {"name": "x"}}, "tools"),
    "a-type": ({"message": "hi", "tools": [tool(type="web_search_20250305")]}, "SERVER_TOOLS"),
    "an-unknown-field": ({"message": "hi", "tools": [tool(cache_control={})]}, "tools.0"),
    "a-bad-name": ({"message": "hi", "tools": [tool(name="no spaces")]}, "tools.0.name"),
    "a-long-name": ({"message": "hi", "tools": [tool(name="x" * 65)]}, "tools.0.name"),
    "a-name-twice": ({"message": "hi", "tools": [tool(), tool()]}, "declared twice"),
    "a-relay-name": ({"message": "hi", "tools": [tool(name="mcp__x__y")]}, "relay"),
    "a-schema-not-an-object": ({"message": "hi", "tools": [tool(input_schema=[])]}, "input_schema"),
    "too-many": ({"message": "hi", "tools": [tool(name=f"t{n}") for n in range(65)]}, "at most 64"),
    "choice-without-tools": ({"message": "hi", "tool_choice": {"type": "auto"}}, "no tools"),
    "choice-unknown-type": (
        {"message": "hi", "tools": [WEATHER], "tool_choice": {"type": "all"}},
        "tool_choice",
    ),
    "choice-of-an-undeclared-tool": (
        {"message": "hi", "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "other"}},
        "not a declared tool",
    ),
    "choice-tool-without-a-name": (
        {"message": "hi", "tools": [WEATHER], "tool_choice": {"type": "tool"}},
        "name",
    ),
    "forced-with-thinking": (
        {"message": "hi", "tools": [WEATHER], "tool_choice": {"type": "any"}, "thinking": True},
        "thinking",
    ),
    "a-result-answering-nothing": (
        {
            "messages": [
                ASKED,
                CALLED,
                {**ANSWERED, "content": [{**ANSWERED["content"][0], "tool_use_id": "toolu_9"}]},
            ]
        },
        "answers no tool_use",
    ),
    "a-call-without-its-result": (
        {"messages": [ASKED, CALLED, {"role": "user", "content": "and?"}], "tools": [WEATHER]},
        "has no tool_result",
    ),
    "a-result-in-an-assistant-turn": (
        {"messages": [ASKED, {"role": "assistant", "content": ANSWERED["content"]}, ASKED]},
        "user turn",
    ),
    "a-call-in-a-user-turn": (
        {"messages": [{"role": "user", "content": CALLED["content"]}]},
        "assistant turn",
    ),
    "a-ui-tool-part-with-a-bad-input": (
        ui_body(
            "chat-with-a-tool-1234",
            tools=[WEATHER],
            messages=[
                {"id": "u", "role": "user", "parts": [{"type": "text", "text": "Paris?"}]},
                {
                    "id": "a",
                    "role": "assistant",
                    "parts": [
                        {"type": "step-start"},
                        {
                            "type": "tool-weather",
                            "toolCallId": "toolu_1",
                            "state": "output-available",
                            "input": "Paris",
                            "output": "Sunny",
                        },
                    ],
                },
            ],
        ),
        "input: must be an object",
    ),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_refused_before_anything_goes_upstream(relay, upstream, case):
    body, words = REFUSED[case]
    reply = post_chat(relay, body)
    assert reply.status == 422, reply.text
    assert words in reply.json()["error"]["message"], reply.text
    assert upstream.requests == []


def test_huge_definitions_are_refused_at_the_bound_not_at_their_size(make_relay, upstream):
    relay = make_relay(max_body_bytes=16 << 20, max_held_body_bytes=64 << 20)
    # 20,000 properties: under MAX_JSON_VALUES, over twice MAX_TOOL_BYTES.
    schema = {"type": "object", "properties": {f"p{n}": {"type": "string"} for n in range(20_000)}}
    body = json.dumps({"message": "hi", "tools": [tool(input_schema=schema)]}).encode()
    started = time.monotonic()
    reply = post_chat(relay, content=body)
    assert reply.status == 422 and "bytes of definitions" in reply.json()["error"]["message"]
    # Generous: the walk stops at 256 KiB, before validation builds anything.
    assert time.monotonic() - started < 5
    assert upstream.requests == []


def test_a_round_trip_in_the_relays_own_dialect(relay, upstream):
    upstream.push(
        tool_answer(
            text_block(0, ["Checking."]),
            tool_block(1, "toolu_1", "weather", ['{"city"', ': "Paris"}']),
        ),
        answer("Sunny in Paris."),
    )
    first = post_chat(relay, {"message": "Weather in Paris?", "tools": [WEATHER]})
    assert first.status == 200
    done = first.frames[-1][1]
    assert done["stop_reason"] == "tool_use"
    call = next(data for name, data in first.frames if name == "tool_call")
    assert call == {
        "id": "toolu_1",
        "name": "weather",
        "run_by": "caller",
        "input": {"city": "Paris"},
    }
    sent = upstream.requests[0].body
    assert sent["tools"] == [WEATHER] and "tool_choice" not in sent
    # What a curl user does: append done.content, add the results, ask again.
    result = {"type": "tool_result", "tool_use_id": call["id"], "content": "Sunny, 21 °C"}
    turns = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": done["content"]},
        {"role": "user", "content": [result]},
    ]
    second = post_chat(relay, {"messages": turns, "tools": [WEATHER]})
    assert second.status == 200 and second.text_out == "Sunny in Paris."
    again = upstream.requests[1].body["messages"]
    assert again[1]["content"][1] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "weather",
        "input": {"city": "Paris"},
    }
    assert again[2]["content"][0]["tool_use_id"] == "toolu_1"
    assert again[2]["content"][0]["content"] == "Sunny, 21 °C"


def test_a_round_trip_in_the_ui_dialect_continues_the_same_message(relay, upstream):
    upstream.push(
        tool_answer(tool_block(0, "toolu_7", "weather", ['{"city": "Oslo"}'])),
        answer("Cold."),
    )
    body = ui_body("chat-with-a-tool-1234", "Weather in Oslo?", tools=[WEATHER])
    chunks = ui_chunks(post_chat(relay, body).text)
    available = next(c for c in chunks if c != "[DONE]" and c["type"] == "tool-input-available")
    assert available == {
        "type": "tool-input-available",
        "toolCallId": "toolu_7",
        "toolName": "weather",
        "input": {"city": "Oslo"},
    }
    assert chunks[-2]["finishReason"] == "tool-calls"
    # What useChat sends after addToolOutput: the assistant message, its tool part done.
    assistant = {
        "id": "msg_answer_1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {
                "type": "tool-weather",
                "toolCallId": "toolu_7",
                "state": "output-available",
                "input": {"city": "Oslo"},
                "output": {"celsius": -3},
            },
        ],
    }
    body["messages"].append(assistant)
    chunks = ui_chunks(post_chat(relay, body).text)
    assert chunks[0]["messageId"] == "msg_answer_1"
    turns = upstream.requests[1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"type": "tool_use", "id": "toolu_7", "name": "weather", "input": {"city": "Oslo"}}
    ]
    assert turns[2]["content"][0]["tool_use_id"] == "toolu_7"
    assert json.loads(turns[2]["content"][0]["content"]) == {"celsius": -3}


def test_a_resumed_answer_replays_its_tool_frames_exactly(relay, upstream):
    paced = [
        step
        for s in tool_answer(
            text_block(0, ["One ", "two "]),
            tool_block(1, "toolu_r", "weather", ['{"city":', ' "Rome"}']),
        )
        for step in (("sleep", 0.02), s)
    ]
    upstream.push(paced)
    seen = open_and_drop(relay.url, 1, {"tools": [WEATHER]})
    stream_id = seen[0][2]["stream_id"]
    replay = frames_with_ids(resume(relay.url, stream_id).text.split("\n"))
    assert replay[: len(seen)] == seen, "what the first reader saw, frame for frame"
    names = [name for _, name, _ in replay]
    assert names[names.index("tool_start") :] == [
        "tool_start",
        "tool_delta",
        "tool_delta",
        "tool_call",
        "done",
    ]
    assert replay[-1][2]["content"][1]["input"] == {"city": "Rome"}
    assert len(upstream.requests) == 1
