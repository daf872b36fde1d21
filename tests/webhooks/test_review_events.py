"""output.review_changed after each kind of decision: a regenerate names the job it queued, so that a receiver
waiting on the first job learns a new try is coming (and where to wait for it), not only that the output was
rejected."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from atelier_platform.accounts.roles import Role
from atelier_platform.jobs.models import Job
from atelier_platform.moderation.models import ReviewItem
from atelier_platform.webhooks.models import WebhookDelivery
from tests.api.helpers import build_job, build_output

pytestmark = pytest.mark.django_db


@pytest.fixture
def decide(project, member, receiver, endpoint_for, django_capture_on_commit_callbacks):
    """A reviewer's decision on a new output through the API, with an endpoint subscribed; the event's data."""
    endpoint_for(project, receiver.url)
    reviewer = APIClient()
    reviewer.force_login(member(project, Role.REVIEWER))
    reviewer.credentials(HTTP_X_ATELIER_PROJECT=project.slug)

    def run(body: dict) -> dict:
        job = build_job(project)
        item = ReviewItem.objects.create(output=build_output(job), project=project, priority=5)
        assert reviewer.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
        with django_capture_on_commit_callbacks(execute=True):
            response = reviewer.post(f"/api/v1/reviews/{item.pk}/decision/", body, format="json")
        assert response.status_code == 200, response.content
        [delivery] = WebhookDelivery.objects.filter(event_type="output.review_changed", payload__data__job__id=str(job.pk))
        return delivery.payload["data"]

    return run


def test_a_regenerate_decision_names_the_new_job(decide):
    data = decide({"action": "regenerate", "comment": "shorter"})
    new = Job.objects.get(regenerated_from__job_id=data["job"]["id"])
    assert data["output"]["review_state"] == "rejected" and data["output"]["final"] is False
    assert data["regenerated_job"] == {"id": str(new.pk), "url": f"/api/v1/jobs/{new.pk}/"}


@pytest.mark.parametrize("body", [{"action": "approve"}, {"action": "reject", "reason": "off_brand"}],
                         ids=["approve", "reject"])
def test_other_decisions_name_no_new_job(decide, body):
    data = decide(body)
    assert "regenerated_job" in data and data["regenerated_job"] is None
