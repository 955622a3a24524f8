"""What both dialects share: prompt caching's breakpoints (pure, no network)."""

import json

from app.models import upstream_params
from tests.support import relay_settings, ui_body

MARK = {"type": "ephemeral"}


def params(body: dict, **settings) -> dict:
    return upstream_params(json.dumps(body).encode(), relay_settings(**settings)).params


def test_auto_marks_the_system_prompt_and_the_last_turn():
    conversation = {
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
    }
    sent = params(conversation)
    assert sent["system"] == [{"type": "text", "text": "Be brief.", "cache_control": MARK}]
    assert sent["messages"][:2] == conversation["messages"][:2]  # earlier turns as they were
    assert sent["messages"][2]["content"] == [
        {"type": "text", "text": "three", "cache_control": MARK}
    ]


def test_off_sends_the_conversation_as_it_came():
    sent = params({"message": "hi", "system": "s"}, prompt_caching="off")
    assert sent["system"] == "s" and sent["messages"] == [{"role": "user", "content": "hi"}]


def test_the_hour_long_lifetime_is_asked_for():
    sent = params({"message": "hi"}, prompt_cache_ttl="1h")
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


def test_a_usechat_turn_gets_its_last_block_marked():
    body = ui_body("chatAbcdefgh01234")
    body["messages"][0]["parts"].append({"type": "text", "text": "and more"})
    content = params(body)["messages"][0]["content"]
    assert "cache_control" not in content[0] and content[1]["cache_control"] == MARK


def test_thinking_is_asked_for_the_way_the_model_needs():
    current = params({"message": "hi", "thinking": True, "model": "claude-sonnet-5-5"})
    assert current["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert current["max_tokens"] == 1024  # unchanged: the model manages its own thinking
    older = params({"message": "hi", "thinking": True, "model": "claude-sonnet-4-5-20250929"})
    assert older["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert older["max_tokens"] == 1024 + 4096  # the answer keeps what it asked for
    assert "thinking" not in params({"message": "hi"})
    ui = params({**ui_body("chatAbcdefgh01234"), "thinking": True})
    assert ui["thinking"]["type"] == "adaptive"


def test_thinking_on_a_budget_model_stays_within_the_token_limit():
    # 8,192 asked on a budget model: 12,288 went upstream, past MAX_TOKENS_LIMIT.
    model = "claude-sonnet-4-5-20250929"
    sent = params({"message": "hi", "thinking": True, "model": model, "max_tokens": 8192})
    assert sent["max_tokens"] == 8192
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    small = params({"message": "hi", "thinking": True, "model": model, "max_tokens": 100})
    assert small["max_tokens"] == 4196  # below the limit the answer keeps what it asked
    tight = params({"message": "hi", "thinking": True, "model": model}, max_tokens_limit=4096)
    assert tight["max_tokens"] == 4096 and tight["thinking"]["budget_tokens"] == 4095
