"""Tools the relay runs: real MCP servers built with the `mcp` SDK (tests/mcp_server.py, over
streamable HTTP on 127.0.0.1 and over stdio) and the fake upstream calling their tools, one
answer across the steps of the loop, ended by whatever ends a stream."""

import json
import os
import signal
import sys
import time

import httpx2
import pytest

from app.config import Settings
from tests import mcp_server
from tests.fake_upstream import answer, text_block, tool_answer, tool_block
from tests.support import (
    PROMPTLY,
    ROOT,
    RawClient,
    frames_with_ids,
    free_port,
    open_and_drop,
    post_chat,
    resume,
    start_mcp_http,
    stop_server,
    usechat,
)


def servers(url: str, **extra: object) -> str:
    return json.dumps([{"name": "t", "url": url, **extra}])


def connected(relay, server: str = "t", timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx2.get(f"{relay.url}/readyz").json().get("mcp_servers", {}).get(server):
            return True
        time.sleep(0.05)
    return False


def call(call_id: str, tool: str, arguments: dict, index: int = 0) -> list:
    return tool_block(index, call_id, f"mcp__t__{tool}", [json.dumps(arguments)])


@pytest.fixture
def mcp_relay(make_relay, mcp_http):
    mcp_server.EVENTS.clear()
    relay = make_relay(mcp_servers=servers(mcp_http))
    assert connected(relay)
    return relay


def test_a_two_step_answer_runs_the_tool_and_asks_again(mcp_relay, upstream):
    upstream.push(
        tool_answer(text_block(0, ["Let me ask."]), call("toolu_1", "echo", {"text": "hi"}, 1)),
        answer("It said hi."),
    )
    reply = post_chat(mcp_relay, {"message": "Echo hi"})
    events = reply.events
    assert events.count("start") == 1 and events.count("done") == 1
    result = next(data for name, data in reply.frames if name == "tool_result")
    assert result == {
        "id": "toolu_1",
        "name": "mcp__t__echo",
        "run_by": "relay",
        "output": [{"type": "text", "text": "echo: hi"}],
    }
    assert events.index("tool_call") < events.index("tool_result") < events.index("delta", 2)
    done = reply.frames[-1][1]
    assert done["stop_reason"] == "end_turn" and done["usage"]["output_tokens"] == 174
    assert [t["role"] for t in done["turns"]] == ["assistant", "user"]
    first, second = (r.body for r in upstream.requests)
    offered = {tool["name"] for tool in first["tools"]}
    assert {"mcp__t__echo", "mcp__t__slow", "mcp__t__fail"} <= offered
    assert second["messages"][-1] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "echo: hi"}],
            }
        ],
    }
    assert mcp_server.EVENTS == ["echo hi"]
    metrics = httpx2.get(f"{mcp_relay.url}/metrics").text
    assert 'chat_relay_tool_calls_total{outcome="ok",server="t"}' in metrics
    assert 'chat_relay_mcp_server_up{server="t"} 1.0' in metrics


def test_the_ai_sdks_own_client_reads_a_relay_tool_call(mcp_relay, upstream):
    upstream.push(tool_answer(call("toolu_r", "echo", {"text": "ui"})), answer("Echoed."))
    message = usechat(mcp_relay.url, "send", "chatWithRelayTools01", "Echo ui")
    tool = next(p for p in message["parts"] if p["type"] == "tool-mcp__t__echo")
    assert tool["state"] == "output-available" and tool["providerExecuted"] is True
    assert tool["output"] == [{"type": "text", "text": "echo: ui"}]
    assert message["text"] == "Echoed."
    steps = [p["type"] for p in message["parts"] if p["type"] == "step-start"]
    assert len(steps) == 2


def test_demo_mode_calls_the_example_servers_tool(make_relay):
    example = {"name": "notes", "command": sys.executable, "args": ["examples/mcp/server.py"]}
    relay = make_relay(
        anthropic_api_key=None,
        anthropic_base_url=None,
        demo_token_delay=0,
        mcp_servers=json.dumps([example]),
    )
    assert connected(relay, "notes")
    reply = post_chat(relay, {"message": "What time is it now?"})
    names = [data["name"] for name, data in reply.frames if name == "tool_call"]
    assert names == ["mcp__notes__now"]
    result = next(data for name, data in reply.frames if name == "tool_result")
    assert result["run_by"] == "relay" and result["output"][0]["text"].startswith("20")
    assert "`mcp__notes__now` answered" in reply.text_out


