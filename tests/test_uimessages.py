"""A useChat body: told apart from the relay's own, converted, and refused fast (pure)."""

import gc
import json
import time

import pytest

from app.errors import ApiError
from app.models import upstream_params
from tests.support import relay_settings, ui_body

SETTINGS = relay_settings()
CHAT = "chatAbcdefgh01234"


def ask(body: dict):
    return upstream_params(json.dumps(body).encode(), SETTINGS)


def test_the_dialect_is_told_by_the_shape():
    assert ask({"message": "hi"}).dialect == "relay"
    assert ask({"messages": [{"role": "user", "content": "hi"}]}).dialect == "relay"
    ui = ask(ui_body(CHAT))
    assert ui.dialect == "ui" and ui.chat_id == CHAT and ui.resumable is False
    without_trigger = ui_body(CHAT)
    del without_trigger["trigger"]
    assert ask(without_trigger).dialect == "ui"  # its messages carry parts
    with pytest.raises(ApiError) as refused:  # the relay's own format still refuses `id`
        ask({"message": "hi", "id": CHAT})
    assert "unknown field" in refused.value.message


def test_turns_of_one_role_in_a_row_become_one():
    body = ui_body(CHAT)
    body["messages"] = [
        {"role": "user", "parts": [{"type": "text", "text": "one"}]},
        {"role": "assistant", "parts": [{"type": "step-start"}]},  # no text: dropped
        {"role": "user", "parts": [{"type": "text", "text": "two"}, {"type": "text", "text": " "}]},
    ]
    (turn,) = ask(body).params["messages"]
    assert turn["role"] == "user" and [b["text"] for b in turn["content"]] == ["one", "two"]


def test_a_flood_of_parts_is_refused_before_validation():
    # 69,000 parts in 1 MiB: validating them one by one took 0.6 s of event loop (45,000
    # here: 69,000 are now past MAX_JSON_VALUES, refused sooner still).
    body = ui_body(CHAT)
    body["messages"][0]["parts"] = [{"type": "x"}] * 45_000
    raw = json.dumps(body).encode()
    assert len(raw) <= SETTINGS.max_body_bytes
    gc.collect()  # the test's own garbage is not the refusal's cost
    started = time.perf_counter()
    with pytest.raises(ApiError) as refused:
        upstream_params(raw, SETTINGS)
    took = time.perf_counter() - started
    assert refused.value.status == 422
    assert refused.value.message == "messages: at most 4000 parts in all (got 45000)"
    assert took < 0.25, f"refusing took {took * 1000:.0f} ms"


def test_the_shared_bounds_hold():
    too_many = ui_body(CHAT)
    too_many["messages"] = too_many["messages"] * 1001
    with pytest.raises(ApiError) as refused:
        ask(too_many)
    assert refused.value.message == "messages: at most 1000 turns (got 1001)"
    for field, value in (("max_tokens", 0), ("model", "bad model"), ("resumable", "yes")):
        with pytest.raises(ApiError) as refused:
            ask(ui_body(CHAT, **{field: value}))
        assert refused.value.status == 422 and refused.value.message.startswith(field)
