"""Tools on the page (static/tools.js, static/sources.js), in Chromium: the page's own
`local_time` run in the browser and the conversation continued, in demo mode end to end;
Anthropic's server tools as cards with links and the answer's sources; untrusted URLs kept
inert; the automatic loop bounded; resumed and reloaded answers redrawn the same; a full
localStorage survived."""

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.fake_upstream import (
    answer,
    cited_block,
    message_end,
    message_start,
    plain,
    search_result,
    text_block,
    tool_answer,
    tool_block,
    web_citation,
    whole_block,
)
from tests.support import ROOT

pytest.importorskip("playwright.sync_api")

DEMO = {"anthropic_api_key": None, "anthropic_base_url": None, "demo_token_delay": 0}
SHOTS = ROOT / "test-artifacts"


def calling(call_id: str, pieces: list[str], before: str = "Let me look. ") -> list:
    """An upstream answer: some words, then a call of the page's local_time."""
    return tool_answer(text_block(0, [before]), tool_block(1, call_id, "local_time", pieces))


def chat_posts(page) -> list[dict]:
    """The bodies of the page's POST /api/chat, as it sends them."""
    posts: list[dict] = []

    def seen(request) -> None:
        if request.method == "POST" and request.url.endswith("/api/chat"):
            posts.append(request.post_data_json)

    page.page.on("request", seen)
    return posts


