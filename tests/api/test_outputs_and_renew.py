"""GET /api/v1/outputs/ and /outputs/{id}/, and POST /api/v1/reviews/{id}/renew/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from atelier_platform.jobs.models import ReviewState
from atelier_platform.moderation.models import AuditEvent, ReviewItem
from tests.api.helpers import assert_envelope

OUTPUTS = "/api/v1/outputs/"


@pytest.mark.django_db
class TestOutputs:
    def test_one_output_as_the_job_shows_it(self, api, project, make_job, make_output):
        job = make_job(project)
        output = make_output(job, content={"text": "olleh", "characters": 5}, review_state=ReviewState.APPROVED, image=True)
        body = api.get(f"{OUTPUTS}{output.pk}/").json()
        assert body["id"] == str(output.pk) and body["job"] == str(job.pk) and body["plugin"] == "reverse_text"
        assert body["final"] is True and body["review_state"] == "approved" and body["content"]["text"] == "olleh"
        in_job = next(o for o in api.get(f"/api/v1/jobs/{job.pk}/").json()["outputs"] if o["id"] == str(output.pk))
        assert {k: v for k, v in body.items() if k not in ("job", "plugin")} == in_job
        primary = next(f for f in body["files"] if f["role"] == "primary")
        assert api.get(primary["url"]).status_code == 200

    def test_pending_output_is_not_final(self, api, project, make_job, make_output):
        output = make_output(make_job(project))
        assert api.get(f"{OUTPUTS}{output.pk}/").json()["final"] is False

    def test_list_filters(self, api, project, make_job, make_output):
        job = make_job(project)
        approved = make_output(job, index=0, review_state=ReviewState.APPROVED)
        pending = make_output(job, index=1)
        other = make_output(make_job(project, plugin="gpu_reverse"), review_state=ReviewState.RELEASED)
        ids = lambda params: {o["id"] for o in api.get(OUTPUTS, params).json()["results"]}  # noqa: E731
        assert ids({}) == {str(approved.pk), str(pending.pk), str(other.pk)}
        assert ids({"final": "true"}) == {str(approved.pk), str(other.pk)}
        assert ids({"final": "false"}) == {str(pending.pk)}
        assert ids({"job": str(job.pk)}) == {str(approved.pk), str(pending.pk)}
        assert ids({"plugin": "gpu_reverse"}) == {str(other.pk)}
        assert ids({"review_state": ["pending", "released"]}) == {str(pending.pk), str(other.pk)}
        for bad in ({"job": "nope"}, {"review_state": "lost"}, {"final": "maybe"}, {"created_after": "soon"}):
            assert_envelope(api.get(OUTPUTS, bad), 400, "validation_error")

    def test_another_projects_output_is_not_found(self, api, other_project, make_job, make_output):
        theirs = make_output(make_job(other_project))
        assert_envelope(api.get(f"{OUTPUTS}{theirs.pk}/"), 404, "not_found")
        assert api.get(OUTPUTS).json()["results"] == []
        assert_envelope(api.get(f"{OUTPUTS}not-a-uuid/"), 404, "not_found")

    def test_needs_read_scope(self, project, make_key, client_for, make_job, make_output):
        output = make_output(make_job(project))
        reviewer_only = client_for(make_key(project, ["reviews:read"]).raw)
        assert_envelope(reviewer_only.get(f"{OUTPUTS}{output.pk}/"), 403, "permission_denied")


@pytest.mark.django_db
class TestRenew:
    @pytest.fixture
    def item(self, project, make_job, make_output):
        return ReviewItem.objects.create(output=make_output(make_job(project)), project=project)

    @pytest.fixture
    def reviewers(self, project, make_key, client_for):
        return [client_for(make_key(project, ["reviews:read", "reviews:write"]).raw) for _ in range(2)]

    def test_holder_renews_the_lease(self, item, reviewers, project):
        first = reviewers[0]
        claimed = first.post(f"/api/v1/reviews/{item.pk}/claim/").json()
        ReviewItem.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=5))
        renewed = first.post(f"/api/v1/reviews/{item.pk}/renew/")
        assert renewed.status_code == 200
        assert renewed.json()["lease_expires_at"] > (timezone.now() + timedelta(seconds=60)).isoformat()
        assert renewed.json()["lease_holder"] == claimed["lease_holder"]
        assert AuditEvent.objects.filter(project=project, action="lease_renewed").count() == 1

    def test_renew_never_takes_an_item(self, item, reviewers):
        assert_envelope(reviewers[0].post(f"/api/v1/reviews/{item.pk}/renew/"), 409, "lease_required")
        reviewers[1].post(f"/api/v1/reviews/{item.pk}/claim/")
        assert_envelope(reviewers[0].post(f"/api/v1/reviews/{item.pk}/renew/"), 409, "lease_required")

    def test_lapsed_lease_nobody_took_can_be_renewed(self, item, reviewers):
        reviewers[0].post(f"/api/v1/reviews/{item.pk}/claim/")
        ReviewItem.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        assert reviewers[0].post(f"/api/v1/reviews/{item.pk}/renew/").status_code == 200

    def test_decided_item(self, item, reviewers):
        reviewers[0].post(f"/api/v1/reviews/{item.pk}/claim/")
        assert reviewers[0].post(f"/api/v1/reviews/{item.pk}/decision/", {"action": "approve"}, format="json").status_code == 200
        assert_envelope(reviewers[0].post(f"/api/v1/reviews/{item.pk}/renew/"), 409, "review_decided")

    def test_scope_and_isolation(self, item, api, other_project, make_key, client_for):
        assert_envelope(api.post(f"/api/v1/reviews/{item.pk}/renew/"), 403, "permission_denied")
        outsider = client_for(make_key(other_project, ["reviews:read", "reviews:write"]).raw)
        assert_envelope(outsider.post(f"/api/v1/reviews/{item.pk}/renew/"), 404, "not_found")
        assert_envelope(outsider.post("/api/v1/reviews/99999999999999999999999/renew/"), 404, "not_found")