def test_parallel_calls_errors_and_structured_results(mcp_relay, upstream):
    upstream.push(
        tool_answer(
            call("a", "echo", {"text": "one"}, 0),
            call("b", "fail", {}, 1),
            call("c", "weather", {"city": "Oslo"}, 2),
            call("d", "big", {"size": 300_000}, 3),
            call("e", "echo", {"text": "five"}, 4),  # past MCP_CALLS_PER_STREAM (4)
        ),
        answer("Done."),
    )
    reply = post_chat(mcp_relay, {"message": "Many"})
    results = {data["id"]: data for name, data in reply.frames if name == "tool_result"}
    assert results["a"]["output"] == [{"type": "text", "text": "echo: one"}]
    assert results["b"]["error"] == "Error executing tool fail"  # the server's words
    assert json.loads(results["c"]["output"][0]["text"]) == {"city": "Oslo", "celsius": 21}
    assert results["e"]["error"] == "At most 4 tool calls run at once per answer."
    cut = results["d"]["output"][0]["text"]
    assert len(cut) < 101_000 and cut.endswith("over the relay's limit]")
    sent = upstream.requests[1].body["messages"][-1]["content"]
    assert [block["tool_use_id"] for block in sent] == ["a", "b", "c", "d", "e"]
    assert [block.get("is_error", False) for block in sent] == [False, True, False, False, True]
    assert reply.events[-1] == "done"
    assert "echo five" not in mcp_server.EVENTS


def test_images_pass_as_image_blocks_checked_as_attachments(mcp_relay, upstream):
    upstream.push(
        tool_answer(call("i1", "image", {}, 0), call("i2", "image", {"real": False}, 1)),
        answer("Seen."),
    )
    reply = post_chat(mcp_relay, {"message": "Pictures"})
    results = {data["id"]: data for name, data in reply.frames if name == "tool_result"}
    assert results["i1"]["output"] == [{"type": "image", "media_type": "image/png", "bytes": 32}]
    refused = [{"type": "text", "text": "[an image the relay could not pass on]"}]
    assert results["i2"]["output"] == refused
    sent = upstream.requests[1].body["messages"][-1]["content"]
    assert sent[0]["content"][0]["type"] == "image"
    assert sent[0]["content"][0]["source"]["media_type"] == "image/png"
    assert sent[1]["content"] == [
        {"type": "text", "text": "[an image the relay could not pass on]"}
    ]
    assert "data" not in json.dumps(results), "a frame never carries an image's data"


def test_an_unknown_tool_is_an_error_claude_sees(mcp_relay, upstream):
    upstream.push(tool_answer(call("u", "nonexistent", {})), answer("Sorry."))
    reply = post_chat(mcp_relay, {"message": "Unknown"})
    result = next(data for name, data in reply.frames if name == "tool_result")
    assert result["error"] == "No such tool on a connected server."
    assert upstream.requests[1].body["messages"][-1]["content"][0]["is_error"] is True


def test_a_slow_tool_times_out_and_the_server_hears_it(make_relay, upstream, mcp_http):
    mcp_server.EVENTS.clear()
    relay = make_relay(mcp_servers=servers(mcp_http, timeout=0.5))
    assert connected(relay)
    upstream.push(tool_answer(call("s", "slow", {"seconds": 30})), answer("Too slow."))
    reply = post_chat(relay, {"message": "Slow"})
    result = next(data for name, data in reply.frames if name == "tool_result")
    assert result["error"] == "The tool did not answer within 0.5 s."
    assert reply.events[-1] == "done"
    deadline = time.monotonic() + 2
    while "slow cancelled" not in mcp_server.EVENTS and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mcp_server.EVENTS == ["slow started", "slow cancelled"]


def test_a_caller_leaving_mid_call_cancels_the_call_and_asks_nothing_more(
    mcp_relay, upstream, server_loop
):
    upstream.push(tool_answer(call("s", "slow", {"seconds": 30})))

    async def run() -> RawClient:
        client = RawClient(mcp_relay.url, "Slow")
        await client.open()
        await client.read_until(b"event: tool_call")
        return client

    client = server_loop.run(run())
    assert server_loop.wait_for(lambda: "slow started" in mcp_server.EVENTS, timeout=5)
    server_loop.call(client.hang_up)
    assert server_loop.wait_for(lambda: "slow cancelled" in mcp_server.EVENTS, timeout=5)
    assert time.monotonic() - client.closed_at < 1.0 + PROMPTLY
    time.sleep(0.2)
    assert len(upstream.requests) == 1, "no further upstream request"


