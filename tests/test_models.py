"""The request body: what is refused, how fast, and what the refusal says (pure, no network)."""

import json
import time

import pytest

from app.errors import ApiError
from app.models import upstream_params
from tests.support import relay_settings

SETTINGS = relay_settings()


def refusal(body: bytes) -> tuple[ApiError, float]:
    started = time.perf_counter()
    with pytest.raises(ApiError) as exc:
        upstream_params(body, SETTINGS)
    return exc.value, time.perf_counter() - started


def test_an_over_long_conversation_is_refused_before_validation():
    # 37,000 invalid turns in 1 MiB: validating them one by one took 657 ms of event loop.
    turns = [{"role": "nobody", "content": 7}] * 37_000
    body = json.dumps({"messages": turns}).encode()
    error, took = refusal(body)
    assert error.status == 422
    assert error.message == "messages: at most 1000 turns (got 37000)"
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
