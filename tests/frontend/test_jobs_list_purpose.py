"""The dashboard's jobs list leaves evaluation jobs out unless asked (an editor's list is the project's requests;
a run's hundreds of jobs would push them off the page), says so with a link that shows them, and marks each one
shown; the poll for new jobs follows the same choice; an evaluation job's page links its run."""

from __future__ import annotations

import re

import pytest

from atelier_platform.evaluation.models import EvaluationCase, EvaluationRun, ReferenceSet
from atelier_platform.jobs.models import Job, JobPurpose

pytestmark = pytest.mark.django_db


def make(project, text: str, purpose=JobPurpose.REQUEST) -> Job:
    return Job.objects.create(project=project, plugin_id="reverse_text", status="succeeded", seed=1,
                              input={"text": text}, purpose=purpose)


def listed(page: str) -> set[str]:
    return set(re.findall(r'<tr data-job="([0-9a-f-]+)"', page))


@pytest.fixture
def jobs(project):
    return make(project, "a caller's request"), make(project, "an evaluation case", JobPurpose.EVALUATION)


def test_evaluation_jobs_are_left_out_by_default_and_listed_when_asked(project, signed_in, jobs):
    asked, evaluated = jobs
    editor = signed_in(project, "editor")
    page = editor.get("/jobs/").content.decode()
    assert listed(page) == {str(asked.pk)}
    assert 'id="evaluation-hidden"' in page and "purpose=all" in page
    both = editor.get("/jobs/?purpose=all").content.decode()
    assert listed(both) == {str(asked.pk), str(evaluated.pk)} and 'id="evaluation-hidden"' not in both
    row = re.search(rf'<tr data-job="{evaluated.pk}".*?</tr>', both, re.S).group(0)
    assert "evaluation-chip" in row
    assert "evaluation-chip" not in re.search(rf'<tr data-job="{asked.pk}".*?</tr>', both, re.S).group(0)
    assert listed(editor.get("/jobs/?purpose=evaluation").content.decode()) == {str(evaluated.pk)}
    assert listed(editor.get("/jobs/?purpose=bogus").content.decode()) == {str(asked.pk)}


def test_without_evaluation_jobs_nothing_is_said_of_them(project, signed_in):
    make(project, "a caller's request")
    assert 'id="evaluation-hidden"' not in signed_in(project, "viewer").get("/jobs/").content.decode()


def test_the_poll_for_new_jobs_follows_the_choice(project, signed_in, jobs):
    asked, evaluated = jobs
    viewer = signed_in(project, "viewer")
    since = "2000-01-01T00:00:00Z"
    new = {row["id"] for row in viewer.get(f"/jobs/status/?since={since}").json()["new"]}
    assert new == {str(asked.pk)}
    new = {row["id"] for row in viewer.get(f"/jobs/status/?since={since}&purpose=all").json()["new"]}
    assert new == {str(asked.pk), str(evaluated.pk)}


def test_an_evaluation_jobs_page_links_its_run(project, signed_in, jobs):
    _, evaluated = jobs
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=[])
    run = EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id="chatbot", cases_total=1)
    EvaluationCase.objects.create(run=run, index=0, job=evaluated)
    page = signed_in(project, "viewer").get(f"/jobs/{evaluated.pk}/").content.decode()
    assert 'id="evaluation-job"' in page and f'href="/evaluation/runs/{run.pk}/"' in page and "Case 1 of its run" in page
