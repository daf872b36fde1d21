from __future__ import annotations

import pytest

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.config import get_config


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory):
    """A models root with a tiny chat LM at the chatbot's default directory and a second one under
    ``chat/v2`` (another seed: other weights, other replies), built once."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from tests.support.tiny_lm import build_tiny_chat_lm

    root = tmp_path_factory.mktemp("evaluation-models")
    build_tiny_chat_lm(root / ChatbotPlugin.manifest.default_model_dir, n_positions=256)
    build_tiny_chat_lm(root / "chat" / "v2", n_positions=256, seed=7)
    return root


@pytest.fixture
def chatbot(empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    return ChatbotPlugin


@pytest.fixture
def chat_project(project, chatbot, tiny_models_root, monkeypatch):
    """The real chatbot plugin on a tiny LM, enabled for ``project``."""
    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: tiny_models_root))
    set_plugin_enabled(project, "chatbot", True)
    return project


def chat_case(question: str, reference: str, **params) -> dict:
    return {"input": {"messages": [{"role": "user", "content": question}], "use_knowledge": False},
            "params": {"max_new_tokens": 12, **params}, "reference": reference}
