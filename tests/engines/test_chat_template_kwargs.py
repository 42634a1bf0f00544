"""engine.chat_template_kwargs: validated by the schema, handed to the chat template by both
backends, and part of what a checkpoint part was made with (only when set)."""

from __future__ import annotations

import copy

import pytest

from cosmoforge.core.config import validate_config
from cosmoforge.core.errors import ConfigError


class RecordingTokenizer:
    """Stands in for a Hugging Face tokenizer: renders a Qwen3-like template's one switch."""

    bos_token_id = None

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, add_generation_prompt, tokenize, **kwargs):
        self.calls.append(kwargs)
        thinking = kwargs.get("enable_thinking", True)
        return [1, 2] if thinking else [1, 2, 3]  # Qwen3 adds an empty think block when off


def test_the_vllm_engine_passes_the_kwargs_to_the_chat_template():
    from cosmoforge.engines import VllmEngine

    engine = object.__new__(VllmEngine)  # no model load: only the prompt side is under test
    engine.tokenizer = RecordingTokenizer()
    engine.chat_template_kwargs = {"enable_thinking": False}
    assert engine.chat_token_ids("Write a story.") == [1, 2, 3]
    assert engine.tokenizer.calls == [{"enable_thinking": False}]


def test_the_openai_engine_sends_them_in_each_request():
    from cosmoforge.engines.openai_engine import OpenAIEngine
    from cosmoforge.engines.requests import Request

    engine = object.__new__(OpenAIEngine)
    engine.cfg = {"supports": [], "regex_field": None}
    engine.model = "m"
    engine.sampling = {"max_tokens": 10, "temperature": 0.6, "top_p": 0.95}
    engine.chat_template_kwargs = {"enable_thinking": False}
    body = engine.body(Request("s1", "Write a story.", 7))
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    engine.chat_template_kwargs = {}
    assert "chat_template_kwargs" not in engine.body(Request("s1", "Write a story.", 7))


def test_they_are_part_of_the_parts_fingerprint_only_when_set(default_config):
    from cosmoforge.core.layout import Layout
    from cosmoforge.stages.generate.parts import row_settings

    settings = Layout(default_config).generate_settings("stories")
    before = row_settings(settings, None)
    assert "chat_template_kwargs" not in before["engine"]  # older parts stay reusable
    config = copy.deepcopy(default_config)
    config["engine"]["chat_template_kwargs"] = {"enable_thinking": False}
    after = row_settings(Layout(config).generate_settings("stories"), None)
    assert after["engine"]["chat_template_kwargs"] == {"enable_thinking": False}
    assert after != before


@pytest.mark.parametrize(
    "value, message",
    [
        ({"enable thinking": False}, r"engine.chat_template_kwargs: 'enable thinking' does not"),
        ({"tools": [{"name": "x"}]}, r"engine.chat_template_kwargs.tools: \[.*\] is not of type"),
    ],
)
def test_the_schema_refuses_what_no_template_argument_can_be(default_config, value, message):
    config = copy.deepcopy(default_config)
    config["engine"]["chat_template_kwargs"] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(config)
