"""Settings that cannot work are refused when the process starts, with a clear message."""

import pytest
from pydantic import ValidationError

from app.config import BUDGET_MODELS
from tests.support import relay_settings


def test_allowed_models_must_include_the_default():
    with pytest.raises(ValidationError, match=r"DEFAULT_MODEL .* must be one of ALLOWED_MODELS"):
        relay_settings(allowed_models="claude-a,claude-b", default_model="claude-c")
    settings = relay_settings(allowed_models="claude-a,claude-b", default_model="claude-b")
    assert settings.allowed_models == ["claude-a", "claude-b"]


def test_lists_are_comma_separated():
    settings = relay_settings(cors_origins=" https://a.example , https://b.example ,")
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_thinking_budget_models_default_when_left_empty():
    assert relay_settings(thinking_budget_models="").thinking_budget_models == BUDGET_MODELS
    assert relay_settings(thinking_budget_models="a-, b").thinking_budget_models == ["a-", "b"]
