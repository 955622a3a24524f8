"""What lands in metrics and logs is bounded, whatever callers and upstreams send."""

import json
import re
import socket

import httpx2

from tests.fake_upstream import (
    error_event,
    message_end,
    message_start,
    text_block,
    tool_answer,
    tool_block,
)
from tests.support import file_data, post_chat


def series(relay, metric: str) -> list[str]:
    text = httpx2.get(f"{relay.url}/metrics").text
    return re.findall(rf"^{metric}\{{[^}}]*\}}", text, re.M)


def test_caller_chosen_models_do_not_become_metric_labels(make_relay):
    # Demo mode answers any model name, as any ANTHROPIC_BASE_URL may.
    relay = make_relay(anthropic_api_key=None, anthropic_base_url=None, demo_token_delay=0)
    before = set(series(relay, "chat_relay_input_tokens_total"))  # the registry is global
    for i in range(300):
        reply = post_chat(relay, {"message": "hi", "model": f"model-{i}", "max_tokens": 1})
        assert reply.status == 200
    added = set(series(relay, "chat_relay_input_tokens_total")) - before
    assert added <= {'chat_relay_input_tokens_total{model="other"}'}, added
    assert 'chat_relay_input_tokens_total{model="other"}' in before | added


def test_an_upstreams_invented_error_types_do_not_become_labels(make_relay, upstream):
    relay = make_relay(upstream_retries=0)
    for i in range(20):
        upstream.push(
            [message_start(), *text_block(0, ["x"])[:-1], error_event(f"made_up_{i}", "m")]
        )
        post_chat(relay)
    assert not [s for s in series(relay, "chat_relay_streams_failed_total") if "made_up" in s]


def test_api_docs_are_off_unless_asked_for(make_relay):
    quiet = make_relay()
    for path in ("/docs", "/redoc", "/openapi.json"):
        reply = httpx2.get(f"{quiet.url}{path}")
        assert reply.status_code == 404 and reply.json()["error"]["type"] == "not_found"
    docs = make_relay(api_docs=True)
    assert httpx2.get(f"{docs.url}/openapi.json").json()["paths"]["/api/chat"]


def test_metrics_on_a_port_of_their_own(make_relay):
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = make_relay(metrics_port=port)
    assert post_chat(relay).status == 200
    assert httpx2.get(f"{relay.url}/metrics").status_code == 404  # not on the API's port
    scraped = httpx2.get(f"http://127.0.0.1:{port}/metrics")
    assert scraped.status_code == 200 and "chat_relay_streams_started_total" in scraped.text


def test_cache_tokens_are_counted_by_type_and_logged(relay, upstream, server_loop, relay_log):
    def counted(kind: str) -> float:
        text = httpx2.get(f"{relay.url}/metrics").text
        line = f'chat_relay_cache_tokens_total{{model="claude-sonnet-5-5",type="{kind}"}} '
        found = re.search(rf"^{re.escape(line)}(\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    before = counted("read"), counted("write")
    start = message_start(cache_read_input_tokens=900, cache_creation_input_tokens=40)
    upstream.push([start, *text_block(0, ["ok"]), *message_end()])
    reply = httpx2.post(f"{relay.url}/api/chat", json={"message": "hi"})
    done = json.loads(reply.text.strip().split("\n")[-1][6:])
    assert done["usage"]["cache_read_input_tokens"] == 900
    assert done["usage"]["cache_creation_input_tokens"] == 40
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1, 2)
    line = relay_log.chats[0]
    assert line["cache_read_tokens"] == 900 and line["cache_write_tokens"] == 40
    assert (counted("read") - before[0], counted("write") - before[1]) == (900, 40)
    sent = upstream.requests[0].body["messages"][-1]["content"][-1]
    assert sent["cache_control"] == {"type": "ephemeral"}, "on by default"


def test_tool_calls_are_counted_by_who_runs_them_and_logged_without_content(
    make_relay, upstream, server_loop, relay_log
):
    relay = make_relay(server_tools="web_search")

    def counted(metric: str, label: str) -> float:
        text = httpx2.get(f"{relay.url}/metrics").text
        found = re.search(rf"^{metric}\{{{label}\}} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    caller = ("chat_relay_model_tool_calls_total", 'run_by="caller"')
    searches = ("chat_relay_server_tool_requests_total", 'tool="web_search"')
    before = counted(*caller), counted(*searches)
    upstream.push(
        tool_answer(
            tool_block(0, "s1", "web_search", ['{"query": "SECRET-QUERY"}'], "server_tool_use"),
            tool_block(1, "t1", "lookup", ['{"id": "SECRET-INPUT"}']),
            tool_block(2, "t2", "lookup", ["{}"]),
            server_tool_use={"web_search_requests": 1, "invented_requests": 7},
        )
    )
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    reply = post_chat(relay, {"message": "hi", "tools": tools})
    assert reply.frames[-1][1]["stop_reason"] == "tool_use"
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1, 2)
    line = relay_log.chats[0]
    assert line["tool_calls"] == {"anthropic": 1, "caller": 2} and line["steps"] == 1
    assert line["server_tool_use"] == {"web_search": 1}, "only known counters"
    assert "SECRET" not in json.dumps(line)
    assert (counted(*caller) - before[0], counted(*searches) - before[1]) == (2, 1)


def test_log_content_describes_a_tool_loops_turns(make_relay, upstream, server_loop, relay_log):
    relay = make_relay(log_content=True)
    image = {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": file_data("image/png", 300),
        },
    }
    turns = [
        {"role": "user", "content": "Show me"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "snap", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [image]}],
        },
    ]
    tools = [{"name": "snap", "input_schema": {"type": "object"}}]
    assert post_chat(relay, {"messages": turns, "tools": tools}).status == 200
    assert server_loop.wait_for(lambda: len(relay_log.chats) == 1, 2)
    logged = relay_log.chats[0]["messages"]
    assert logged[1]["content"][0]["name"] == "snap"
    assert logged[2]["content"][0]["content"] == [
        {"type": "image", "media_type": "image/png", "bytes": 300}
    ]
