"""Images and PDFs in a turn (app/attachments.py): what passes, what is refused and how, in
both dialects, and that the data is never echoed or logged."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.ask import Tally
from app.attachments import from_data_url, without_data
from app.config import Settings
from app.errors import ApiError
from app.turns import check_turns
from tests.fake_upstream import answer
from tests.support import FILE_STARTS, file_block, file_data, post_chat, ui_body

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
TYPES = list(FILE_STARTS)


def turn(*blocks: dict, role: str = "user") -> dict:
    return {"role": role, "content": [{"type": "text", "text": "What is this?"}, *blocks]}


def refused(turns: list[dict], **settings: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        check_turns(turns, SETTINGS.model_copy(update=settings))
    return caught.value


@pytest.mark.parametrize("media_type", TYPES)
def test_each_type_passes_and_is_counted_by_its_decoded_size(media_type: str):
    tally = check_turns([turn(file_block(media_type, 1000))], SETTINGS)
    pdf = media_type == "application/pdf"
    assert tally == Tally(images=0 if pdf else 1, documents=1 if pdf else 0, nbytes=1000)


@pytest.mark.parametrize(
    "data, why",
    [
        ("iVBORw0KGgo=" + "A" * 3, "multiple of 4"),
        ("iVBORw0KGgoAAA!", "not valid base64"),
        ("iVBORw0KGgoA\nAAA", "not valid base64"),
        ("iVBORw0KGgoAAAAé", "not valid base64"),
        ("iVBORw0KGgo=AAA", "not valid base64"),
        ("iVBORw0KGgoA====", "not valid base64"),
        ("", "not valid base64"),
    ],
)
def test_data_that_is_not_base64_is_refused_without_echoing_it(data: str, why: str):
    error = refused([turn(file_block("image/png", data=data))])
    assert (error.status, error.error_type) == (422, "invalid_request_error")
    assert why in error.message and "messages.0.content.1" in error.message
    assert not data or data[4:] not in error.message


@pytest.mark.parametrize("declared", TYPES)
def test_bytes_that_are_not_the_declared_type_are_refused(declared: str):
    other = "application/pdf" if declared != "application/pdf" else "image/png"
    error = refused([turn(file_block(declared, data=file_data(other)))])
    assert error.status == 422 and "the bytes are not a" in error.message


def test_an_image_over_the_limit_gets_413_and_a_phone_photo_passes():
    photo = file_data("image/jpeg", 1_500_000)  # 2 MB of base64
    assert check_turns([turn(file_block("image/jpeg", data=photo))], SETTINGS).images == 1
    big = file_data("image/png", 4 * 1024 * 1024)  # 5.3 MB of base64: the API's limit is 5 MiB
    error = refused([turn(file_block("image/png", data=big))])
    assert error.status == 413 and error.error_type == "request_too_large"
    assert str(len(big)) in error.message and big[20:60] not in error.message
    # A PDF has no limit of its own: the body's (MAX_BODY_BYTES) bounds it.
    pdf = file_data("application/pdf", 4 * 1024 * 1024)
    assert check_turns([turn(file_block("application/pdf", data=pdf))], SETTINGS).documents == 1


def test_at_most_max_images_in_a_conversation():
    blocks = [file_block("image/gif") for _ in range(4)]
    assert check_turns([turn(*blocks)], SETTINGS.model_copy(update={"max_images": 4})).images == 4
    error = refused([turn(*blocks[:2]), turn(*blocks[2:])], max_images=3)
    assert error.status == 422 and "at most 3 images" in error.message


def test_attachments_belong_in_user_turns():
    error = refused([turn(file_block("image/png"), role="assistant")])
    assert "user turns" in error.message


def test_the_worst_base64_is_checked_in_bounded_time():
    # A 32 MB PDF (the largest body): checked in pieces of a millisecond or so each.
    data = file_data("application/pdf", 24 * 1024 * 1024)
    started = time.perf_counter()
    check_turns([turn(file_block("application/pdf", data=data))], SETTINGS)
    assert time.perf_counter() - started < 1.0  # generous: about 0.05 s here
    bad = data[:-100] + "*" + data[-99:]  # the one bad character at the very end
    assert "not valid base64" in refused([turn(file_block("application/pdf", data=bad))]).message


@pytest.mark.parametrize(
    "url, why",
    [
        ("https://example.com/cat.png", "data: URL"),
        ("data:image/png," + "A" * 8, "data: URL"),
        ("data:text/plain;base64,aGVsbG8=", "files may be"),
        ("data:image/svg+xml;base64,PHN2Zz4=", "files may be"),
        ("no comma at all", "data: URL"),
    ],
)
def test_a_file_part_must_be_a_base64_data_url_of_a_known_type(url: str, why: str):
    with pytest.raises(ApiError) as caught:
        from_data_url(url, "messages.0.parts.1")
    assert caught.value.status == 422 and why in caught.value.message


def test_a_data_url_becomes_the_block_of_its_type():
    data = file_data("application/pdf")
    block = from_data_url(f"data:application/pdf;base64,{data}", "here")
    assert block == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": data},
    }


def test_logged_content_describes_attachments_without_their_data():
    block = file_block("image/webp", 300)
    logged = json.dumps(without_data([turn(block), {"role": "assistant", "content": "ok"}]))
    assert block["source"]["data"] not in logged
    assert '"media_type": "image/webp"' in logged and '"bytes": 300' in logged


# On the wire: real uvicorn, the real SDK, the fake upstream.


def test_blocks_reach_the_upstream_as_sent(relay, upstream):
    image, pdf = file_block("image/png", 5000), file_block("application/pdf", 9000)
    content = [{"type": "text", "text": "Compare these"}, image, pdf]
    reply = post_chat(relay, {"messages": [{"role": "user", "content": content}]})
    assert reply.status == 200 and reply.events[-1] == "done"
    sent = upstream.requests[-1].body["messages"][0]["content"]
    assert sent[:2] == content[:2]
    # Prompt caching marks the last block of the last turn.
    assert sent[2] == {**pdf, "cache_control": {"type": "ephemeral"}}


def test_a_single_message_may_be_blocks_too(relay, upstream):
    image = file_block("image/jpeg")
    reply = post_chat(relay, {"message": [image, {"type": "text", "text": "What is it?"}]})
    assert reply.status == 200
    assert upstream.requests[-1].body["messages"][0]["content"][0] == image


def test_a_phone_photo_works_with_the_default_settings(relay, upstream):
    photo = file_block("image/jpeg", 1_500_000)
    reply = post_chat(relay, {"message": [photo, {"type": "text", "text": "Where is this?"}]})
    assert reply.status == 200 and reply.events[-1] == "done"
    assert upstream.requests[-1].body["messages"][0]["content"][0]["source"] == photo["source"]


def test_ui_file_parts_become_the_same_blocks(relay, upstream):
    data = file_data("image/png", 2000)
    body = ui_body("chat-with-a-picture-0001", "What is in it?")
    body["messages"][0]["parts"].append(
        {
            "type": "file",
            "mediaType": "image/png",
            "filename": "a.png",
            "url": f"data:image/png;base64,{data}",
        }
    )
    # An assistant's file (one it generated) is not sent back.
    body["messages"][:0] = [
        {"id": "u0", "role": "user", "parts": [{"type": "text", "text": "Hi"}]},
        {
            "id": "a0",
            "role": "assistant",
            "parts": [
                {"type": "text", "text": "Hello"},
                {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"},
            ],
        },
    ]
    reply = post_chat(relay, body)
    assert reply.status == 200, reply.text
    sent = upstream.requests[-1].body["messages"]
    assert sent[1]["content"] == [{"type": "text", "text": "Hello"}]
    assert sent[2]["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": data,
    }


def test_a_ui_file_that_is_not_its_type_is_refused_by_its_part(relay, upstream):
    body = ui_body("chat-with-a-picture-0002")
    url = f"data:image/png;base64,{file_data('application/pdf')}"
    body["messages"][0]["parts"].append({"type": "file", "mediaType": "image/png", "url": url})
    reply = post_chat(relay, body)
    assert reply.status == 422
    assert reply.json()["error"]["message"] == "messages.0.parts.1: the bytes are not a PNG image"
    assert upstream.requests == []


def test_refusals_name_the_problem_and_never_echo_the_data(relay, upstream, relay_log):
    big = file_data("image/png", 4 * 1024 * 1024)
    bad = file_data("image/gif", 3000)[:-8] + "!!!!!!!!"
    for data, status in ((big, 413), (bad, 422)):
        media = "image/png" if data is big else "image/gif"
        reply = post_chat(relay, {"message": [file_block(media, data=data)]})
        assert reply.status == status
        assert data[100:140] not in reply.text
    assert upstream.requests == []
    assert not any(big[100:140] in line or bad[100:140] in line for line in relay_log.lines)


def test_the_log_line_counts_attachments_and_bytes_never_content(make_relay, upstream, relay_log):
    relay = make_relay(log_content=True)
    image, pdf = file_block("image/png", 3000), file_block("application/pdf", 6000)
    reply = post_chat(relay, {"message": [image, pdf, {"type": "text", "text": "Both?"}]})
    assert reply.status == 200
    (line,) = [json.loads(x) for x in relay_log.lines if '"event": "chat"' in x]
    assert (line["attachments"], line["attachment_bytes"]) == (2, 9000)
    logged = "\n".join(relay_log.lines)
    assert image["source"]["data"][:40] not in logged and pdf["source"]["data"][:40] not in logged
    assert line["messages"][0]["content"][0] == {
        "type": "image",
        "media_type": "image/png",
        "bytes": 3000,
    }


def test_bodies_held_are_bounded_and_given_back(make_relay, upstream, server_loop):
    """Past MAX_HELD_BODY_BYTES a body is refused with 503 at once; a stream gives its
    body's bytes back at its first delta, so the next large upload gets in."""
    relay = make_relay(max_body_bytes=3_000_000, max_held_body_bytes=5_000_000)
    runtime = relay.state.runtime
    pdf = {"message": [file_block("application/pdf", 2_000_000)]}  # 2.7 MB of JSON
    upstream.push([("sleep", 1.5), *answer("Read")])  # no first delta for 1.5 s
    pool = ThreadPoolExecutor(1)
    first = pool.submit(post_chat, relay, pdf)
    assert server_loop.wait_for(lambda: runtime.held_bytes > 2_600_000, 10)
    second = post_chat(relay, pdf)
    assert second.status == 503 and second.headers["retry-after"]
    assert "holds as many request bodies" in second.json()["error"]["message"]
    assert post_chat(relay, {"message": "a small one still fits"}).status == 200
    assert first.result(10).status == 200
    pool.shutdown()
    assert server_loop.call(lambda: runtime.held_bytes) == 0
    assert post_chat(relay, pdf).status == 200
    assert server_loop.call(lambda: runtime.held_bytes) == 0


def test_the_worst_bodies_are_refused_quickly(make_relay, upstream):
    """Before validation, blocks are counted; after it, images. Neither a flood of tiny
    blocks nor of tiny images costs more than a moment (bounded count, on 127.0.0.1)."""
    relay = make_relay()
    tiny = {"type": "text", "text": "x"}
    dots = [file_block("image/gif", 16) for _ in range(3000)]
    for body, why in (
        ({"message": [tiny] * 30_000}, "at most 4000 parts"),  # within MAX_JSON_VALUES
        ({"message": dots}, "at most 100 images"),
    ):
        started = time.perf_counter()
        reply = post_chat(relay, body)
        assert reply.status == 422 and why in reply.json()["error"]["message"]
        assert time.perf_counter() - started < 2.0  # about 0.1 s here
    assert upstream.requests == []
