"""The request body: what is refused, how fast, and what the refusal says (pure, no network)."""

import json
import time

import pytest

from app.errors import ApiError
from app.models import upstream_params
from app.uimessages import UIChatRequest
from tests.support import relay_settings, ui_body

SETTINGS = relay_settings()


def refusal(body: bytes) -> tuple[ApiError, float]:
    started = time.perf_counter()
    with pytest.raises(ApiError) as exc:
        upstream_params(body, SETTINGS)
    return exc.value, time.perf_counter() - started


def test_an_over_long_conversation_is_refused_before_validation():
    # 37,000 invalid turns in 1 MiB: validating them one by one took 657 ms of event loop
    # (30,000 here: 37,000 are now past MAX_JSON_VALUES, refused sooner still).
    turns = [{"role": "nobody", "content": 7}] * 30_000
    body = json.dumps({"messages": turns}).encode()
    error, took = refusal(body)
    assert error.status == 422
    assert error.message == "messages: at most 1000 turns (got 30000)"
    assert took < 0.25, f"refusing took {took * 1000:.0f} ms"


def test_the_turn_limit_is_a_setting():
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}] * 3}).encode()
    with pytest.raises(ApiError):
        upstream_params(body, relay_settings(max_turns=2))
    assert len(upstream_params(body, relay_settings(max_turns=3)).params["messages"]) == 3


def test_an_unknown_field_is_named_but_never_echoed_whole():
    error, _ = refusal(json.dumps({"message": "hi", "x" * 1_000_000: 1}).encode())
    assert error.status == 422 and "unknown field" in error.message
    assert len(error.message) < 300


@pytest.mark.parametrize(
    "model", ["", "a" * 101, "claude\nsonnet", "../../etc", "m\u202emodel", "model with spaces"]
)
def test_a_model_name_is_short_and_plain(model):
    error, _ = refusal(json.dumps({"message": "hi", "model": model}).encode())
    assert error.status == 422 and error.message.startswith("model: ")
    assert model not in error.message or model == ""


def test_a_plain_model_name_is_taken():
    ask = upstream_params(b'{"message": "hi", "model": "claude-opus-4-1@2025.08:x/y_z"}', SETTINGS)
    assert ask.resumable is False and ask.dialect == "relay"
    assert ask.params["model"] == "claude-opus-4-1@2025.08:x/y_z"


@pytest.mark.parametrize("kind", ["x" * 100_000, "<script>alert(1)</script>"])
def test_a_block_type_is_never_echoed(kind):
    # pydantic's union-tag message quotes the tag whole, at any length.
    error, _ = refusal(json.dumps({"message": [{"type": kind}]}).encode())
    assert error.status == 422 and "not a type this relay accepts" in error.message
    assert kind not in error.message and "<" not in error.message and len(error.message) < 400


def test_ui_metadata_and_extra_fields_are_never_kept():
    """The parts and messages the relay reads ignore what it does not: an app's metadata
    is not built into the validated request (nor into the upstream's turns)."""
    body = ui_body("chatAbcdefgh01234")
    body["messages"][0]["metadata"] = {"deep": [[{"x": 1}]] * 1000}
    body["messages"][0]["parts"][0]["providerMetadata"] = {"anthropic": {"k": "v"}}
    request = UIChatRequest.model_validate_json(json.dumps(body))
    assert request.messages[0].model_extra in (None, {})
    assert request.messages[0].parts[0].model_extra in (None, {})
    assert upstream_params(json.dumps(body).encode(), SETTINGS).params["messages"][0]["content"]
