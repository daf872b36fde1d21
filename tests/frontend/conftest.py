from __future__ import annotations

import pytest
from django.test import Client

from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_workers.runtime import JobRunner, ModelCache
from tests.frontend.chat_plugin import TurnCounter


@pytest.fixture
def signed_in(member):
    """A Django test client signed in as a new member of ``project`` with ``role``."""

    def make(project, role):
        user = member(project, role)
        client = Client()
        client.force_login(user)
        client.user = user
        return client

    return make


@pytest.fixture
def submit():
    def make(project, text="hello world", user=None, **input_fields) -> Job:
        request = JobRequest(plugin_id="reverse_text", input={"text": text, **input_fields}, params={})
        return submit_job(project, request, submitted_by=user).job

    return make


@pytest.fixture
def run_job(reverse_plugin):
    runner = JobRunner(get_registry(), ModelCache("cpu"))
    return lambda job: runner.run(str(job.pk))


@pytest.fixture
def chat_project(project, empty_plugin_registry):
    """The project with the chat test plugin (it counts the turns it was given) switched on."""
    empty_plugin_registry.register(TurnCounter)
    set_plugin_enabled(project, "turn_counter", True)
    return project


# --- the browser tests' (tests/frontend/test_browser*.py) ---------------------------------------------

@pytest.fixture
def orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; Django then refuses ORM calls
    # from it as "async" although they are plain blocking calls of the test.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.frontend.browsing import CHROMIUM, CHROMIUM_ARGS, SHOTS

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
        # Inside Playwright's context the test's ORM calls open a database connection of their own
        # (Django keeps connections per context); close it, or it outlives the test database.
        from django.db import connections

        connections.close_all()


@pytest.fixture
def expect():
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    return expect
