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
