from __future__ import annotations

import pytest
from django.test import Client

from atelier_platform.catalog.registry import get_registry
from atelier_platform.jobs.models import Job
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_workers.runtime import JobRunner, ModelCache


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
