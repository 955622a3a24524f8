"""examples/usechat/: a React page on `useChat()` (`resume: true`, a Stop that also calls
the DELETE), bundled with esbuild from npm at test time, served beside the relay (another
origin, allowed by CORS_ORIGINS) and driven in Chromium: it streams, a reload mid-answer
resumes with no text twice and no second upstream request, Stop closes the upstream
within a second, attached files reach the upstream as image and document blocks, and a
client tool goes the whole round trip (onToolCall, addToolOutput, sendAutomaticallyWhen)."""

import base64
import json
import shutil
import subprocess
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fake_upstream import answer, text_block, tool_answer, tool_block
from tests.support import FILE_STARTS, ROOT, WORDS, free_port, png

EXAMPLE = ROOT / "examples" / "usechat"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example, bundled, on a static server of its own: its URL."""
    esbuild = EXAMPLE / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        pytest.fail("examples/usechat has no node_modules: npm ci --prefix examples/usechat")
    out = tmp_path_factory.mktemp("usechat")
    argv = [str(esbuild), "app.jsx", "--bundle", "--jsx=automatic", "--format=esm"]
    argv.append(f"--outfile={out}/dist/app.js")
    argv.append('--define:process.env.NODE_ENV="production"')
    subprocess.run(argv, cwd=EXAMPLE, check=True, capture_output=True, timeout=120)
    shutil.copy(EXAMPLE / "index.html", out / "index.html")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(Quiet, directory=out))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def chat(browser, site, make_relay):
    """The example's page, talking to a relay that allows its origin."""
    relay = make_relay(cors_origins=site)
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{site}/?relay={relay.url}")
    page.wait_for_selector("#prompt")
    yield page
    context.close()
    assert not errors, errors


def ask(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def answer_text(page) -> str:
    return page.locator(".message.assistant").last.text_content()


def test_it_streams(chat, upstream):
    upstream.push(answer("Hello", ", ", "world."))
    ask(chat, "Hi")
    chat.wait_for_selector("#status:has-text('ready')")
    chat.wait_for_function("document.querySelector('.message.assistant')?.textContent")
    assert answer_text(chat) == "Hello, world."
    assert chat.locator(".message.user").inner_text() == "Hi"


def test_a_reload_mid_answer_resumes_with_nothing_twice(chat, upstream):
    upstream.push(answer(*WORDS, delay=0.05))
    ask(chat, "A long one")
    chat.wait_for_function(
        "document.querySelector('.message.assistant')?.textContent.includes('w8 ')"
    )
    chat.reload()
    chat.wait_for_function(
        "document.querySelector('.message.assistant')?.textContent.includes('w59 ')",
        timeout=15_000,
    )
    chat.wait_for_selector("#status:has-text('ready')")
    assert answer_text(chat) == "".join(WORDS), "the replay rebuilt it: whole, nothing twice"
    assert chat.locator(".message.assistant").count() == 1
    assert chat.locator(".message.user").count() == 1
    assert len(upstream.requests) == 1, "resuming must not ask the upstream again"


def test_stop_closes_the_upstream_within_a_second(chat, upstream, server_loop):
    upstream.push(answer(*WORDS, delay=0.1))
    ask(chat, "Stop me")
    chat.wait_for_function(
        "document.querySelector('.message.assistant')?.textContent.includes('w2 ')"
    )
    conn = server_loop.call(lambda: upstream.requests[0].conn)
    clicked = time.monotonic()
    chat.click("#stop")
    assert server_loop.wait_for(lambda: conn.closed is not None, 3)
    assert conn.closed - clicked < 1.0
    chat.wait_for_selector("#status:has-text('ready')")
    assert "w59" not in answer_text(chat)


def test_files_travel_as_the_ai_sdk_sends_them(chat, upstream):
    upstream.push(answer("A dot and a PDF."))
    pdf = FILE_STARTS["application/pdf"] + b"%%EOF\n"
    chat.set_input_files(
        "#files",
        files=[
            {"name": "dot.png", "mimeType": "image/png", "buffer": png(2, 2)},
            {"name": "a.pdf", "mimeType": "application/pdf", "buffer": pdf},
        ],
    )
    ask(chat, "What are these?")
    chat.wait_for_selector("#status:has-text('ready')")
    chat.wait_for_function("document.querySelector('.message.assistant')?.textContent")
    assert chat.locator(".message.user img.thumb").count() == 1
    image, document, text = upstream.requests[-1].body["messages"][-1]["content"]
    assert base64.b64decode(image["source"]["data"]) == png(2, 2)
    assert document["type"] == "document" and base64.b64decode(document["source"]["data"]) == pdf
    assert text["text"] == "What are these?"


def test_a_client_tool_round_trip(chat, upstream):
    # Claude calls the page's local_time; onToolCall runs it, addToolOutput records it, and
    # sendAutomaticallyWhen sends it back: the answer goes on in the same message.
    upstream.push(
        tool_answer(
            text_block(0, ["Checking. "]), tool_block(1, "toolu_ex1", "local_time", ["{", "}"])
        ),
        answer("It is ", "tea time."),
    )
    ask(chat, "What time is it?")
    chat.wait_for_selector(".tool[data-state='output-available'] .tool-output")
    chat.wait_for_function(
        "document.querySelector('.message.assistant')?.textContent.includes('tea time.')"
    )
    chat.wait_for_selector("#status:has-text('ready')")
    assert chat.locator(".message.assistant").count() == 1
    assert chat.locator(".tool .tool-name").inner_text() == "local_time"
    assert chat.locator(".tool .tool-input").inner_text() == "{}"
    output = json.loads(chat.locator(".tool .tool-output").inner_text())
    assert output["time_zone"] and output["iso"]
    first, second = (r.body for r in upstream.requests)
    for body in (first, second):
        assert [t["name"] for t in body["tools"]] == ["local_time"]
    asked, called, results = second["messages"]
    assert asked["role"] == "user"
    assert [b["type"] for b in called["content"]] == ["text", "tool_use"]
    use = called["content"][1]
    assert use["id"] == "toolu_ex1" and use["name"] == "local_time" and use["input"] == {}
    (result,) = results["content"]
    assert result["tool_use_id"] == use["id"] and "is_error" not in result
    assert json.loads(result["content"]) == output


def test_the_automatic_round_trips_are_bounded(chat, upstream):
    calls = (tool_answer(tool_block(0, f"toolu_b{n}", "local_time", ["{}"])) for n in range(7))
    upstream.push(*calls)
    ask(chat, "Keep calling")
    chat.wait_for_function("document.querySelectorAll('.tool .tool-output').length === 6")
    chat.wait_for_selector("#status:has-text('ready')")
    time.sleep(0.5)  # a seventh request would have gone by now
    assert len(upstream.requests) == 6  # the question and 5 continuations
    assert chat.locator(".message.assistant").count() == 1
