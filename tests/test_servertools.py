"""Anthropic's server tools by setting (app/servertools.py): what every request carries, a
paused turn continued as one answer through a real relay, and a stream cancelled mid-call
in a continued step still closing its upstream at once."""

import pytest

from app.config import Settings
from app.servertools import citation_of, definitions, newest_version, result_of
from tests.fake_upstream import (
    message_start,
    search_result,
    text_block,
    tool_answer,
    tool_block,
    whole_block,
)
from tests.support import PROMPTLY, RawClient, post_chat


def test_the_newest_versions_the_sdk_knows():
    for tool in ("web_search", "web_fetch", "code_execution"):
        name, date = newest_version(tool).rsplit("_", 1)
        assert name == tool and len(date) == 8 and date.isdigit()
        assert date >= "20250305"
    with pytest.raises(ValueError):
        newest_version("teleport")


def test_definitions_carry_the_limits_of_the_web_tools():
    tools = definitions(["web_search", "code_execution"], 3, ["example.org"], [])
    assert tools[0] == {
        "type": newest_version("web_search"),
        "name": "web_search",
        "max_uses": 3,
        "allowed_domains": ["example.org"],
    }
    assert tools[1] == {"type": newest_version("code_execution"), "name": "code_execution"}


def test_settings_refuse_unknown_tools_and_both_domain_lists():
    with pytest.raises(ValueError, match="unknown"):
        Settings(_env_file=None, server_tools="web_search,teleport")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="not both"):
        Settings(_env_file=None, web_allowed_domains="a.org", web_blocked_domains="b.org")  # type: ignore[call-arg]


def test_summaries_show_what_a_page_may_show_and_nothing_encrypted():
    fetched = {
        "type": "web_fetch_tool_result",
        "tool_use_id": "s",
        "content": {
            "type": "web_fetch_result",
            "url": "https://example.org",
            "content": {"type": "document", "title": "Example", "source": {"data": "SECRET"}},
        },
    }
    assert result_of(fetched) == ({"url": "https://example.org", "title": "Example"}, None)
    ran = {
        "type": "bash_code_execution_tool_result",
        "tool_use_id": "s",
        "content": {
            "type": "bash_code_execution_result",
            "stdout": "4\n",
            "stderr": "",
            "return_code": 0,
            "content": [],
        },
    }
    assert result_of(ran) == ({"stdout": "4\n", "stderr": "", "return_code": 0}, None)
    failed = {
        "type": "web_fetch_tool_result",
        "tool_use_id": "s",
        "content": {"error_code": "x" * 999},
    }
    assert result_of(failed) == (None, "x" * 64)
    cited = citation_of({"type": "char_location", "document_title": "Doc", "cited_text": "t"})
    assert cited == {"type": "char_location", "url": None, "title": "Doc", "cited_text": "t"}


SEARCH = tool_block(0, "srvtoolu_1", "web_search", ['{"query": "news"}'], kind="server_tool_use")


def test_a_paused_turn_is_continued_as_one_answer(make_relay, upstream):
    relay = make_relay(server_tools="web_search", server_tool_max_uses=2)
    upstream.push(
        tool_answer(SEARCH, stop_reason="pause_turn", output_tokens=10),
        tool_answer(
            whole_block(0, search_result("srvtoolu_1", "https://example.org/n")),
            text_block(1, ["Here is the news."]),
            stop_reason="end_turn",
            output_tokens=5,
            server_tool_use={"web_search_requests": 1},
        ),
    )
    reply = post_chat(relay, {"message": "What is new?"})
    assert reply.events.count("start") == 1 and reply.events[-1] == "done"
    assert reply.events.index("tool_start") < reply.events.index("tool_result")
    done = reply.frames[-1][1]
    assert done["stop_reason"] == "end_turn"
    assert done["usage"]["output_tokens"] == 15 and done["usage"]["input_tokens"] == 24
    assert [b["type"] for b in done["content"]] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    first, second = (r.body for r in upstream.requests)
    assert first["tools"] == [
        {"type": newest_version("web_search"), "name": "web_search", "max_uses": 2}
    ]
    # The second request continues the turn: the paused content, as the API sent it.
    assert second["messages"][-1]["role"] == "assistant"
    assert second["messages"][-1]["content"][0]["id"] == "srvtoolu_1"
    assert len(second["messages"]) == len(first["messages"]) + 1


def test_the_continuation_stops_at_max_tool_steps(make_relay, upstream):
    relay = make_relay(server_tools="web_search", max_tool_steps=2)
    paused = tool_answer(SEARCH, stop_reason="pause_turn")
    upstream.push(paused, paused, paused)
    reply = post_chat(relay, {"message": "Loop?"})
    assert reply.frames[-1][1]["stop_reason"] == "pause_turn"
    assert len(upstream.requests) == 2


def test_a_caller_may_not_take_a_server_tools_name(make_relay, upstream):
    relay = make_relay(server_tools="web_search")
    schema = {"type": "object"}
    reply = post_chat(
        relay, {"message": "x", "tools": [{"name": "web_search", "input_schema": schema}]}
    )
    assert reply.status == 422 and "server tool" in reply.json()["error"]["message"]
    assert upstream.requests == []


def test_a_caller_leaving_mid_call_in_a_continued_step_closes_the_upstream(
    make_relay, upstream, server_loop
):
    relay = make_relay(server_tools="web_search")
    slow = tool_block(
        0, "srvtoolu_2", "web_search", ['{"q', 'uery"', ': "a"}'], kind="server_tool_use"
    )
    paced = [step for s in slow for step in (("sleep", 0.05), s)]
    upstream.push(
        tool_answer(SEARCH, stop_reason="pause_turn"), [message_start(), *paced[:-2], ("stall",)]
    )

    async def run() -> RawClient:
        client = RawClient(relay.url, "leave mid call")
        await client.open()
        await client.read_until(b"event: tool_delta", 3)  # the first step's, then two
        client.hang_up()
        return client

    client = server_loop.run(run())
    second = upstream.requests[1]
    assert server_loop.wait_for(lambda: second.conn.closed is not None, timeout=5)
    assert second.conn.closed - client.closed_at < PROMPTLY
    assert len(upstream.requests) == 2, "no further step once the caller left"


def test_pause_turn_needs_server_tools_to_be_continued(relay, upstream):
    upstream.push(tool_answer(text_block(0, ["Partial."]), stop_reason="pause_turn"))
    reply = post_chat(relay, {"message": "x"})
    assert reply.frames[-1][1]["stop_reason"] == "pause_turn"
    assert len(upstream.requests) == 1
