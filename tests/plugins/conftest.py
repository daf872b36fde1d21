"""Fixtures shared by the plugin tests."""

from __future__ import annotations

import pytest

from tests.support.tiny_lm import build_tiny_chat_lm


@pytest.fixture(scope="module")
def chatbot(tmp_path_factory):
    """The chatbot plugin loaded with a tiny chat model, once per test module."""
    import torch

    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    torch.set_num_threads(1)
    plugin = ChatbotPlugin()
    # Room for the system prompt with three passages, which the tiny vocabulary spells out in many tokens.
    plugin.load("cpu", build_tiny_chat_lm(tmp_path_factory.mktemp("tiny_chat_lm"), n_positions=768))
    return plugin
