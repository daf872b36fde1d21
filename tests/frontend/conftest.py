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


class Chromium:
    """One Playwright and one chromium for a test module: starting them took about 0.6 s of each browser test.
    Each test still gets a browser of its own as far as a page can tell: what it opens are contexts (no
    cookies, storage or cache shared with another), and they are closed when it ends; a chromium that
    crashed is launched again for the next test."""

    def __init__(self, sync_api) -> None:
        self._manager = sync_api.sync_playwright()
        self._playwright = self._manager.start()
        self._browser = None

    def browser(self):
        from tests.frontend.browsing import CHROMIUM, CHROMIUM_ARGS

        if self._browser is None or not self._browser.is_connected():
            self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        return self._browser

    def close_contexts(self) -> None:
        if self._browser is not None and self._browser.is_connected():
            for context in list(self._browser.contexts):
                context.close()

    def stop(self) -> None:
        try:
            if self._browser is not None and self._browser.is_connected():
                self._browser.close()
        finally:
            self._manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop in this thread while it runs, here for the whole module: the
    # ORM calls of every fixture and test in between (the database flush of transactional tests among them)
    # are plain blocking calls, which Django would otherwise refuse as "async" (see orm_beside_playwright).
    patch = pytest.MonkeyPatch()
    patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    try:
        keeper = Chromium(sync_api)
        try:
            yield keeper
        finally:
            keeper.stop()
            from django.db import connections

            connections.close_all()
    finally:
        patch.undo()


@pytest.fixture
def browser(chromium):
    from tests.frontend.browsing import SHOTS

    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield chromium.browser()
    finally:
        chromium.close_contexts()  # the test's pages: none of them reaches into the next test
        # Inside Playwright's context the test's ORM calls open a database connection of their own
        # (Django keeps connections per context); close it, or it outlives the test database.
        from django.db import connections

        connections.close_all()


@pytest.fixture
def expect():
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    return expect
