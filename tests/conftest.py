from __future__ import annotations

import pytest
from atelier_sdk import PluginRegistry
from rest_framework.test import APIClient

from atelier_platform.accounts.services import issue_api_key
from atelier_platform.catalog.registry import replace_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.config import get_config
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.support.plugins import GpuEcho, ReverseText

pytest_plugins = ["tests.support.hanging_redis"]  # its hanging_redis fixture


@pytest.fixture(autouse=True)
def empty_plugin_registry():
    """No plugin is installed unless a test asks for one."""
    registry = PluginRegistry()
    replace_registry(registry)
    yield registry
    replace_registry(None)


@pytest.fixture(autouse=True)
def no_safety_checks():
    """No safety check runs unless a test installs one."""
    from atelier_platform.moderation.checks import replace_safety_checks

    from atelier_platform.moderation.screening import forget_blocklists

    replace_safety_checks([])
    forget_blocklists()
    yield
    replace_safety_checks(None)


@pytest.fixture(autouse=True)
def sent_messages(monkeypatch):
    """Messages the code under test published; unit tests never touch a real broker."""
    sent = []

    def record(name, args=None, **options):
        sent.append({"task": name, "args": args, **options})

    monkeypatch.setattr("atelier_platform.jobs.queueing.app.send_task", record)
    return sent


@pytest.fixture
def reverse_plugin(empty_plugin_registry):
    empty_plugin_registry.register(ReverseText)
    empty_plugin_registry.register(GpuEcho)
    return ReverseText


@pytest.fixture
def project(db, reverse_plugin):
    project = ProjectFactory()
    set_plugin_enabled(project, "reverse_text", True)
    set_plugin_enabled(project, "gpu_reverse", True)
    return project


@pytest.fixture
def other_project(db, reverse_plugin):
    project = ProjectFactory()
    set_plugin_enabled(project, "reverse_text", True)
    return project


@pytest.fixture
def atelier_config(monkeypatch):
    """Set ATELIER_* variables for this test; the cached configuration is read afresh."""

    def configure(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"ATELIER_{name.upper()}", str(value))
        get_config.cache_clear()

    yield configure
    get_config.cache_clear()  # the variables are restored after this; the next read sees them


@pytest.fixture
def make_key():
    def make(project, scopes=("jobs:read", "jobs:write")):
        return issue_api_key(project, scopes=list(scopes))

    return make


@pytest.fixture
def api_key(project, make_key):
    return make_key(project)


@pytest.fixture
def client_for():
    def make(raw_key: str | None = None) -> APIClient:
        client = APIClient()
        if raw_key:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    return make


@pytest.fixture
def api(api_key, client_for) -> APIClient:
    return client_for(api_key.raw)


@pytest.fixture
def member(db):
    def make(project, role):
        return MembershipFactory(project=project, user=UserFactory(), role=role).user

    return make
