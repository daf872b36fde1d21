"""A job's purpose in the jobs API: each job says whether a caller asked for it or an evaluation run did, and the
list filters by it; without the filter the list holds both, as callers have always had it."""

from __future__ import annotations

import pytest

from atelier_platform.jobs.models import JobPurpose

pytestmark = pytest.mark.django_db


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {job["id"] for job in response.json()["results"]}


def test_each_job_says_its_purpose_and_the_list_filters_by_it(project, owner_api, make_job):
    asked = make_job(project)
    evaluated = make_job(project, purpose=JobPurpose.EVALUATION)
    listed = {job["id"]: job["purpose"] for job in owner_api.get("/api/v1/jobs/").json()["results"]}
    assert listed == {str(asked.pk): "request", str(evaluated.pk): "evaluation"}  # the default lists both
    assert owner_api.get(f"/api/v1/jobs/{evaluated.pk}/").json()["purpose"] == "evaluation"
    assert ids(owner_api.get("/api/v1/jobs/?purpose=request")) == {str(asked.pk)}
    assert ids(owner_api.get("/api/v1/jobs/?purpose=evaluation")) == {str(evaluated.pk)}


def test_an_unknown_purpose_is_a_400_naming_the_filter(owner_api):
    response = owner_api.get("/api/v1/jobs/?purpose=everything")
    assert response.status_code == 400 and "purpose" in response.content.decode()


def test_the_filter_sees_only_the_projects_own_jobs(project, other_project, owner_api, make_job):
    make_job(other_project, purpose=JobPurpose.EVALUATION)
    assert ids(owner_api.get("/api/v1/jobs/?purpose=evaluation")) == set()