def test_a_stop_mid_call_cancels_it(mcp_relay, upstream):
    upstream.push(tool_answer(call("s", "slow", {"seconds": 30})))
    with (
        httpx2.Client(timeout=10) as client,
        client.stream(
            "POST", f"{mcp_relay.url}/api/chat", json={"message": "Slow", "resumable": True}
        ) as reply,
    ):
        lines, reading = [], reply.iter_lines()
        for line in reading:
            lines.append(line)
            if line.startswith("event: tool_call"):
                break
        deadline = time.monotonic() + 5
        while "slow started" not in mcp_server.EVENTS and time.monotonic() < deadline:
            time.sleep(0.01)
        stream_id = frames_with_ids(lines)[0][2]["stream_id"]
        stopped = time.monotonic()
        assert client.delete(f"{mcp_relay.url}/api/chat/{stream_id}").status_code == 204
        rest = frames_with_ids([*lines, *reading])
    deadline = time.monotonic() + 2
    while "slow cancelled" not in mcp_server.EVENTS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "slow cancelled" in mcp_server.EVENTS
    assert time.monotonic() - stopped < 2
    assert rest[-1][1] == "error" and rest[-1][2]["error"]["type"] == "cancelled"
    assert len(upstream.requests) == 1


def test_the_step_limit_asks_the_last_step_without_tools(make_relay, upstream, mcp_http):
    relay = make_relay(mcp_servers=servers(mcp_http), max_tool_steps=2)
    assert connected(relay)
    upstream.push(
        tool_answer(call("1", "echo", {"text": "a"})),
        answer("In words, then."),
    )
    reply = post_chat(relay, {"message": "Loop"})
    assert reply.text_out == "In words, then."
    assert [r.body.get("tool_choice") for r in upstream.requests] == [None, {"type": "none"}]


def test_a_mixed_step_runs_the_relays_tools_and_hands_back_the_rest(mcp_relay, upstream):
    upstream.push(
        tool_answer(
            call("relay_1", "echo", {"text": "x"}, 0),
            tool_block(1, "caller_1", "lookup", ['{"id": 7}']),
        ),
        answer("Thanks."),
    )
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    reply = post_chat(mcp_relay, {"message": "Mixed", "tools": tools})
    done = reply.frames[-1][1]
    assert done["stop_reason"] == "tool_use" and len(upstream.requests) == 1
    assert [b["id"] for b in done["content"]] == ["relay_1", "caller_1"]
    assert [b["tool_use_id"] for b in done["tool_results"]] == ["relay_1"]
    # The caller sends the relay's results with its own: the pairs hold.
    mine = {"type": "tool_result", "tool_use_id": "caller_1", "content": "found"}
    turns = [
        {"role": "user", "content": "Mixed"},
        {"role": "assistant", "content": done["content"]},
        {"role": "user", "content": [*done["tool_results"], mine]},
    ]
    again = post_chat(mcp_relay, {"messages": turns, "tools": tools})
    assert again.status == 200 and again.text_out == "Thanks."


def test_resume_mid_loop_replays_every_step(mcp_relay, upstream):
    upstream.push(
        tool_answer(text_block(0, ["Checking "]), call("s", "slow", {"seconds": 0.5}, 1)),
        answer("after the wait."),
    )
    seen = open_and_drop(mcp_relay.url, 1)
    replay = frames_with_ids(resume(mcp_relay.url, seen[0][2]["stream_id"]).text.split("\n"))
    assert replay[: len(seen)] == seen
    names = [name for _, name, _ in replay]
    assert names.index("tool_result") < names.index("done")
    assert "".join(d["text"] for _, n, d in replay if n == "delta") == "Checking after the wait."


def test_a_server_down_at_start_is_used_once_it_answers(make_relay, upstream, server_loop):
    port = free_port()
    relay = make_relay(
        mcp_servers=servers(f"http://127.0.0.1:{port}/mcp"), mcp_reconnect_seconds=0.1
    )
    assert httpx2.get(f"{relay.url}/readyz").json()["mcp_servers"] == {"t": False}
    upstream.push(answer("No tools yet."))
    assert post_chat(relay, {"message": "hi"}).events[-1] == "done"
    assert "tools" not in upstream.requests[0].body
    server, _ = server_loop.run(start_mcp_http(port))
    try:
        assert connected(relay)
        upstream.push(tool_answer(call("1", "echo", {"text": "up"})), answer("Up."))
        reply = post_chat(relay, {"message": "now"})
        result = next(data for name, data in reply.frames if name == "tool_result")
        assert result["output"] == [{"type": "text", "text": "echo: up"}]
    finally:
        server_loop.run(stop_server(server))


