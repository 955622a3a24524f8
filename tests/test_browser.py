"""The chat page in a real browser: Debian's Chromium driven by Playwright, against the
relay under uvicorn and the fake upstream. Every test also fails on any console error,
page error, CSP violation or request leaving the page's origin."""

import re
import time

import pytest

from tests.fake_upstream import (
    answer,
    error_event,
    http_error,
    last_text,
    message_end,
    message_start,
    plain,
    text_block,
    thinking_block,
)
from tests.support import CuttableProxy

pytest.importorskip("playwright.sync_api")


def words(n: int) -> list[str]:
    return [f"word{i} " for i in range(n)]


def test_answer_streams_progressively(chat, upstream):
    upstream.push(answer(*words(30), delay=0.08))
    page = chat()
    page.send("Hello")
    body = page.answer()
    # Intermediate states: part of the answer on screen while the rest is still coming.
    body.filter(has_text="word3 ").wait_for()
    seen = [len(body.inner_text())]
    for _ in range(3):
        time.sleep(0.3)
        seen.append(len(body.inner_text()))
    assert "word29" not in body.inner_text()
    assert seen == sorted(seen) and seen[-1] > seen[0], f"text did not grow: {seen}"
    page.wait_done()
    assert body.inner_text().strip() == "".join(words(30)).strip()
    assert page.page.locator(".usage").inner_text() == "12 tokens in · 87 out"


