"""Events come from the platform's real signals, sent by the services that change jobs and reviews."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook

from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.models import Job
from atelier_platform.jobs.signals import job_cancelled, job_failed
from atelier_platform.webhooks.models import WebhookDelivery
from tests.support.reviewing import decide_the_review_item

pytestmark = pytest.mark.django_db

#: generated text that must never leave in a webhook: outputs wait for review
GENERATED = "Unreviewed words the model wrote"


@pytest.fixture
def hooked(project, receiver, endpoint_for):
    return endpoint_for(project, receiver.url)


@pytest.fixture
def finished_job(api, django_capture_on_commit_callbacks):
    """A job submitted through the API and completed by the job services, as a worker does;
    its output was flagged by screening."""

    def run(flagged=("harassment",)):
        job_id = api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "hello"}}, format="json").json()["id"]
        claim = lifecycle.claim_job(job_id, "test-worker")
        report = {"decision": "review" if flagged else "pass", "flagged": list(flagged)}
        produced = [lifecycle.ProducedOutput(content={"text": GENERATED, "characters": len(GENERATED)}, safety=report)]
        with django_capture_on_commit_callbacks(execute=True):
            assert lifecycle.complete_job(job_id, claim.token, produced, {"model": "test"}) == "succeeded"
        return Job.objects.get(pk=job_id)

    return run


def payloads(event_type):
    return [d.payload for d in WebhookDelivery.objects.filter(event_type=event_type)]


def test_a_finished_job_emits_output_flagged_and_job_succeeded_without_content(hooked, finished_job, receiver, deliver_all):
    job = finished_job()
    output = job.outputs.get()
    [succeeded] = payloads("job.succeeded")
    assert succeeded["type"] == "job.succeeded"
    assert succeeded["data"]["project"] == job.project.slug
    assert succeeded["data"]["job"] == {
        "id": str(job.pk), "plugin": "reverse_text", "plugin_version": "1.0.0", "status": "succeeded", "attempts": 1,
        "created_at": job.created_at.isoformat(), "finished_at": job.finished_at.isoformat(),
        "url": f"/api/v1/jobs/{job.pk}/",
    }
    assert succeeded["data"]["outputs"] == [{
        "id": str(output.pk), "job_id": str(job.pk), "index": 0, "review_state": "pending", "final": False,
        "flagged": ["harassment"], "url": f"/api/v1/jobs/{job.pk}/",
    }]
    [flagged] = payloads("output.flagged")
    assert flagged["data"]["output"]["id"] == str(output.pk) and flagged["data"]["output"]["flagged"] == ["harassment"]

    assert sorted(deliver_all()) == ["succeeded", "succeeded"]
    assert {r.json()["type"] for r in receiver.requests} == {"job.succeeded", "output.flagged"}
    for request in receiver.requests:
        Webhook(hooked.secret).verify(request.body, request.headers)
        assert GENERATED.encode() not in request.body


def test_jobs_stored_together_each_emit_job_succeeded_with_one_endpoint_lookup(hooked, api, django_capture_on_commit_callbacks):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ids = [api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": f"job {n}"}}, format="json").json()["id"]
           for n in range(3)]
    token = lifecycle.claim_job(ids[0], "test-worker").token
    for job_id in ids[1:]:
        lifecycle.claim_job(job_id, "test-worker")
    Job.objects.filter(pk__in=ids).update(claim_token=token)  # one batch, one claim
    produced = [lifecycle.ProducedOutput(content={"text": "x", "characters": 1}, safety={"decision": "pass", "flagged": []})]
    completions = [lifecycle.JobCompletion(Job.objects.select_related("project").get(pk=job_id), produced, {"model": "test"})
                   for job_id in ids]
    with CaptureQueriesContext(connection) as captured, django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.complete_jobs(token, completions) == {job_id: "succeeded" for job_id in ids}
    succeeded = payloads("job.succeeded")
    assert sorted(p["data"]["job"]["id"] for p in succeeded) == sorted(ids)
    assert len({WebhookDelivery.objects.get(payload=p).event_id for p in succeeded}) == 3
    assert sum(1 for q in captured if 'FROM "webhooks_webhookendpoint"' in q["sql"]) == 1


def test_an_unflagged_job_emits_job_succeeded_only(hooked, finished_job):
    finished_job(flagged=())
    assert {d.event_type for d in WebhookDelivery.objects.all()} == {"job.succeeded"}


def test_a_review_decision_emits_output_review_changed(hooked, finished_job, project, member, django_capture_on_commit_callbacks):
    job = finished_job()
    response = decide_the_review_item(project, member, django_capture_on_commit_callbacks)
    assert response.status_code == 200, response.content
    [changed] = payloads("output.review_changed")
    assert changed["data"]["output"]["id"] == str(job.outputs.get().pk)
    assert changed["data"]["output"]["review_state"] == "approved" and changed["data"]["output"]["final"] is True
    assert GENERATED not in json.dumps(changed)


def test_links_use_the_public_url_when_set(hooked, finished_job, webhook_config):
    webhook_config(public_url="https://atelier.example.com/")
    job = finished_job(flagged=())
    [succeeded] = payloads("job.succeeded")
    assert succeeded["data"]["job"]["url"] == f"https://atelier.example.com/api/v1/jobs/{job.pk}/"


def test_failed_and_cancelled_signals_become_events(hooked, api, project):
    job_id = api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "x"}}, format="json").json()["id"]
    job = Job.objects.get(pk=job_id)
    job.status, job.error_code, job.error_message = "failed", "plugin_error", "It broke."
    job_failed.send(sender=Job, job=job)
    [failed] = payloads("job.failed")
    assert failed["data"]["job"]["status"] == "failed"
    assert failed["data"]["job"]["error"] == {"code": "plugin_error", "message": "It broke."}
    job.status = "cancelled"
    job_cancelled.send(sender=Job, job=job)
    assert payloads("job.cancelled")[0]["data"]["job"]["id"] == job_id


def test_a_broken_webhook_never_breaks_the_job(project, finished_job, monkeypatch, receiver, endpoint_for):
    endpoint_for(project, receiver.url)

    def explode(*args, **kwargs):
        raise RuntimeError("webhook store down")

    monkeypatch.setattr("atelier_platform.webhooks.services.emit", explode)
    monkeypatch.setattr("atelier_platform.webhooks.services.emit_many", explode)
    job = finished_job()
    assert job.status == "succeeded" and not WebhookDelivery.objects.exists()


# These go through the job services; they pass once jobs/lifecycle.py sends job_failed and
# job_cancelled (see the signal definitions in jobs/signals.py). strict: remove the mark then.


def test_cancelling_a_queued_job_emits_job_cancelled(hooked, api, django_capture_on_commit_callbacks):
    job_id = api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "x"}}, format="json").json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200
    assert payloads("job.cancelled")[0]["data"]["job"]["status"] == "cancelled"


def test_a_failing_job_emits_job_failed(hooked, api, django_capture_on_commit_callbacks):
    job_id = api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "x"}}, format="json").json()["id"]
    claim = lifecycle.claim_job(job_id, "test-worker")
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.fail_job(job_id, claim.token, "plugin_error", "It broke.")
    assert payloads("job.failed")[0]["data"]["job"]["error"]["code"] == "plugin_error"


def test_every_event_of_a_job_says_where_to_fetch_it_in_data_job_url(hooked, finished_job, project, member,
                                                                      django_capture_on_commit_callbacks):
    """The README sends receivers to ``data.job.url`` for content; output events had no ``data.job``
    (only ``data.output.url``), so a receiver written to the README failed on them with a KeyError."""
    job = finished_job()
    assert decide_the_review_item(project, member, django_capture_on_commit_callbacks).status_code == 200

    deliveries = WebhookDelivery.objects.all()
    assert sorted(d.event_type for d in deliveries) == ["job.succeeded", "output.flagged", "output.review_changed"]
    for delivery in deliveries:
        assert set(delivery.payload) == {"type", "timestamp", "data"}
        assert delivery.payload["data"]["job"]["id"] == str(job.pk)
        assert delivery.payload["data"]["job"]["url"] == f"/api/v1/jobs/{job.pk}/", delivery.event_type


def test_jobs_cancelled_together_emit_job_cancelled_each_but_evaluation_jobs_none(hooked, api, project,
                                                                                  django_capture_on_commit_callbacks):
    from atelier_platform.jobs.models import JobPurpose

    ids = [api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": f"x{n}"}}, format="json").json()["id"]
           for n in range(3)]
    Job.objects.filter(pk=ids[2]).update(purpose=JobPurpose.EVALUATION)
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.cancel_jobs(ids).asked == 3
    cancelled = payloads("job.cancelled")
    assert sorted(p["data"]["job"]["id"] for p in cancelled) == sorted(ids[:2])
    assert {p["data"]["job"]["status"] for p in cancelled} == {"cancelled"}


def test_an_erasure_emits_job_erased_once_per_job_without_content(hooked, finished_job, receiver, deliver_all,
                                                                  django_capture_on_commit_callbacks):
    """A receiver that kept a copy (a CMS) hears of the erasure, by the job's and its outputs' ids; an erasure repeated
    announces nothing more."""
    from atelier_platform.jobs import erasure

    job = finished_job()
    output = job.outputs.get()
    with django_capture_on_commit_callbacks(execute=True):
        erasure.erase_jobs(job.project, [job.pk], "key:ab12cd34ef56")
    with django_capture_on_commit_callbacks(execute=True):
        erasure.erase_jobs(job.project, [job.pk], "key:ab12cd34ef56")  # erased already: nothing to announce
    job.refresh_from_db()
    [erased] = payloads("job.erased")
    assert erased["data"] == {"project": job.project.slug, "job": {
        "id": str(job.pk), "plugin": "reverse_text", "status": "succeeded", "erased_at": job.erased_at.isoformat(),
        "erased_by": "key:ab12cd34ef56", "outputs": [str(output.pk)], "url": f"/api/v1/jobs/{job.pk}/"}}
    deliver_all()
    sent = [r for r in receiver.requests if r.json()["type"] == "job.erased"]
    assert len(sent) == 1 and GENERATED.encode() not in sent[0].body and b"hello" not in sent[0].body
    Webhook(hooked.secret).verify(sent[0].body, sent[0].headers)


def test_an_endpoint_not_subscribed_to_job_erased_hears_nothing_of_it(project, receiver, endpoint_for, finished_job,
                                                                       django_capture_on_commit_callbacks):
    from atelier_platform.jobs import erasure

    endpoint_for(project, receiver.url, event_types=["job.succeeded"])
    job = finished_job()
    with django_capture_on_commit_callbacks(execute=True):
        erasure.erase_jobs(job.project, [job.pk], "user:1")
    assert payloads("job.erased") == [] and len(payloads("job.succeeded")) == 1