def test_a_stdio_server_that_dies_is_started_again(make_relay, upstream):
    config = {
        "name": "t",
        "command": sys.executable,
        "args": [str(ROOT / "tests" / "mcp_server.py")],
        "env": {"PYTHONPATH": str(ROOT)},
    }
    relay = make_relay(mcp_servers=json.dumps([config]), mcp_reconnect_seconds=0.1)
    assert connected(relay)

    def server_pid() -> int:
        upstream.push(tool_answer(call("p", "pid", {})), answer("ok"))
        reply = post_chat(relay, {"message": "pid"})
        return int(next(d for n, d in reply.frames if n == "tool_result")["output"][0]["text"])

    first = second = server_pid()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if connected(relay, timeout=0.1):
            try:
                second = server_pid()
            except (StopIteration, KeyError):  # still the dead one's session: not yet
                continue
            if second != first:
                break
    assert second != first, "a new process serves the tools"


def test_a_stdio_server(make_relay, upstream, tmp_path):
    events = tmp_path / "events"
    config = {
        "name": "t",
        "command": sys.executable,
        "args": [str(ROOT / "tests" / "mcp_server.py")],
        "env": {"MCP_TEST_EVENTS": str(events), "PYTHONPATH": str(ROOT)},
        "tools": ["echo"],
    }
    relay = make_relay(mcp_servers=json.dumps([config]))
    assert connected(relay)
    upstream.push(tool_answer(call("1", "echo", {"text": "piped"})), answer("Piped."))
    reply = post_chat(relay, {"message": "stdio"})
    assert {t["name"] for t in upstream.requests[0].body["tools"]} == {"mcp__t__echo"}
    result = next(data for name, data in reply.frames if name == "tool_result")
    assert result["output"] == [{"type": "text", "text": "echo: piped"}]
    assert events.read_text() == "echo piped\n"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("not json", "not JSON"),
        ('{"name": "x"}', "a JSON list"),
        ('[{"name": "Bad Name", "url": "http://a"}]', "mcp_servers.0.name"),
        ('[{"name": "a", "url": "http://a", "command": "x"}]', "either `url` or `command`"),
        ('[{"name": "a", "url": "http://a"}, {"name": "a", "url": "http://b"}]', "used twice"),
        ('[{"name": "a", "url": "http://a", "headers": {"k": "${NO_SUCH_VAR_9}"}}]', "NO_SUCH"),
        ("@/nonexistent/servers.json", "cannot read"),
        ('[{"name": "a", "command": "x", "tools": ["' + "t" * 60 + '"]}]', "over 64"),
    ],
)
def test_a_bad_configuration_is_refused_at_start_up(value, words):
    with pytest.raises(ValueError, match=words):
        Settings(_env_file=None, mcp_servers=value)  # type: ignore[call-arg]


def test_header_values_name_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("SEARCH_TOKEN", "s3cret")
    path = tmp_path / "servers.json"
    path.write_text(
        '[{"name": "s", "url": "http://a/mcp", "headers": {"x-key": "${SEARCH_TOKEN}"}}]'
    )
    settings = Settings(_env_file=None, mcp_servers=f"@{path}")  # type: ignore[call-arg]
    assert settings.mcp_servers[0].headers == {"x-key": "s3cret"}


def test_each_step_and_each_tool_call_is_a_span(make_relay, upstream, mcp_http, otlp):
    relay = make_relay(mcp_servers=servers(mcp_http))
    assert connected(relay)
    upstream.push(
        tool_answer(call("ok1", "echo", {"text": "t"}, 0), call("bad1", "fail", {}, 1)),
        answer("Traced."),
    )
    assert post_chat(relay, {"message": "Trace it"}).events[-1] == "done"
    spans = otlp.wait_for_spans(  # the request's span may come in a later batch
        lambda s: len([x for x in s if x.name.startswith(("chat ", "exec", "POST "))]) == 5
    )
    (request,) = [s for s in spans if s.name == "POST /api/chat"]
    chat_spans = [s for s in spans if s.name.startswith("chat ")]
    tools = {s.attributes["gen_ai.tool.call.id"]: s for s in spans if s.name.startswith("exec")}
    assert len(chat_spans) == 2, "one per upstream request of the loop"
    assert [s.attributes["gen_ai.response.finish_reasons"] for s in chat_spans] == [
        ["tool_use"],
        ["end_turn"],
    ]
    assert {s.parent_id for s in [*chat_spans, *tools.values()]} == {request.span_id}
    assert tools["ok1"].name == "execute_tool mcp__t__echo"
    assert tools["ok1"].attributes["gen_ai.operation.name"] == "execute_tool"
    assert "error.type" not in tools["ok1"].attributes
    assert tools["bad1"].attributes["error.type"] == "error"
