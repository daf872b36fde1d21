"""Evaluation jobs: screened and stored as any job, but no review item, no webhook, not in the jobs-per-day quota."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from atelier_platform.catalog.registry import get_registry
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.models import Job, JobPurpose, JobStatus
from atelier_platform.jobs.submission import JobRequest, submit_evaluation_jobs, submit_job
from atelier_platform.moderation.models import ReviewItem
from atelier_platform.usage import quotas
from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from atelier_workers.runtime import JobRunner, ModelCache

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hooked(project):
    WebhookEndpoint.objects.create(project=project, url="https://example.com/hook", secret="whsec_x")
    return project


def evaluation_jobs(project, *texts) -> list[Job]:
    with transaction.atomic():
        return submit_evaluation_jobs(project, [JobRequest("reverse_text", {"text": text}, {}) for text in texts])


def test_an_evaluation_job_opens_no_review_item_and_fires_no_webhook(hooked):
    runner = JobRunner(get_registry(), ModelCache("cpu"))
    request = submit_job(hooked, JobRequest("reverse_text", {"text": "asked"}, {})).job
    runner.run(str(request.pk))
    # the same path for a caller's job opens an item and delivers its event: the two below are not vacuous
    assert ReviewItem.objects.filter(output__job=request).count() == 1
    assert WebhookDelivery.objects.filter(event_type="job.succeeded").count() == 1

    [job] = evaluation_jobs(hooked, "evaluated")
    assert job.purpose == JobPurpose.EVALUATION and job.status == JobStatus.QUEUED
    runner.run(str(job.pk))
    job.refresh_from_db()
    output = job.outputs.get()
    assert job.status == JobStatus.SUCCEEDED and output.content["text"] == "detaulave"
    assert output.review_state == "pending" and output.safety["decision"] == "pass"  # screened, never final
    assert not ReviewItem.objects.filter(output__job=job).exists()
    assert WebhookDelivery.objects.filter(event_type="job.succeeded").count() == 1


def test_a_failed_evaluation_job_fires_no_webhook(hooked):
    [job] = evaluation_jobs(hooked, "fails")
    claim = lifecycle.claim_job(str(job.pk), "test-worker")
    assert lifecycle.fail_job(str(job.pk), claim.token, "plugin_crashed", "boom")
    assert not WebhookDelivery.objects.filter(event_type="job.failed").exists()


def test_evaluation_jobs_do_not_count_in_the_jobs_per_day_quota(project):
    evaluation_jobs(project, "a", "b", "c")
    submit_job(project, JobRequest("reverse_text", {"text": "asked"}, {}))
    assert quotas.jobs_today(project, timezone.now()) == 1


def test_evaluation_jobs_are_checked_as_any_job_naming_the_case(project):
    from atelier_platform.jobs.errors import InvalidJobInput

    with pytest.raises(InvalidJobInput) as refused:
        evaluation_jobs(project, "fine", "")
    assert "cases.1.input.text" in refused.value.details
    assert not Job.objects.exists()