def test_local_time_runs_in_the_browser_and_the_answer_goes_on(chat):
    page = chat(timezone="Asia/Tokyo", **DEMO)
    posts = chat_posts(page)
    page.send("What is the local_time?")
    body = page.answer()
    body.filter(has_text="answered").wait_for()
    page.wait_done()
    card = page.page.locator(".tool")
    assert card.count() == 1 and card.get_attribute("data-run-by") == "caller"
    assert card.locator(".tool-name").inner_text() == "local_time"
    assert card.locator(".tool-by").inner_text() == "run in your browser"
    assert card.locator(".tool-state").inner_text() == "done"
    assert card.locator(".tool-input").inner_text() == "{}"
    # Both requests declare the tool; the second carries the call and the browser's answer.
    assert len(posts) == 2
    for post in posts:
        (tool,) = post["tools"]
        assert tool["name"] == "local_time" and tool["input_schema"]["type"] == "object"
        assert "time zone" in tool["description"]
    asked, called, results = posts[1]["messages"]
    assert asked == {"role": "user", "content": "What is the local_time?"}
    (use,) = [b for b in called["content"] if b["type"] == "tool_use"]
    assert use["name"] == "local_time" and use["input"] == {}
    (result,) = results["content"]
    assert result["tool_use_id"] == use["id"] and "is_error" not in result
    # The browser's clock, in the browser's time zone.
    told = json.loads(result["content"])
    assert told["time_zone"] == "Asia/Tokyo" and told["utc_offset"] == "+09:00"
    when = datetime.fromisoformat(f"{told['date']}T{told['time']}+09:00")
    assert abs(datetime.now(ZoneInfo("Asia/Tokyo")) - when) < timedelta(minutes=2)
    assert json.loads(card.locator(".tool-output").inner_text()) == told
    # The continuation came into the same answer, after the card, repeating what it was told.
    assert page.page.locator(".message.assistant").count() == 1
    parts = body.locator(":scope > *")
    assert [parts.nth(n).get_attribute("class") for n in range(3)] == ["text", "tool", "text"]
    assert "so I call it" in parts.nth(0).inner_text()
    text = body.inner_text()
    assert told["time"] in text and "Asia/Tokyo" in text
    usage = page.page.locator(".usage").inner_text()
    assert re.fullmatch(r"\d+ tokens in.* · \d+ out", usage)
    page.page.screenshot(path=SHOTS / "page-local-time.png", full_page=True)

    # A reload redraws the card; the next question sends the tool turns back as they were.
    page.page.reload()
    page.wait_done()
    assert page.page.locator(".tool .tool-state").inner_text() == "done"
    assert json.loads(page.page.locator(".tool .tool-output").inner_text()) == told
    assert page.answer().inner_text() == text
    page.send("Thanks")
    page.wait_done(2)
    roles = [m["role"] for m in posts[-1]["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert posts[-1]["messages"][1:3] == posts[1]["messages"][1:3]
    assert page.page.locator(".meta .error").count() == 0


def test_thinking_goes_back_signed_with_the_tool_turn(chat):
    page = chat(**DEMO)
    posts = chat_posts(page)
    page.page.check("#think")
    page.send("The local_time, please")
    page.answer().filter(has_text="answered").wait_for()
    page.wait_done()
    called = posts[1]["messages"][1]["content"]
    assert [b["type"] for b in called] == ["thinking", "text", "tool_use"]
    assert called[0]["signature"] == "demo-signature"
    assert page.page.locator(".meta .error").count() == 0
    thought = page.page.locator(".message.assistant .thought").text_content()
    assert thought.count("The question is") == 2  # both steps' thinking shown
    assert "with it.\n\nThe question is “The local_time, please”" in thought  # a paragraph each


def test_a_server_search_shows_its_links_and_the_sources(chat):
    page = chat(server_tools=["web_search"], **DEMO)
    page.send("Anything new about otters?")
    page.wait_done()
    card = page.page.locator(".tool")
    assert card.get_attribute("data-run-by") == "anthropic"
    assert card.locator(".tool-by").inner_text() == "run by Anthropic"
    assert card.locator(".tool-name").inner_text() == "web_search"
    assert json.loads(card.locator(".tool-input").inner_text()) == {
        "query": "Anything new about otters?"
    }
    links = card.locator(".tool-links a")
    assert links.count() == 2
    assert links.first.get_attribute("href") == "https://example.com/made-up-1"
    assert "demo mode: not a real search" in links.first.inner_text()
    assert links.first.get_attribute("rel") == "noopener noreferrer"
    sources = page.page.locator(".sources a")
    assert sources.count() == 1  # cited once: one source
    assert sources.get_attribute("href") == "https://example.com/made-up-1"
    page.page.screenshot(path=SHOTS / "page-web-search.png", full_page=True)
    page.page.reload()
    page.wait_done()
    assert page.page.locator(".tool-links a").count() == 2
    assert page.page.locator(".sources a").count() == 1


def test_untrusted_urls_stay_inert_and_sources_are_deduped(chat, upstream):
    urls = ["https://example.org/a", "javascript:window.__pwned=1", "data:text/html,<b>1</b>"]
    found = search_result("srvtoolu_1", *urls)
    found["content"][1]["title"] = "Evil <b>bold</b>"
    cited = [web_citation(urls[0], "one"), web_citation(urls[1], "two")]
    cited.append({**cited[0], "title": "Page 0 again"})
    upstream.push(
        tool_answer(
            tool_block(0, "srvtoolu_1", "web_search", ['{"query": "otters"}'], "server_tool_use"),
            whole_block(1, found),
            *(cited_block(2 + n, c, ["Otters hold hands. "]) for n, c in enumerate(cited)),
            stop_reason="end_turn",
        )
    )
    page = chat(server_tools=["web_search"])
    page.send("Otters?")
    page.wait_done()
    card = page.page.locator(".tool")
    assert card.locator(".tool-links li").count() == 3
    assert card.locator("a").count() == 1  # only the https one is a link
    assert "Evil <b>bold</b>" in card.inner_text()  # as text, not HTML
    assert page.page.locator(".tool b").count() == 0
    sources = page.page.locator(".sources a")
    assert sources.count() == 1 and sources.inner_text() == "Page 0"
    for link in page.page.locator("a").all():
        assert (link.get_attribute("href") or "").startswith(("https:", "http:"))
    assert page.page.evaluate("window.__pwned") is None
    # The search's blocks go back whole, encrypted fields too, on the next turn.
    upstream.push(answer("Sure."))
    page.send("More?")
    page.wait_done(2)
    sent = upstream.requests[-1].body["messages"][1]["content"]
    assert [b["type"] for b in sent[:3]] == ["server_tool_use", "web_search_tool_result", "text"]
    assert sent[1]["content"][0]["encrypted_content"] == "ENCRYPTED-CONTENT-0"
    assert sent[2]["citations"][0]["encrypted_index"] == "ENCRYPTED-INDEX"


def test_input_streams_then_shows_pretty_and_unknown_tools_get_an_error(chat, upstream):
    pieces = ['{"ci', 'ty": "Pa', 'ris", "days"', ": 3}"]
    call = tool_block(1, "toolu_w", "weather", pieces)
    # The input's pieces arrive 0.3 s apart: the card shows the text so far meanwhile.
    paced = [call[0], *(s for step in call[1:] for s in (("sleep", 0.3), step))]
    script = [message_start(), *text_block(0, ["Let me look. "]), *paced, *message_end("tool_use")]
    upstream.push(script, answer("No weather here."))
    page = chat()
    page.send("Weather in Paris?")
    shown = page.page.locator(".tool .tool-input")
    shown.filter(has_text='{"city": "Pa').wait_for()
    assert page.page.locator(".tool .tool-state").inner_text() == "calling…"
    page.wait_done()
    assert shown.inner_text() == '{\n  "city": "Paris",\n  "days": 3\n}'
    assert page.page.locator(".tool .tool-state").inner_text() == "failed"
    (result,) = upstream.requests[1].body["messages"][-1]["content"]
    assert result["tool_use_id"] == "toolu_w" and result["is_error"] is True
    assert "no tool named weather" in result["content"]
    assert page.answer().inner_text().endswith("No weather here.")


def test_the_automatic_loop_is_bounded(chat, upstream):
    upstream.push(*(calling(f"toolu_{n}", ["{}"]) for n in range(6)))
    page = chat()
    page.send("Keep asking")
    page.page.locator(".meta .note").wait_for()
    assert page.page.locator(".meta .note").inner_text() == "Stopped after 5 tool rounds."
    assert len(upstream.requests) == 6  # the question and 5 continuations
    assert page.page.locator(".tool").count() == 6
    # The last call was not run, and says so in the conversation sent next.
    upstream.push(answer("Fine."))
    page.send("Stop it")
    page.wait_done(2)
    sent = upstream.requests[-1].body["messages"]
    assert sent[-2]["content"][0]["tool_use_id"] == "toolu_5"
    assert sent[-2]["content"][0]["is_error"] is True
    assert plain(sent)[-1] == {"role": "user", "content": "Stop it"}


def test_a_continuation_resumes_after_a_reload(chat, upstream):
    words = [f"w{i} " for i in range(80)]
    slow = answer(*words, delay=0.03)
    upstream.push(calling("toolu_r", ["{", "}"], before="One moment. "), slow)
    page = chat()
    page.allowed.append("ERR_CONNECTION_RESET|ERR_INCOMPLETE_CHUNKED_ENCODING")
    page.send("Time?")
    page.answer().filter(has_text="w10 ").wait_for()
    page.page.reload()
    page.answer().filter(has_text="w79").wait_for()
    page.wait_done()
    assert len(upstream.requests) == 2, "resuming must not ask the upstream again"
    text = page.answer().inner_text()
    assert text.count("One moment.") == 1 and text.count("w10 ") == 1
    assert text.split("\n")[-1].split() == [w.strip() for w in words]
    assert page.page.locator(".tool .tool-state").inner_text() == "done"
    assert page.page.locator(".message.assistant").count() == 1


def test_a_full_storage_does_not_break_the_conversation(chat, upstream):
    # Kept whole to be sent back, server tools' results can fill localStorage's few MB.
    page = chat()
    page.page.evaluate(
        """() => {
            let n = 0;
            for (const size of [1 << 20, 1 << 14, 1 << 8]) {
                const filler = "x".repeat(size);
                try { for (;;) localStorage.setItem(`filler${n++}`, filler); } catch {}
            }
        }"""
    )
    page.send("Hello")
    page.wait_done()
    upstream.push(answer("Still here."))
    page.send("Again")
    page.wait_done(2)
    assert page.answer().inner_text() == "Still here."
    assert plain(upstream.requests[-1].body["messages"])[1]["content"] == "Hello, world!"


def relay_call(call_id: str, index: int) -> list:
    """A call of tests/mcp_server.py's echo, as the relay offers it."""
    return tool_block(index, call_id, "mcp__t__echo", ['{"text": "hi"}'])


def test_the_relays_own_tools_show_and_go_back_with_the_pages(chat, upstream, mcp_http):
    # One step calls a tool the relay runs (MCP) and the page's local_time; the next, the
    # relay's alone, then words. Everything the relay ran goes back as it said.
    upstream.push(
        tool_answer(
            text_block(0, ["Both. "]),
            relay_call("relay_1", 1),
            tool_block(2, "mine_1", "local_time", ["{}"]),
        ),
        tool_answer(relay_call("relay_2", 0)),
        answer("Done with tools."),
    )
    page = chat(mcp_servers=json.dumps([{"name": "t", "url": mcp_http}]))
    posts = chat_posts(page)
    connected = "fetch('/readyz').then((r) => r.json()).then((ready) => ready.mcp_servers.t)"
    page.page.wait_for_function(connected, timeout=15_000)
    page.send("Echo and the time")
    page.answer().filter(has_text="Done with tools.").wait_for()
    page.wait_done()
    cards = page.page.locator(".tool")
    assert cards.count() == 3
    assert [cards.nth(n).get_attribute("data-run-by") for n in range(3)] == [
        "relay",
        "caller",
        "relay",
    ]
    assert cards.first.locator(".tool-by").inner_text() == "run on the server"
    assert cards.first.locator(".tool-output").inner_text() == "echo: hi"
    # The second POST: the relay's result first, then the page's, for the one step.
    _, step, results = posts[1]["messages"]
    assert [b["id"] for b in step["content"] if b["type"] == "tool_use"] == ["relay_1", "mine_1"]
    assert [b["tool_use_id"] for b in results["content"]] == ["relay_1", "mine_1"]
    # The next question sends the relay's own step (done.turns) before the last words.
    page.send("And now?")
    page.wait_done(2)
    sent = posts[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant"] * 3 + ["user"]
    assert sent[3]["content"][0]["id"] == "relay_2"
    assert sent[4]["content"][0]["tool_use_id"] == "relay_2"
    assert plain(sent[5:]) == [
        {"role": "assistant", "content": "Done with tools."},
        {"role": "user", "content": "And now?"},
    ]
