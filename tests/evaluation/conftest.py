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


@pytest.fixture(scope="session")
def image_models_root(tmp_path_factory):
    """A models root with a tiny diffusion pipeline at the image plugin's default directory and a tiny feature
    extractor at the evaluation's default (``demo/image-features``)."""
    from atelier_plugins.image.plugin import ImagePlugin
    from tests.support.tiny_diffusion import build_tiny_sd_pipeline
    from tests.support.tiny_features import build_tiny_feature_extractor

    root = tmp_path_factory.mktemp("image-evaluation-models")
    build_tiny_sd_pipeline(root / ImagePlugin.manifest.default_model_dir)
    build_tiny_feature_extractor(root / "demo" / "image-features")
    return root


@pytest.fixture
def image_project(project, empty_plugin_registry, image_models_root, monkeypatch):
    """The real image plugin on a tiny pipeline, enabled for ``project``; features from a tiny extractor."""
    from atelier_plugins.image.plugin import ImagePlugin

    empty_plugin_registry.register(ImagePlugin)
    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: image_models_root))
    set_plugin_enabled(project, "image", True)
    return project


def png_bytes(seed: int, size: int = 32, kind: str = "PNG") -> bytes:
    """A small picture of random blocks (another seed, another picture)."""
    import io

    import numpy as np
    from PIL import Image

    blocks = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blocks).resize((size, size), Image.NEAREST).save(buffer, format=kind)
    return buffer.getvalue()


def image_case(prompt: str, image: bytes, **input_fields) -> dict:
    import base64

    return {"input": {"prompt": prompt, "width": 32, "height": 32, "steps": 2, **input_fields},
            "reference": base64.b64encode(image).decode("ascii")}
