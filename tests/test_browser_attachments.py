"""Attachments on the page (static/attachments.js), in Chromium against the relay and the
fake upstream: by file input, paste and drop; downscaled before sending; thumbnails and
chips; a placeholder, not the data, in the saved conversation."""

import base64
import json

import pytest

from tests.fake_upstream import answer
from tests.support import FILE_STARTS, png, png_size

pytest.importorskip("playwright.sync_api")

PDF = FILE_STARTS["application/pdf"] + b"1 0 obj << >> endobj\n%%EOF\n"


def blocks(request) -> list[dict]:
    return request.body["messages"][-1]["content"]


def test_attach_by_button_downscales_images_and_sends_blocks(chat, upstream):
    upstream.push(answer("A big picture."), answer("Still here."))
    page = chat()
    page.page.set_input_files(
        "#files",
        files=[
            {"name": "wide.png", "mimeType": "image/png", "buffer": png(3000, 2000)},
            {"name": "notes.pdf", "mimeType": "application/pdf", "buffer": PDF},
        ],
    )
    page.page.locator("#tray img.thumb").wait_for()
    page.page.locator("#tray .chip.pdf", has_text="notes.pdf").wait_for()
    page.send("What are these?")
    page.wait_done()
    image, document, text = blocks(upstream.requests[-1])
    assert image["type"] == "image" and image["source"]["media_type"] == "image/png"
    assert png_size(base64.b64decode(image["source"]["data"])) == (1568, 1045)
    assert document["type"] == "document"
    assert base64.b64decode(document["source"]["data"]) == PDF
    assert text["text"] == "What are these?"
    user = page.page.locator(".message.user")
    assert user.locator("img.thumb").count() == 1
    assert "notes.pdf" in user.locator(".chip.pdf").inner_text()
    assert page.page.locator("#tray li").count() == 0  # the tray emptied
    # The saved conversation keeps a placeholder, not the data.
    saved = page.page.evaluate("localStorage.getItem('chat-relay:conversation')")
    assert len(saved) < 2000 and "notes.pdf" in saved and '"data"' not in saved
    # After a reload the files are named, not sent again; the conversation reads right.
    page.page.reload()
    chips = page.page.locator(".message.user .chip")
    assert chips.count() == 2 and "not kept" in chips.first.inner_text()
    page.send("And now?")
    page.wait_done(2)
    first = upstream.requests[-1].body["messages"][0]["content"]
    assert [b["type"] for b in first] == ["text", "text", "text"]
    assert first[0]["text"] == "[wide.png: attached earlier, not kept]"


def test_paste_and_drop_attach_images(chat, upstream):
    upstream.push(answer("Two pictures."))
    page = chat()
    # A screenshot pasted into the prompt, a photo dropped on the page.
    page.page.evaluate(
        """async () => {
            const file = async (name, type) => {
                const canvas = document.createElement("canvas");
                canvas.width = 40; canvas.height = 30;
                canvas.getContext("2d").fillRect(0, 0, 20, 20);
                const blob = await new Promise((r) => canvas.toBlob(r, type));
                return new File([blob], name, { type });
            };
            const pasted = new DataTransfer();
            pasted.items.add(await file("screenshot.png", "image/png"));
            const options = { bubbles: true, cancelable: true };
            document.getElementById("prompt").dispatchEvent(
                new ClipboardEvent("paste", { clipboardData: pasted, ...options }));
            const dropped = new DataTransfer();
            dropped.items.add(await file("photo.jpg", "image/jpeg"));
            document.body.dispatchEvent(
                new DragEvent("drop", { dataTransfer: dropped, ...options }));
        }"""
    )
    thumbs = page.page.locator("#tray img.thumb")
    thumbs.nth(1).wait_for()
    assert page.page.input_value("#prompt") == ""  # a pasted file is not text
    page.send("Both?")
    page.wait_done()
    sent = blocks(upstream.requests[-1])
    assert [b["source"]["media_type"] for b in sent[:2]] == ["image/png", "image/jpeg"]
    assert base64.b64decode(sent[1]["source"]["data"])[:3] == b"\xff\xd8\xff"
    assert sent[2] == {"type": "text", "text": "Both?", "cache_control": {"type": "ephemeral"}}


def test_a_file_that_cannot_be_attached_says_why(chat, upstream):
    page = chat()
    page.page.set_input_files(
        "#files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}]
    )
    status = page.page.locator("#attach-status")
    status.filter(has_text="only PNG, JPEG, GIF and WebP images, and PDFs").wait_for()
    assert page.page.locator("#tray li").count() == 0
    # An image alone, no text, is a question too.
    upstream.push(answer("A dot."))
    page.page.set_input_files(
        "#files", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": png(2, 2)}]
    )
    page.page.locator("#tray img.thumb").wait_for()
    page.page.click("#send")
    page.wait_done()
    (image,) = blocks(upstream.requests[-1])
    assert base64.b64decode(image["source"]["data"]) == png(2, 2)  # small: sent as it was
    assert json.loads(page.page.evaluate("localStorage.getItem('chat-relay:conversation')"))
