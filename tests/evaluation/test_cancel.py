"""Cancelling an evaluation run: POST /api/v1/evaluation/runs/{id}/cancel/ and ``services.cancel_run``.

A run of up to 500 cases could only be stopped job by job; it held one of the project's 3 runs going, and its
reference set could not be deleted, until the last job had finished."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from atelier_platform.evaluation import services
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.moderation.models import AuditEvent
from tests.evaluation.conftest import chat_case
from tests.evaluation.test_api import RUNS, SETS, a_set, error_of
from tests.evaluation.test_runs import make_set
from tests.support.databases import needs_postgresql

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_api(project, make_key, client_for):
    return client_for(make_key(project, scopes=["admin", "jobs:read", "jobs:write"]).raw)


@pytest.fixture
def chat_enabled(project, chatbot):
    from atelier_platform.catalog.services import set_plugin_enabled

    set_plugin_enabled(project, "chatbot", True)
    return project


def cancel(client, run_id):
    return client.post(f"{RUNS}{run_id}/cancel/", format="json")


def jobs_of(run_id) -> list[Job]:
    return list(Job.objects.filter(evaluation_case__run_id=run_id).order_by("evaluation_case__index"))


def test_cancelling_a_queued_run_cancels_its_jobs_frees_its_slot_and_is_audited(chat_enabled, admin_api, monkeypatch):
    monkeypatch.setattr(services, "MAX_ACTIVE_RUNS", 1)
    reference_set = a_set(admin_api).json()
    run = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json").json()
    busy = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json")
    assert busy.status_code == 409 and error_of(busy)["code"] == "evaluation_runs_busy"

    response = cancel(admin_api, run["id"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "cancelled" and body["progress"] == {"done": 2, "failed": 2, "total": 2}
    assert body["metrics"]["succeeded"] == 0 and body["metrics"]["failed"] == 2
    assert [(r["status"], r["error"]["code"]) for r in body["results"]] == [("failed", "cancelled")] * 2
    assert "Cancelled" in body["error"] and body["finished_at"]
    assert {job.status for job in jobs_of(run["id"])} == {JobStatus.CANCELLED}  # queued ones at once

    event = AuditEvent.objects.get(action="evaluation_run_cancelled")
    assert event.before == {"status": "queued"} and event.after["jobs_cancelled"] == 2
    assert event.after["status"] == "cancelled" and event.object_id == str(run["id"])
    assert event.actor.startswith("key:")  # who cancelled it

    again = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json")
    assert again.status_code == 201, again.content  # the slot is free at once
    cancel(admin_api, again.json()["id"])
    assert admin_api.delete(f"{SETS}{reference_set['id']}/").status_code == 204  # no run of it going any more


def test_a_finished_run_is_a_409_and_nothing_changes(chat_enabled, admin_api):
    reference_set = a_set(admin_api).json()
    run_id = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json").json()["id"]
    for job in jobs_of(run_id):
        lifecycle.cancel_job(job)  # one by one, as before: the run failed, every case cancelled
    before = EvaluationRun.objects.filter(pk=run_id).values().get()
    assert before["status"] == RunStatus.FAILED
    response = cancel(admin_api, run_id)
    assert response.status_code == 409
    assert error_of(response)["code"] == "evaluation_run_finished"
    assert "finished already (failed)" in error_of(response)["message"]
    assert EvaluationRun.objects.filter(pk=run_id).values().get() == before
    assert not AuditEvent.objects.filter(action="evaluation_run_cancelled").exists()


def test_cancelling_twice_answers_409_the_second_time_and_does_nothing_more(chat_enabled, admin_api):
    reference_set = a_set(admin_api).json()
    run_id = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json").json()["id"]
    assert cancel(admin_api, run_id).status_code == 200
    after_first = EvaluationRun.objects.filter(pk=run_id).values().get()
    second = cancel(admin_api, run_id)
    assert second.status_code == 409 and error_of(second)["code"] == "evaluation_run_finished"
    assert "cancelled already" in error_of(second)["message"]
    assert EvaluationRun.objects.filter(pk=run_id).values().get() == after_first
    assert AuditEvent.objects.filter(action="evaluation_run_cancelled").count() == 1


def test_only_owners_and_admin_keys_cancel_and_another_projects_run_is_not_found(chat_enabled, admin_api, api, member,
                                                                                other_project):
    reference_set = a_set(admin_api).json()
    run_id = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json").json()["id"]
    refused = cancel(api, run_id)  # a jobs:write key cancels jobs, not runs
    assert refused.status_code == 403 and error_of(refused)["code"] == "permission_denied"
    for role in ("editor", "reviewer", "viewer"):
        client = APIClient()
        client.force_login(member(chat_enabled, role))
        client.credentials(HTTP_X_ATELIER_PROJECT=chat_enabled.slug)
        assert cancel(client, run_id).status_code == 403, role
    assert EvaluationRun.objects.get(pk=run_id).status == RunStatus.QUEUED
    assert {job.status for job in jobs_of(run_id)} == {JobStatus.QUEUED}

    theirs = ReferenceSet.objects.create(project=other_project, plugin_id="chatbot", name="theirs",
                                         cases=[chat_case("q", "r")])
    their_run = EvaluationRun.objects.create(project=other_project, reference_set=theirs, plugin_id="chatbot",
                                             cases_total=1)
    gone = cancel(admin_api, their_run.pk)
    assert gone.status_code == 404 and error_of(gone)["code"] == "not_found"
    assert EvaluationRun.objects.get(pk=their_run.pk).status == RunStatus.QUEUED

    owner = APIClient()
    owner.force_login(member(chat_enabled, "owner"))
    owner.credentials(HTTP_X_ATELIER_PROJECT=chat_enabled.slug)
    assert cancel(owner, run_id).status_code == 200


def test_the_cases_answered_before_the_cancel_keep_their_scores_and_a_running_job_stops(chat_project):
    """One case answered, one running on a worker, one queued: the answer is scored, the running job is asked to stop
    (its late result is discarded and changes nothing), the queued one is cancelled at once."""
    run = services.start_run(chat_project, make_set(chat_project, ["x", "y", "z"]), actor="test")
    answered, running, queued = jobs_of(run.pk)
    # a worker's answer, as the job runner stores it (the runner itself would take the other two as its batch)
    done = lifecycle.claim_job(str(answered.pk), "worker-1")
    assert lifecycle.complete_job(str(answered.pk), done.token, [lifecycle.ProducedOutput({"reply": "x"})],
                                  {"model_version": "default"}) == JobStatus.SUCCEEDED
    claim = lifecycle.claim_job(str(running.pk), "worker-2")
    assert claim is not None and EvaluationRun.objects.get(pk=run.pk).status == RunStatus.RUNNING

    run = services.cancel_run(EvaluationRun.objects.get(pk=run.pk), actor="user:owner")
    assert run.status == RunStatus.CANCELLED and EvaluationRun.objects.get(pk=run.pk).is_finished
    first, second, third = run.results
    assert (first["status"], first["output"], first["chrf"]) == ("succeeded", "x", 100.0)
    assert [second["status"], second["error"]["code"], third["status"], third["error"]["code"]] == [
        "failed", "cancelled", "failed", "cancelled"]
    assert run.metrics["succeeded"] == 1 and run.metrics["failed"] == 2 and run.metrics["chrf"] is not None
    assert (run.cases_done, run.cases_failed) == (3, 2) and run.started_at is not None
    running.refresh_from_db(), queued.refresh_from_db()
    assert running.status == JobStatus.RUNNING and running.cancel_requested_at is not None  # stops at its next step
    assert queued.status == JobStatus.CANCELLED

    scored = EvaluationRun.objects.filter(pk=run.pk).values().get()
    late = lifecycle.complete_job(str(running.pk), claim.token, [lifecycle.ProducedOutput({"reply": "late"})], {})
    assert late == JobStatus.CANCELLED
    assert services.sweep_runs() == 0
    assert EvaluationRun.objects.filter(pk=run.pk).values().get() == scored


@needs_postgresql
def test_a_worker_storing_an_answer_meanwhile_is_not_held_up_by_the_cancels_project_lock(chat_enabled, admin_api,
                                                                                         monkeypatch):
    """A worker storing a job's answer holds the job's row and writes the output's audit record, which names the
    project: under a full lock of the project's row that write waited for the cancel, while the cancel waited for
    the job's row (a deadlock, the cancel aborted with an error). The cancel's lock lets such rows be written."""
    import threading

    from django.db import connection

    reference_set = a_set(admin_api).json()
    run_id = admin_api.post(RUNS, {"reference_set": reference_set["id"]}, format="json").json()["id"]
    real_cancel_jobs, written = lifecycle.cancel_jobs, []

    def worker_writes_an_audit_record():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '5s'")  # bounds a failure; a pass does not wait at all
            AuditEvent.objects.create(project=chat_enabled, actor="screening", action="output_screened",
                                      object_type="output", object_id="1")
            written.append("written")
        except Exception as error:  # the lock timed out: the worker would have waited for the cancel
            written.append(repr(error))
        finally:
            connection.close()

    def cancel_jobs_while_a_worker_writes(job_ids):
        if not written:
            worker = threading.Thread(target=worker_writes_an_audit_record)
            worker.start()
            worker.join()
        return real_cancel_jobs(job_ids)

    monkeypatch.setattr(lifecycle, "cancel_jobs", cancel_jobs_while_a_worker_writes)
    assert cancel(admin_api, run_id).status_code == 200
    assert written == ["written"]


def test_a_200_case_run_is_cancelled_in_a_few_queries_not_a_few_per_case(chat_enabled, sent_messages):
    """Each job was cancelled on its own: about 9 queries a case (4,500 and 2.8 s for 500 cases, under the project's
    lock). Now its jobs are cancelled together: as many queries for 200 cases as for 2."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for size in (2, 200):
        reference_set = services.create_reference_set(chat_enabled, plugin_id="chatbot", name=f"set {size}", actor="t",
                                                      cases=[chat_case(f"q{n}", "r") for n in range(size)])
        run = services.start_run(chat_enabled, reference_set, actor="t")
        with CaptureQueriesContext(connection) as queries:
            cancelled = services.cancel_run(EvaluationRun.objects.get(pk=run.pk), actor="t")
        counts.append(len(queries))
        assert cancelled.status == RunStatus.CANCELLED and cancelled.metrics["failed"] == size
        assert {job.status for job in jobs_of(run.pk)} == {JobStatus.CANCELLED}
        assert AuditEvent.objects.get(action="evaluation_run_cancelled", object_id=str(run.pk)).after[
            "jobs_cancelled"] == size
    assert counts[0] == counts[1] <= 30, counts
