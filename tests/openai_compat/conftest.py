"""Fixtures for the OpenAI-compatible endpoints: the real chatbot and image plugins on tiny models,
and a worker that runs each published job in a thread while the view waits for it."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.config import get_config
from atelier_platform.moderation.policies import update_policy
from atelier_workers.runtime import JobRunner, ModelCache


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    return tmp_path_factory.mktemp("openai-models")


@pytest.fixture(scope="session")
def tiny_chat_lm(models_root):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from tests.support.tiny_lm import build_tiny_chat_lm

    return build_tiny_chat_lm(models_root / ChatbotPlugin.manifest.default_model_dir, n_positions=512)


@pytest.fixture(scope="session")
def tiny_image_pipeline(models_root):
    from atelier_plugins.image.plugin import ImagePlugin
    from tests.support.tiny_diffusion import build_tiny_sd_pipeline

    return build_tiny_sd_pipeline(models_root / ImagePlugin.manifest.default_model_dir)


@pytest.fixture(scope="session")
def model_cache():
    """One cache for the session: the tiny models load once."""
    return ModelCache("cpu")


@pytest.fixture
def use_models_root(models_root, monkeypatch):
    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: models_root))
    return models_root


@pytest.fixture
def chat_project(project, empty_plugin_registry, tiny_chat_lm, use_models_root):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    return project


@pytest.fixture
def image_project(project, empty_plugin_registry, tiny_image_pipeline, use_models_root):
    from atelier_plugins.image.plugin import ImagePlugin

    empty_plugin_registry.register(ImagePlugin)
    set_plugin_enabled(project, "image", True)
    return project


@pytest.fixture
def release_after_screening():
    def apply(project):
        update_policy(project, "test", {"review_mode": "release_after_screening", "audit_sample_percent": 0})
        return project

    return apply


@pytest.fixture
def worker(monkeypatch, model_cache):
    """Published jobs run in a thread, as a worker would run them, while the request waits."""
    threads: list[threading.Thread] = []
    ran: list[str] = []

    def send_task(name, args=None, **options):
        job_id = args[0]

        def run():
            try:
                JobRunner(get_registry(), model_cache).run(job_id)
            finally:
                connection.close()

        ran.append(job_id)
        thread = threading.Thread(target=run, name=f"worker-{job_id}")
        thread.start()
        threads.append(thread)

    monkeypatch.setattr("atelier_platform.jobs.queueing.app.send_task", send_task)
    yield ran
    for thread in threads:
        thread.join(timeout=60)


@pytest.fixture
def wait_s(monkeypatch):
    """Set how long the endpoints wait for their job."""
    def set_wait(seconds: float) -> None:
        monkeypatch.setattr("atelier_platform.openai_compat.services.wait_seconds", lambda: seconds)

    return set_wait