def test_follow_up_sends_the_whole_history(chat, upstream):
    upstream.push(answer("First answer."), answer("Second answer."))
    page = chat()
    page.send("Question one")
    page.wait_done(1)
    page.send("Question two")
    page.wait_done(2)
    assert plain(upstream.requests[-1].body["messages"]) == [
        {"role": "user", "content": "Question one"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Question two"},
    ]


def test_stop_closes_the_upstream_and_keeps_the_partial_answer(chat, upstream, server_loop):
    upstream.push(answer(*words(300), delay=0.03))
    page = chat()
    page.send("Tell me a long story")
    page.answer().filter(has_text="word5 ").wait_for()
    clicked = time.monotonic()
    page.page.click("#stop")
    conn = upstream.requests[0].conn
    assert server_loop.wait_for(lambda: conn.closed is not None, timeout=1.0), "upstream still open"
    assert conn.closed - clicked < 1.0
    page.page.locator(".stopped").wait_for()
    text = page.answer().inner_text()
    assert "word5" in text and "word299" not in text
    assert page.page.locator("#send").is_visible()
    # The partial answer stays in the conversation the model sees next.
    page.send("Go on")
    page.wait_done(1)
    sent = plain(upstream.requests[-1].body["messages"])
    assert sent[1]["role"] == "assistant" and sent[1]["content"].startswith("word0 word1")


def test_error_mid_answer_is_shown_and_retry_recovers(chat, upstream):
    upstream.push(
        [
            message_start(),
            *text_block(0, ["Partial "])[:-1],
            error_event("overloaded_error", "Overloaded"),
        ]
    )
    page = chat()
    page.send("Question")
    error = page.page.locator(".meta .error")
    error.wait_for()
    assert "overloaded" in error.inner_text().lower()
    assert "Partial" in page.answer().inner_text()
    page.page.click("button.retry")
    page.wait_done()
    assert page.answer().inner_text().strip() == "Hello, world!"
    assert page.page.locator(".message.assistant").count() == 1
    # The failed turn never reached the history.
    assert plain(upstream.requests[-1].body["messages"]) == [
        {"role": "user", "content": "Question"}
    ]


def test_rate_limit_before_the_answer_is_shown_and_retry_recovers(chat, upstream):
    upstream.push(http_error(429, "rate_limit_error", "Rate limited", {"retry-after": "17"}))
    page = chat()
    page.allowed.append("status of 429")  # Chromium logs every non-2xx fetch
    page.send("Question")
    error = page.page.locator(".meta .error")
    error.wait_for()
    assert error.inner_text() == "Rate limited: try again in 17 s."
    page.page.click("button.retry")
    page.wait_done()
    assert "Hello" in page.answer().inner_text()


def test_a_relay_restarting_says_so(chat, server_loop):
    page = chat()
    page.allowed.append("status of 503")
    server_loop.run(page.relay.state.runtime.drain(0))  # what SIGTERM starts
    page.send("Question")
    error = page.page.locator(".meta .error")
    error.wait_for()
    assert error.inner_text() == "The relay is restarting. Try again in a moment."


MARKDOWN = [
    "## A heading\n\n",
    "- one\n- two\n\n",
    "```python\nprint('hi')\n```\n\n",
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n",
    "[a link](https://example.com/page)\n\n",
    '<img src=x onerror="window.__pwned=1">\n\n',
    "<script>window.__pwned=2</script>\n\n",
    '<svg onload="window.__pwned=3"></svg>\n\n',
    "[click me](javascript:window.__pwned=4)\n\n",
    '<a href="javascript:window.__pwned=5">and me</a>\n\n',
    '<span style="color:red" onclick="window.__pwned=6">styled</span>\n\n',
    "![tracking pixel](https://tracker.example/pixel.png)\n",
]


def test_markdown_renders_and_model_html_is_inert(chat, upstream):
    upstream.push(answer(*MARKDOWN))
    page = chat()
    page.send("Format things")
    page.wait_done()
    body = page.answer()
    assert body.locator("h2").inner_text() == "A heading"
    assert body.locator("ul li").count() == 2
    assert body.locator("pre code").inner_text().strip() == "print('hi')"
    assert body.locator("pre button.copy").count() == 1
    assert body.locator("table th").all_inner_texts() == ["a", "b"]
    assert body.locator("a", has_text="a link").get_attribute("href") == "https://example.com/page"
    for link in body.locator("a").all():
        assert not (link.get_attribute("href") or "").startswith("javascript:")
    # The model's raw HTML is shown as text, not rendered.
    text = body.inner_text()
    assert '<img src=x onerror="window.__pwned=1">' in text
    assert "<script>window.__pwned=2</script>" in text
    body.locator("a", has_text="click me").click()
    assert body.locator("img, script, svg, [style], [onerror], [onload], [onclick]").count() == 0
    assert page.page.evaluate("window.__pwned") is None
    assert body.locator("a", has_text="tracking pixel").count() == 1  # a link, never fetched


def test_demo_mode_is_announced(chat):
    page = chat(anthropic_api_key=None, anthropic_base_url=None, demo_token_delay=0)
    notice = page.page.locator("#demo-notice")
    notice.wait_for()
    assert "Demo mode" in notice.inner_text()
    page.send("Hi there")
    page.wait_done()
    assert "Demo mode" in page.answer().inner_text()


def test_conversation_survives_reload_and_new_chat_clears_it(chat, upstream):
    page = chat()
    page.send("Remember me")
    page.wait_done()
    page.page.reload()
    page.page.wait_for_selector("#prompt:focus")
    assert page.page.locator(".message").count() == 2
    assert page.page.locator(".message.user .body").inner_text() == "Remember me"
    page.page.click("#new-chat")
    assert page.page.locator(".message").count() == 0
    assert page.page.locator("#empty").is_visible()
    page.page.reload()
    page.page.wait_for_selector("#prompt:focus")
    assert page.page.locator(".message").count() == 0


def test_keyboard_only(chat, upstream):
    page = chat()
    page.page.keyboard.type("line one")
    page.page.keyboard.press("Shift+Enter")
    page.page.keyboard.type("line two")
    assert upstream.requests == []
    page.page.keyboard.press("Enter")
    page.wait_done()
    assert last_text(upstream.requests[0].body) == "line one\nline two"
    # Escape stops an answer; focus comes back to the composer.
    upstream.push(answer(*words(200), delay=0.03))
    page.page.keyboard.type("again")
    page.page.keyboard.press("Enter")
    page.answer().filter(has_text="word3 ").wait_for()
    page.page.keyboard.press("Escape")
    page.page.locator(".stopped").wait_for()
    assert page.page.evaluate("document.activeElement.id") == "prompt"


@pytest.fixture
def via_proxy(server_loop):
    """Open the page through a TCP proxy the test can cut (a lost network)."""
    proxies: list[CuttableProxy] = []

    def via(relay) -> str:
        proxies.append(CuttableProxy(int(relay.url.rsplit(":", 1)[1])))
        server_loop.run(proxies[-1].start())
        return proxies[-1].url

    via.cut = lambda: server_loop.call(proxies[-1].cut)
    return via


def test_network_lost_mid_answer_is_shown_and_retry_recovers(chat, upstream, via_proxy):
    upstream.push(answer(*words(300), delay=0.03))
    page = chat(via=via_proxy, resume_window=0)  # resuming off: the loss shows
    page.allowed.append("ERR_CONNECTION_RESET|ERR_INCOMPLETE_CHUNKED_ENCODING")
    page.send("Question")
    page.answer().filter(has_text="word3 ").wait_for()
    via_proxy.cut()
    error = page.page.locator(".meta .error")
    error.wait_for()
    assert error.inner_text() == "Network connection lost mid-answer."
    assert "word3" in page.answer().inner_text()
    page.page.click("button.retry")
    page.wait_done()
    assert page.answer().inner_text().strip() == "Hello, world!"


def test_an_answer_resumes_by_itself_after_the_network_drops(chat, upstream, via_proxy):
    upstream.push(answer(*words(120), delay=0.02))
    page = chat(via=via_proxy)
    page.allowed.append("ERR_CONNECTION_RESET|ERR_INCOMPLETE_CHUNKED_ENCODING")
    page.send("Question")
    page.answer().filter(has_text="word10 ").wait_for()
    via_proxy.cut()
    page.wait_done()
    assert page.answer().inner_text().split() == [w.strip() for w in words(120)]  # once each
    assert len(upstream.requests) == 1, "resuming must not ask the upstream again"
    assert page.page.locator(".meta .error").count() == 0


def test_an_answer_resumes_after_a_reload(chat, upstream):
    upstream.push(answer(*words(120), delay=0.02))
    page = chat()
    page.allowed.append("ERR_CONNECTION_RESET|ERR_INCOMPLETE_CHUNKED_ENCODING")
    page.send("Question")
    page.answer().filter(has_text="word10 ").wait_for()
    page.page.reload()
    page.wait_done()
    assert page.page.locator(".message").count() == 2
    assert page.answer().inner_text().split() == [w.strip() for w in words(120)]  # once each
    assert len(upstream.requests) == 1, "resuming must not ask the upstream again"
    page.page.reload()  # finished: shown from what was saved, nothing asked
    page.wait_done()
    assert page.answer().inner_text().split() == [w.strip() for w in words(120)]
    assert len(upstream.requests) == 1


def test_the_page_asks_for_the_token_once(chat, upstream):
    page = chat(relay_token="s3cret")
    page.allowed.append("status of 401")
    page.send("First")
    page.page.locator("#token-dialog").wait_for()
    page.page.fill("#token", "wrong")
    page.page.click("#token-save")
    error = page.page.locator(".meta .error")
    error.wait_for()
    assert "token was refused" in error.inner_text()
    assert upstream.requests == []
    page.page.click("button.retry")
    page.page.locator("#token-dialog").wait_for()
    page.page.fill("#token", "s3cret")
    page.page.click("#token-save")
    page.wait_done()
    assert upstream.requests[0].headers  # the relay let it through
    page.send("Second")
    page.wait_done(2)
    assert not page.page.locator("#token-dialog").is_visible(), "asked twice"
    assert page.page.evaluate("sessionStorage.getItem('chat-relay:token')") == "s3cret"
    assert page.page.evaluate("JSON.stringify(localStorage)").count("s3cret") == 0


def test_the_model_picker(chat, upstream):
    upstream.push(answer("From b."), answer("Default."))
    page = chat(allowed_models="claude-a,claude-b", default_model="claude-a")
    picker = page.page.locator("#model")
    picker.wait_for()
    assert picker.locator("option").all_inner_texts() == ["claude-a", "claude-b"]
    assert picker.input_value() == "claude-a"  # the relay's default
    picker.select_option("claude-b")
    page.send("Which model?")
    page.wait_done()
    assert upstream.requests[-1].body["model"] == "claude-b"
    # One model on offer: no picker, and the request names none.
    single = chat()
    single.send("Any model")
    single.wait_done()
    assert single.page.locator("#model").is_hidden()
    assert upstream.requests[-1].body["model"] == single.relay.settings.default_model


def test_thinking_shows_live_then_folds_away(chat, upstream):
    thought = [*thinking_block(0, ["Let ", "me ", "think."]), ("sleep", 0.6)]
    upstream.push([message_start(), *thought, *text_block(1, ["The ", "answer."]), *message_end()])
    page = chat()
    page.page.check("#think")
    page.send("Think first")
    section = page.page.locator(".message.assistant .thinking")
    section.locator(".thought", has_text="Let me think.").wait_for()
    assert section.evaluate("d => d.open"), "open while it thinks"
    page.wait_done()
    assert not section.evaluate("d => d.open"), "folded once the answer starts"
    assert re.fullmatch(r"Thought for \d+\.\d s", section.locator("summary").inner_text())
    assert page.answer().inner_text().strip() == "The answer."
    assert upstream.requests[0].body["thinking"]["type"] == "adaptive"
    # The toggle is kept for next time; without it, no thinking is asked for.
    page.page.reload()
    assert page.page.is_checked("#think")
    page.page.uncheck("#think")
    upstream.push(answer("Plain."))
    page.send("No thinking")
    page.wait_done(2)
    assert "thinking" not in upstream.requests[-1].body
