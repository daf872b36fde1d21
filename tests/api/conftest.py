"""Fixtures of the REST API tests: configuration by environment, rows built without a worker."""

from __future__ import annotations

import pytest

from tests.api.helpers import build_job, build_output


@pytest.fixture
def ask(django_capture_on_commit_callbacks):
    """POST /api/v1/exports/ as a client does, its commit callbacks run (they publish the task's message)."""

    def post(client, body):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/api/v1/exports/", body, format="json")

    return post


@pytest.fixture
def owner_key(project, make_key):
    return make_key(project, ["jobs:read", "jobs:write", "reviews:read", "reviews:write", "admin", "webhooks:manage"])


@pytest.fixture
def owner_api(owner_key, client_for):
    return client_for(owner_key.raw)


@pytest.fixture
def make_job():
    return build_job


@pytest.fixture
def make_output():
    return build_output
