"""Erasing jobs' content (``jobs.erasure``): every copy goes, the job rows stay as tombstones that quotas and the
usage report still count, running jobs are refused, queued ones cancelled first, and the retention task erases what
a project's policy no longer keeps."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from atelier_platform.accounts.roles import Role
from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.jobs import erasure, lifecycle
from atelier_platform.jobs.models import Job, JobPurpose, JobStatus, Output, OutputFile, ReviewState
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_platform.moderation.models import AuditEvent, ReviewDecision, ReviewItem, ReviewItemState, SafetyPolicy
from atelier_platform.usage import quotas, reports
from atelier_platform.usage.models import IdempotencyRecord
from atelier_platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.api.helpers import build_job, build_output
from tests.factories import MembershipFactory, UserFactory
from tests.support.databases import needs_postgresql

pytestmark = pytest.mark.django_db(transaction=True)

#: What a person asked to have erased: it must be found nowhere afterwards.
MARKER = "Ada-Lovelace-07700-900123"


def reviewer_client(project) -> APIClient:
    client = APIClient()
    client.force_login(MembershipFactory(project=project, user=UserFactory(), role=Role.REVIEWER).user)
    client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
    return client


def screening_report(field: str) -> dict:
    return {"decision": "review", "flagged": ["personal_data"], "scores": {"personal_data": 0.7},
            "findings": [{"category": "personal_data", "score": 0.7, "check": "personal_data", "field": field,
                          "evidence": [{"start": 0, "end": len(MARKER), "excerpt": MARKER, "detail": "phone"}]}],
            "checked_by": ["personal_data"]}


def a_job_with_every_copy(project, *, django_capture_on_commit_callbacks) -> dict:
    """A job whose content (``MARKER``) lies everywhere a copy can: its input, metadata and screening report, two
    outputs (one with a file and token counts, pending review; one a reviewer edited through the API with an
    Idempotency-Key, quoting the content in a comment), a conversation turn, the audit log; and a failed job of the
    same thread whose webhook delivery quotes its error."""
    WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/atelier", secret="s" * 32)
    conversation = Conversation.objects.create(project=project, plugin_id="reverse_text")
    job = submit_job(project, JobRequest("reverse_text", {"text": f"call {MARKER} back"}, {"uppercase": True},
                                         metadata={"customer": MARKER})).job  # the caller's own key/value pairs
    Job.objects.filter(pk=job.pk).update(input_screening=screening_report("input.text"))
    ConversationMessage.objects.create(conversation=conversation, index=0, role="user", content=f"I am {MARKER}", job=job)
    claim = lifecycle.claim_job(str(job.pk), "worker-1")
    produced = [
        lifecycle.ProducedOutput({"text": f"{MARKER} one", "characters": 3,
                                  "usage": {"prompt_tokens": 5, "completion_tokens": 7}},
                                 files=(("picture.png", "image/png", f"png of {MARKER}".encode(), "primary"),),
                                 safety=screening_report("content.text")),
        lifecycle.ProducedOutput({"text": f"{MARKER} two", "characters": 3}),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.complete_job(str(job.pk), claim.token, produced, {"model": "test"}) == JobStatus.SUCCEEDED
    second = ReviewItem.objects.get(output__job=job, output__index=1)
    reviewer = reviewer_client(project)
    assert reviewer.post(f"/api/v1/reviews/{second.pk}/claim/").status_code == 200
    edit = {"action": "edit", "comment": f"removed the number of {MARKER}", "content": {"text": "edited", "characters": 3}}
    with django_capture_on_commit_callbacks(execute=True):
        decided = reviewer.post(f"/api/v1/reviews/{second.pk}/decision/", edit, format="json", HTTP_IDEMPOTENCY_KEY="d-1")
    assert decided.status_code == 200, decided.content

    failed = submit_job(project, JobRequest("reverse_text", {"text": f"again {MARKER}"}, {})).job
    ConversationMessage.objects.create(conversation=conversation, index=1, role="user", content=f"still {MARKER}",
                                       job=failed)
    failing = lifecycle.claim_job(str(failed.pk), "worker-1")
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.fail_job(str(failed.pk), failing.token, "plugin_error", f"could not read {MARKER}")
    delivery = WebhookDelivery.objects.get(event_type="job.failed")
    echoed = json.dumps(delivery.payload)  # a receiver that answers with what it was sent (an echo service)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(last_status_code=500, last_response_excerpt=echoed)
    WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=timezone.now(), duration_ms=3,
                                  status_code=500, response_excerpt=echoed)
    file_name = OutputFile.objects.get(output__job=job).file.name
    return {"job": job, "failed": failed, "conversation": conversation, "file": file_name}


def rows_holding(text: str) -> list[str]:
    """Every row of every table (through the ORM) that holds ``text`` anywhere, in any case (search columns keep
    texts case-folded), named by model and key."""
    found = []
    for model in apps.get_models():
        for row in model._base_manager.values():
            if text.casefold() in str(row).casefold():
                found.append(f"{model._meta.label} {row.get(model._meta.pk.attname)}")
    return found


def test_erasure_leaves_the_content_in_no_table_and_no_file_and_keeps_the_tombstone(
        project, django_capture_on_commit_callbacks):
    made = a_job_with_every_copy(project, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    job, failed = made["job"], made["failed"]
    holding = rows_holding(MARKER)
    # the copies the erasure must find are all there first
    for label in ("jobs.Job", "jobs.Output", "moderation.ReviewDecision", "moderation.AuditEvent",
                  "conversations.ConversationMessage", "usage.IdempotencyRecord", "webhooks.WebhookDelivery",
                  "webhooks.WebhookAttempt"):
        assert any(row.startswith(label + " ") for row in holding), (label, holding)
    assert default_storage.exists(made["file"])
    audit_before = AuditEvent.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        done = erasure.erase_jobs(project, [job, failed], "user:7")

    assert sorted(done.erased, key=str) == sorted([job.pk, failed.pk], key=str)
    assert (done.outputs, done.files, done.review_decisions, done.review_items_closed, done.messages) == (2, 1, 1, 1, 2)
    assert done.idempotency_records_removed == 1 and done.webhook_deliveries_redacted == 1
    assert rows_holding(MARKER) == []
    assert not default_storage.exists(made["file"])

    tombstone = Job.objects.get(pk=job.pk)
    assert tombstone.erased_at is not None and tombstone.erased_by == "user:7"
    assert (tombstone.input, tombstone.params, tombstone.search_text, tombstone.metadata) == ({}, {}, "", {})
    assert tombstone.status == JobStatus.SUCCEEDED and tombstone.plugin_id == "reverse_text"
    assert tombstone.started_at and tombstone.finished_at and tombstone.seed == job.seed  # the metadata stays
    # the screening report keeps why it flagged and where, not what it read
    assert tombstone.input_screening["flagged"] == ["personal_data"]
    assert tombstone.input_screening["findings"][0]["evidence"] == [{"start": 0, "end": len(MARKER), "detail": "phone"}]
    first, second = Output.objects.filter(job=job).order_by("index")
    assert first.content == {"usage": {"prompt_tokens": 5, "completion_tokens": 7}} and second.content == {}
    assert first.review_state == ReviewState.PENDING and second.review_state == ReviewState.APPROVED
    kept_file = OutputFile.objects.get(output=first)
    assert (kept_file.file.name, kept_file.role, kept_file.media_type) == ("", "primary", "image/png")
    # the reviewer's open item is closed; the decision keeps who, what and why, not the texts
    assert not ReviewItem.objects.filter(state=ReviewItemState.OPEN).exists()
    decision = ReviewDecision.objects.get()
    assert (decision.action, decision.comment, decision.original_content, decision.edited_content) == ("edit", "", None, None)
    assert decision.decided_by.startswith("user:")
    assert list(ConversationMessage.objects.order_by("index").values_list("content", flat=True)) == ["", ""]
    assert Job.objects.get(pk=failed.pk).error_code == "plugin_error"
    assert Job.objects.get(pk=failed.pk).error_message == ""
    delivery = WebhookDelivery.objects.get(event_type="job.failed")
    assert delivery.payload["data"]["job"]["error"] == {"code": "plugin_error", "message": ""}
    # no event went: the review's events are redacted, and each job's erasure recorded, with counts, never content
    assert AuditEvent.objects.count() == audit_before + 2
    review = AuditEvent.objects.get(action="review_edit")
    assert review.before["content"] is None and review.after["content"] is None and review.after["comment"] is None
    assert review.after["review_state"] == ReviewState.APPROVED and review.before["review_state"] == ReviewState.PENDING
    erased = AuditEvent.objects.get(action="job_erased", object_id=str(job.pk))
    assert erased.actor == "user:7"
    assert erased.after == {"outputs": 2, "files": 1, "messages": 1, "cancelled": False}


@pytest.mark.parametrize("erased_by", ["request", "retention"])
def test_no_hash_of_the_request_is_left_to_check_a_guess_against(project, erased_by):
    """The request's fingerprint (what a replay of its Idempotency-Key compares a body with) told a guessed input
    from a wrong one, and its batch key is a hash of its input and params too: neither is left, on the job row nor
    in the lock of a request whose holder died after saving the job; a request still holding the same key on another
    endpoint keeps its lock. The retention erases by the same path."""
    job = submit_job(project, JobRequest("reverse_text", {"text": MARKER}, {"uppercase": True}),
                     idempotency_key="order-7").job
    job.refresh_from_db()
    assert job.request_fingerprint and job.batch_key and job.idempotency_scope == "jobs"
    now = timezone.now()
    locks = {scope: IdempotencyRecord.objects.create(
        project=project, scope=scope, key="order-7", fingerprint=job.request_fingerprint,
        locked_until=now - timedelta(seconds=1), expires_at=now + timedelta(hours=1))
        for scope in ("jobs", "v1/chat/completions")}
    if erased_by == "request":
        erasure.erase_jobs(project, [job], "user:1")
    else:
        SafetyPolicy.objects.update_or_create(project=project, defaults={"content_retention_days": 1})
        Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=now - timedelta(days=2))
        assert erasure.erase_expired_content(now=now).erased == {project.slug: 1}

    assert Job.objects.get(pk=job.pk).erased_at is not None
    assert rows_holding(job.batch_key) == []
    # the other endpoint's lock is another request's (one body there may equal the job's, as this test's does)
    assert rows_holding(job.request_fingerprint) == [f"usage.IdempotencyRecord {locks['v1/chat/completions'].pk}"]


def test_quota_and_usage_report_are_the_same_after_erasure(project):
    today = timezone.now()
    jobs = []
    for run_seconds in (2.0, 3.5):
        job = build_job(project, created_at=today - timedelta(minutes=5), run_seconds=run_seconds)
        build_output(job, content={"text": "x", "usage": {"prompt_tokens": 11, "completion_tokens": 13}}, image=True)
        jobs.append(job)
    build_job(project, status=JobStatus.BLOCKED, created_at=today - timedelta(minutes=4))
    query = reports.UsageQuery(date_from=today.date() - timedelta(days=1), date_to=today.date())

    def measured():
        return (reports.usage_rows(project, query), quotas.jobs_today(project, today),
                quotas.compute_seconds_this_month(project, today, use_cache=False))

    before = measured()
    assert before[0][0]["tokens"]["total"] == 48 and before[0][0]["images"] == 2 and before[1] == 2
    erasure.erase_jobs(project, jobs, "user:1")
    assert measured() == before


def test_another_projects_jobs_and_unknown_ids_are_left_alone(project, other_project):
    theirs = build_job(other_project)
    build_output(theirs, content={"text": MARKER})
    done = erasure.erase_jobs(project, [theirs.pk, "5c0ffee0-0000-4000-8000-000000000000"], "user:1")
    assert done.erased == [] and done.already_erased == []
    assert Job.objects.get(pk=theirs.pk).erased_at is None and Output.objects.get().content == {"text": MARKER}


def test_erasing_twice_does_nothing_the_second_time(project):
    job = build_job(project)
    build_output(job, content={"text": MARKER, "usage": {"prompt_tokens": 2}})
    first = erasure.erase_jobs(project, [job], "user:1")
    erased_at = Job.objects.get(pk=job.pk).erased_at
    second = erasure.erase_jobs(project, [job], "user:2")
    assert first.erased == [job.pk] and second.erased == [] and second.already_erased == [job.pk]
    again = Job.objects.get(pk=job.pk)
    assert again.erased_at == erased_at and again.erased_by == "user:1"  # the first erasure's record stands
    assert AuditEvent.objects.filter(action="job_erased").count() == 1
    assert Output.objects.get().content == {"usage": {"prompt_tokens": 2}}


def a_job_with_its_copies(project, n: int) -> Job:
    job = build_job(project, input={"text": f"{MARKER} {n}"})
    output = build_output(job, content={"text": MARKER}, image=True)
    item = ReviewItem.objects.create(output=output, project=project, state=ReviewItemState.DECIDED)
    ReviewDecision.objects.create(item=item, action="approve", comment=MARKER, decided_by="user:1")
    conversation = Conversation.objects.create(project=project, plugin_id="reverse_text")
    ConversationMessage.objects.create(conversation=conversation, index=0, role="user", content=MARKER, job=job)
    AuditEvent.objects.create(project=project, actor="user:1", action="review_approve", object_type="output",
                              object_id=str(output.pk), before={"content": MARKER}, after={"content": MARKER})
    return job


def test_as_many_queries_for_fifty_jobs_as_for_two(project):
    counts = []
    for size in (2, 50):
        jobs = [a_job_with_its_copies(project, n) for n in range(size)]
        with CaptureQueriesContext(connection) as queries:
            done = erasure.erase_jobs(project, jobs, "user:1")
        counts.append(len(queries))
        assert done.jobs == size and done.files == 2 * size and done.audit_events_redacted == size
    assert rows_holding(MARKER) == []
    # about 20 for the erasure (the project's exports in the background among them, which it may take back), 3 after
    # it for the job.erased announcement
    assert counts[0] == counts[1] <= 23, counts


def test_a_running_job_is_refused_and_its_result_is_erased_once_stored(project, django_capture_on_commit_callbacks):
    job = submit_job(project, JobRequest("reverse_text", {"text": MARKER}, {})).job
    claim = lifecycle.claim_job(str(job.pk), "worker-1")
    with pytest.raises(erasure.JobStillRunning) as refused:
        erasure.erase_jobs(project, [job], "user:1")
    assert refused.value.status_code == 409 and str(job.pk) in refused.value.message
    assert "cancel it" in refused.value.message and refused.value.details == {"running_jobs": [str(job.pk)]}
    assert Job.objects.get(pk=job.pk).erased_at is None and Job.objects.get(pk=job.pk).input["text"] == MARKER
    assert not AuditEvent.objects.filter(action="job_erased").exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.complete_job(str(job.pk), claim.token, [lifecycle.ProducedOutput({"text": MARKER})], {}) == "succeeded"
    assert erasure.erase_jobs(project, [job], "user:1").erased == [job.pk]
    assert Output.objects.get().content == {} and rows_holding(MARKER) == []


def test_a_queued_job_is_cancelled_and_erased_and_no_worker_runs_it_after(project):
    job = submit_job(project, JobRequest("reverse_text", {"text": MARKER}, {})).job
    done = erasure.erase_jobs(project, [job], "user:1")
    assert done.cancelled == [job.pk] and done.erased == [job.pk]
    erased = Job.objects.get(pk=job.pk)
    assert erased.status == JobStatus.CANCELLED and erased.input == {}
    assert lifecycle.claim_job(str(job.pk), "worker-1") is None  # its message, still on the broker, finds nothing
    assert AuditEvent.objects.get(action="job_erased").after["cancelled"] is True


def test_a_worker_storing_outputs_meanwhile_commits_first_and_its_outputs_are_erased_too(project):
    """The worker has stored the job's outputs, not yet committed, when the erasure comes: the erasure waits for the
    row, then finds the job succeeded and erases what the worker stored."""
    job = submit_job(project, JobRequest("reverse_text", {"text": MARKER}, {})).job
    claim = lifecycle.claim_job(str(job.pk), "worker-1")
    stored, commit, outcome = threading.Event(), threading.Event(), {}

    def store_then_wait_to_commit():
        with transaction.atomic():
            done = lifecycle.complete_job(str(job.pk), claim.token, [lifecycle.ProducedOutput({"text": MARKER})], {})
            stored.set()
            commit.wait(10)
        return done

    working = on_a_thread(outcome, "worker", store_then_wait_to_commit)
    assert stored.wait(10)
    erasing = on_a_thread(outcome, "erasure", lambda: erasure.erase_jobs(project, [job.pk], "user:1"))
    time.sleep(0.5)
    assert "erasure" not in outcome  # waiting for the worker's row
    commit.set()
    working.join(10), erasing.join(10)
    assert outcome["worker"] == JobStatus.SUCCEEDED and outcome["erasure"].erased == [job.pk]
    assert Output.objects.get().content == {} and rows_holding(MARKER) == []


def on_a_thread(outcome: dict, name: str, call, *, catch: bool = False) -> threading.Thread:
    """``call()`` started on a thread of its own, with a database connection of its own (closed at the end), its result
    (or, with ``catch``, its exception) in ``outcome[name]``."""
    def run():
        try:
            outcome[name] = call()
        except Exception as error:  # noqa: BLE001 - a deadlock may fail either side: the test says which may
            if not catch:
                raise
            outcome[name] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def erasure_held_after_its_checks(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """An erasure stops once it holds its job rows' locks (its checks passed) and sets the first event, until the
    second is set."""
    locked, release = threading.Event(), threading.Event()
    refuse = erasure._refuse_what_cannot_go

    def holding(jobs):
        refuse(jobs)
        locked.set()
        release.wait(10)

    monkeypatch.setattr(erasure, "_refuse_what_cannot_go", holding)
    return locked, release


def test_a_worker_claiming_while_the_erasure_holds_the_job_finds_nothing_to_run(project, monkeypatch):
    job = submit_job(project, JobRequest("reverse_text", {"text": MARKER}, {})).job
    locked, release = erasure_held_after_its_checks(monkeypatch)
    outcome = {}
    erasing = on_a_thread(outcome, "erasure", lambda: erasure.erase_jobs(project, [job.pk], "user:1"))
    assert locked.wait(10)
    claiming = on_a_thread(outcome, "claim", lambda: lifecycle.claim_job(str(job.pk), "worker-1"))
    time.sleep(0.5)
    assert "claim" not in outcome  # waiting for the erasure's lock
    release.set()
    erasing.join(10), claiming.join(10)
    assert outcome["claim"] is None and outcome["erasure"].cancelled == [job.pk]
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def until_another_session_waits_on_a_lock() -> None:
    """Poll (from this thread's own connection) until some other session of the database waits on a lock."""
    with connection.cursor() as cursor:
        for _ in range(600):
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # else read once per transaction
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0]:
                return
            cursor.execute("SELECT pg_sleep(0.05)")


@needs_postgresql
def test_a_reviewer_deciding_while_the_erasure_runs_is_told_it_was_decided_not_deadlocked(project, monkeypatch):
    """A decision locked the review item and its output, then waited for the job's row, which the erasure held while
    it waited to write that output and item: a deadlock, which failed the decision with a 500 (or the erasure). The
    decision now waits for the job first, then finds the item the erasure closed: 409 already decided."""
    from atelier_platform.moderation import review

    job = build_job(project, input={"text": MARKER})
    output = build_output(job, content={"text": f"{MARKER} reply"}, review_state=ReviewState.PENDING)
    item = ReviewItem.objects.create(output=output, project=project)
    reviewer = review.Reviewer(actor="user:7")
    review.claim(item, reviewer)
    locked, release = erasure_held_after_its_checks(monkeypatch)
    outcome = {}
    erasing = on_a_thread(outcome, "erasure", lambda: erasure.erase_jobs(project, [job.pk], "user:1"), catch=True)
    assert locked.wait(10)
    deciding = on_a_thread(outcome, "decision", lambda: review.decide(item, reviewer, action="regenerate",
                                                                      comment=f"redo {MARKER}"), catch=True)
    until_another_session_waits_on_a_lock()  # the decision, on a row the erasure holds
    release.set()
    erasing.join(20), deciding.join(20)
    assert isinstance(outcome["erasure"], erasure.Erasure) and outcome["erasure"].erased == [job.pk]
    assert isinstance(outcome["decision"], review.AlreadyDecided), outcome["decision"]
    assert not Job.objects.filter(regenerated_from=output).exists() and rows_holding(MARKER) == []


def test_a_job_and_its_regenerations_go_together(project):
    first = build_job(project, input={"text": MARKER})
    rejected = build_output(first, content={"text": MARKER}, review_state=ReviewState.REJECTED)
    second = build_job(project, input={"text": MARKER}, regenerated_from=rejected, review_note=f"no {MARKER}")
    third = build_job(project, input={"text": MARKER},
                      regenerated_from=build_output(second, content={"text": MARKER}, review_state=ReviewState.REJECTED))
    done = erasure.erase_jobs(project, [second], "user:1")  # the middle one: both directions
    assert sorted(done.erased, key=str) == sorted([first.pk, second.pk, third.pk], key=str)
    assert rows_holding(MARKER) == []
    # the retention erases each job at its own age
    fourth = build_job(project, input={"text": MARKER}, regenerated_from=Output.objects.get(job=first))
    assert erasure.erase_jobs(project, [first], "user:1", with_regenerations=False).erased == []
    assert Job.objects.get(pk=fourth.pk).erased_at is None


def test_a_case_of_an_evaluation_run_is_refused_naming_the_run(project):
    from atelier_platform.evaluation.models import EvaluationCase, EvaluationRun, ReferenceSet

    reference_set = ReferenceSet.objects.create(project=project, plugin_id="reverse_text", name="s", cases=[])
    run = EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id="reverse_text")
    job = build_job(project, purpose=JobPurpose.EVALUATION)
    EvaluationCase.objects.create(run=run, index=0, job=job)
    with pytest.raises(erasure.EvaluationJobKept) as refused:
        erasure.erase_jobs(project, [job], "user:1")
    assert str(run.pk) in refused.value.message and refused.value.details["evaluation_runs"] == [str(run.pk)]
    assert Job.objects.get(pk=job.pk).erased_at is None
    reference_set.delete()  # the run goes with its set; the job stays in the history, and may be erased now
    assert erasure.erase_jobs(project, [job], "user:1").erased == [job.pk]


def test_erasing_a_conversation_erases_its_jobs_and_the_thread_goes(project):
    conversation = Conversation.objects.create(project=project, plugin_id="reverse_text")
    jobs = [build_job(project, input={"messages": [{"role": "user", "content": MARKER}],
                                      "conversation_id": str(conversation.pk)}) for _ in range(2)]
    for index, job in enumerate(jobs):
        ConversationMessage.objects.create(conversation=conversation, index=index, role="user", content=MARKER, job=job)
    kept = build_job(project, input={"text": "another thread"})
    done = erasure.erase_conversation(project, conversation.pk, "key:abc")
    assert done.messages == 2 and sorted(done.jobs.erased, key=str) == sorted((j.pk for j in jobs), key=str)
    assert not Conversation.objects.exists() and not ConversationMessage.objects.exists()
    assert rows_holding(MARKER) == []
    assert Job.objects.get(pk=kept.pk).erased_at is None
    event = AuditEvent.objects.get(action="conversation_erased")
    assert (event.actor, event.object_id, event.after) == ("key:abc", str(conversation.pk), {"messages": 2, "jobs": 2})
    assert erasure.erase_conversation(project, conversation.pk, "key:abc") is None  # gone: nothing to do


def test_a_conversation_with_a_running_job_is_refused_whole(project):
    conversation = Conversation.objects.create(project=project, plugin_id="reverse_text")
    done_job = build_job(project)
    running = build_job(project, status=JobStatus.RUNNING)
    for index, job in enumerate((done_job, running)):
        ConversationMessage.objects.create(conversation=conversation, index=index, role="user", content=MARKER, job=job)
    with pytest.raises(erasure.JobStillRunning):
        erasure.erase_conversation(project, conversation.pk, "user:1")
    assert ConversationMessage.objects.filter(content=MARKER).count() == 2
    assert Job.objects.get(pk=done_job.pk).erased_at is None


# --- retention --------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_follow_up_queued():
    """The mark of a queued follow-up run lives in the shared cache, which outlives a test."""
    from django.core.cache import cache

    cache.delete(erasure.RETENTION_FOLLOW_UP_KEY)
    yield
    cache.delete(erasure.RETENTION_FOLLOW_UP_KEY)


def test_the_retention_erases_old_finished_jobs_only(project, other_project, caplog):
    from atelier_platform.evaluation.models import EvaluationCase, EvaluationRun, ReferenceSet

    SafetyPolicy.objects.update_or_create(project=project, defaults={"content_retention_days": 30})
    now = timezone.now()
    old = now - timedelta(days=31)

    def finished(days_ago: float, **fields) -> Job:
        job = build_job(project, input={"text": MARKER}, **fields)
        Job.objects.filter(pk=job.pk).update(finished_at=now - timedelta(days=days_ago), created_at=old)
        return job

    expired = finished(31)
    recent = finished(29)
    pending_review = finished(40)
    ReviewItem.objects.create(output=build_output(pending_review), project=project)  # a reviewer's open work
    reviewed = finished(40)
    ReviewItem.objects.create(output=build_output(reviewed), project=project, state=ReviewItemState.DECIDED)
    evaluation = finished(40, purpose=JobPurpose.EVALUATION)
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="reverse_text", name="s", cases=[])
    run = EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id="reverse_text")
    EvaluationCase.objects.create(run=run, index=0, job=evaluation)
    running = build_job(project, input={"text": MARKER}, status=JobStatus.RUNNING)
    Job.objects.filter(pk=running.pk).update(created_at=now - timedelta(days=90))
    theirs = build_job(other_project, input={"text": MARKER})  # no retention set: kept for good
    Job.objects.filter(pk=theirs.pk).update(finished_at=now - timedelta(days=900))

    with caplog.at_level("INFO", logger="atelier.jobs"):
        assert erasure.erase_expired_content(now=now).erased == {project.slug: 2}
    assert f"retention: erased the content of 2 jobs of project {project.slug} (finished more than 30 days ago)" in \
        caplog.messages
    erased = set(Job.objects.filter(erased_at__isnull=False).values_list("pk", flat=True))
    assert erased == {expired.pk, reviewed.pk}
    assert Job.objects.get(pk=expired.pk).erased_by == "retention"
    assert AuditEvent.objects.get(action="job_erased", object_id=str(expired.pk)).after["retention_days"] == 30

    assert erasure.erase_expired_content(now=now).erased == {}  # idempotent: nothing more until the clock moves
    later = now + timedelta(days=2)
    ReviewItem.objects.filter(output__job=pending_review).update(state=ReviewItemState.DECIDED)
    assert erasure.erase_expired_content(now=later).erased == {project.slug: 2}  # the one reviewed since, and the 29-day one
    assert set(Job.objects.filter(erased_at__isnull=False).values_list("pk", flat=True)) == erased | {
        pending_review.pk, recent.pk}
    assert Job.objects.get(pk=evaluation.pk).erased_at is None and Job.objects.get(pk=running.pk).erased_at is None
    assert Job.objects.get(pk=theirs.pk).erased_at is None


def expired_jobs_of(project, count: int) -> list[Job]:
    """``count`` jobs of ``project`` that finished three days ago (past a retention of one day), with ``MARKER`` in
    their input and their output."""
    jobs = []
    for _ in range(count):
        job = build_job(project, input={"text": MARKER})
        build_output(job, content={"text": MARKER}, review_state=ReviewState.APPROVED)
        jobs.append(job)
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(finished_at=timezone.now() - timedelta(days=3))
    return jobs


def keep_for_a_day(*projects) -> None:
    for project in projects:
        SafetyPolicy.objects.update_or_create(project=project, defaults={"content_retention_days": 1})


@pytest.fixture
def batches(monkeypatch) -> list[tuple[str, int]]:
    """The retention's erasures, in order, as (project slug, jobs); each "takes" 6 s of the run's clock (the
    clock moves only then), so a budget of 10 s lets a run start two batches."""
    clock = {"now": 0.0}
    monkeypatch.setattr(erasure, "monotonic", lambda: clock["now"])
    erase, seen = erasure.erase_jobs, []

    def each_batch(project, jobs, actor, **options):
        seen.append((project.slug, len(jobs)))
        clock["now"] += 6
        return erase(project, jobs, actor, **options)

    monkeypatch.setattr(erasure, "erase_jobs", each_batch)
    return seen


@pytest.fixture
def follow_ups(monkeypatch) -> list[dict]:
    """The follow-up runs the retention task queued (``apply_async``'s arguments), instead of the broker."""
    from atelier_platform.jobs import tasks

    queued = []
    monkeypatch.setattr(tasks.erase_expired_content, "apply_async", lambda **options: queued.append(options))
    return queued


def erased_or_untouched(jobs: list[Job]) -> tuple[int, int]:
    """How many of ``jobs`` are erased and how many untouched; each is one or the other, never half of both."""
    erased = untouched = 0
    for job in Job.objects.filter(pk__in=[job.pk for job in jobs]):
        outputs = list(Output.objects.filter(job=job).values_list("content", flat=True))
        if job.erased_at is not None:
            assert (job.input, outputs) == ({}, [{}]), job.pk
            erased += 1
        else:
            assert (job.input, outputs) == ({"text": MARKER}, [{"text": MARKER}]), job.pk
            untouched += 1
    return erased, untouched


def test_the_retention_erases_a_batch_per_transaction_and_none_around_the_run(project, monkeypatch):
    keep_for_a_day(project)
    expired_jobs_of(project, 7)
    seen = []
    erase = erasure.erase_jobs

    def each_batch(project, jobs, actor, **options):
        seen.append((len(jobs), len(connection.atomic_blocks)))
        return erase(project, jobs, actor, **options)

    monkeypatch.setattr(erasure, "erase_jobs", each_batch)
    monkeypatch.setattr(erasure, "RETENTION_BATCH", 3)
    run = erasure.erase_expired_content()
    assert (run.erased, run.left, run.resume_at) == ({project.slug: 7}, [], None)
    assert seen == [(3, 1), (3, 1), (1, 1)]  # the batch's own transaction (it lists and locks them), none around it


def test_as_many_queries_for_a_retention_batch_of_ten_as_of_two(project):
    keep_for_a_day(project)
    counts = []
    for size in (2, 10):
        jobs = [a_job_with_its_copies(project, n) for n in range(size)]
        Job.objects.filter(pk__in=[job.pk for job in jobs]).update(finished_at=timezone.now() - timedelta(days=3))
        with CaptureQueriesContext(connection) as queries:
            assert erasure.erase_expired_content(batch=size).erased == {project.slug: size}
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_a_backlog_larger_than_a_run_is_erased_by_runs_that_follow_on_their_own(
        project, monkeypatch, atelier_config, batches, follow_ups, caplog):
    from atelier_platform.jobs import tasks

    keep_for_a_day(project)
    jobs = expired_jobs_of(project, 11)
    monkeypatch.setattr(erasure, "RETENTION_BATCH", 2)
    atelier_config(retention_run_budget_s=10)  # two batches a run: 4 jobs

    with caplog.at_level("INFO", logger="atelier.jobs"):
        assert tasks.erase_expired_content.apply().get() == {project.slug: 4}
    assert erased_or_untouched(jobs) == (4, 7)
    assert len(follow_ups) == 1
    assert follow_ups[0]["countdown"] == 10  # as long a pause as the run had: half of a platform worker at most
    assert follow_ups[0]["kwargs"] == {"follow_up": True, "resume_at": project.pk}
    assert (f"retention: erased the content of 4 jobs of project {project.slug} (finished more than 1 days ago); "
            f"more are left") in caplog.messages
    assert any(message.startswith("retention: the run's 10 s are up with expired jobs left in 1 project") and
               "the next run follows in 10 s" in message for message in caplog.messages)

    runs = 1
    while len(follow_ups) == runs:  # the broker delivers each follow-up in turn
        tasks.erase_expired_content.apply(kwargs=follow_ups[-1]["kwargs"]).get()
        runs += 1
    assert runs == 3 and batches == [(project.slug, 2)] * 5 + [(project.slug, 1)]
    assert erased_or_untouched(jobs) == (11, 0)
    events = list(AuditEvent.objects.filter(action="job_erased").values_list("object_id", flat=True))
    assert sorted(events) == sorted(str(job.pk) for job in jobs)  # each erased once
    assert tasks.erase_expired_content.apply().get() == {} and len(follow_ups) == 2  # nothing left: nothing queued


def test_the_retention_takes_a_batch_of_each_project_in_turn(project, other_project, atelier_config, batches):
    """A project's backlog waits behind no other's: the small project is done in the first round, even when the
    run's time is up after it."""
    big, small = sorted((project, other_project), key=lambda each: each.pk)  # the projects are taken in this order
    keep_for_a_day(big, small)
    big_jobs, small_jobs = expired_jobs_of(big, 7), expired_jobs_of(small, 2)
    atelier_config(retention_run_budget_s=10)

    run = erasure.erase_expired_content(batch=3)
    assert batches == [(big.slug, 3), (small.slug, 2)]
    assert (run.erased, run.left, run.resume_at) == ({big.slug: 3, small.slug: 2}, [big.slug], big.pk)
    assert erased_or_untouched(small_jobs) == (2, 0) and erased_or_untouched(big_jobs) == (3, 4)

    atelier_config(retention_run_budget_s=600)
    assert erasure.erase_expired_content(batch=3).erased == {big.slug: 4}
    assert batches[2:] == [(big.slug, 3), (big.slug, 1)]


def test_a_follow_up_run_starts_with_the_projects_the_last_run_had_no_time_for(project, other_project, atelier_config,
                                                                                batches):
    from tests.factories import ProjectFactory

    first, second, third = sorted((project, other_project, ProjectFactory()), key=lambda each: each.pk)
    keep_for_a_day(first, second, third)
    for each in (first, second, third):
        expired_jobs_of(each, 5)
    atelier_config(retention_run_budget_s=10)

    run = erasure.erase_expired_content(batch=2)
    assert batches == [(first.slug, 2), (second.slug, 2)]
    assert (run.left, run.resume_at) == ([third.slug, first.slug, second.slug], third.pk)
    run = erasure.erase_expired_content(batch=2, resume_at=run.resume_at)
    assert batches[2:] == [(third.slug, 2), (first.slug, 2)]
    assert (run.left, run.resume_at) == ([second.slug, third.slug, first.slug], second.pk)


def test_the_time_is_up_between_batches_never_within_one(project, monkeypatch, atelier_config, follow_ups):
    from atelier_platform.jobs import tasks

    keep_for_a_day(project)
    jobs = expired_jobs_of(project, 5)
    clock = {"now": 0.0}
    monkeypatch.setattr(erasure, "monotonic", lambda: clock["now"])
    erase = erasure.erase_jobs

    def slow_batch(project, ids, actor, **options):
        clock["now"] += 3600  # the run's time is up while this batch is being erased
        return erase(project, ids, actor, **options)

    monkeypatch.setattr(erasure, "erase_jobs", slow_batch)
    monkeypatch.setattr(erasure, "RETENTION_BATCH", 3)
    atelier_config(retention_run_budget_s=1)
    assert tasks.erase_expired_content.apply().get() == {project.slug: 3}  # the batch it started, whole
    assert erased_or_untouched(jobs) == (3, 2)
    assert [queued["kwargs"] for queued in follow_ups] == [{"follow_up": True, "resume_at": project.pk}]


def test_a_run_while_a_follow_up_is_queued_queues_no_second_one(project, monkeypatch, atelier_config, batches,
                                                                follow_ups, caplog):
    """Else each hourly run, while the backlog lasts, would start a chain of its own, and the chains would take
    every worker of the platform queue."""
    from atelier_platform.jobs import tasks

    keep_for_a_day(project)
    expired_jobs_of(project, 9)
    atelier_config(retention_run_budget_s=1)  # a batch a run
    monkeypatch.setattr(erasure, "RETENTION_BATCH", 2)
    tasks.erase_expired_content.apply().get()
    with caplog.at_level("INFO", logger="atelier.jobs"):
        tasks.erase_expired_content.apply().get()  # the hourly run, while the follow-up waits for its countdown
    assert len(follow_ups) == 1
    assert any("the follow-up run already queued goes on" in message for message in caplog.messages)
    tasks.erase_expired_content.apply(kwargs=follow_ups[0]["kwargs"]).get()  # the follow-up queues the next
    assert len(follow_ups) == 2 and len(batches) == 3


def test_a_follow_up_that_cannot_be_queued_is_logged_and_the_next_hourly_run_goes_on(
        project, monkeypatch, atelier_config, batches, caplog):
    from atelier_platform.jobs import tasks

    keep_for_a_day(project)
    expired_jobs_of(project, 3)
    atelier_config(retention_run_budget_s=1)
    monkeypatch.setattr(erasure, "RETENTION_BATCH", 2)

    def broker_down(**options):
        raise ConnectionError("the broker does not answer")

    monkeypatch.setattr(tasks.erase_expired_content, "apply_async", broker_down)
    with caplog.at_level("INFO", logger="atelier.jobs"):
        assert tasks.erase_expired_content.apply().get() == {project.slug: 2}
    assert any("the follow-up run could not be queued: the next hourly run goes on" in message
               for message in caplog.messages)
    queued = []
    monkeypatch.setattr(tasks.erase_expired_content, "apply_async", lambda **options: queued.append(options))
    assert tasks.erase_expired_content.apply().get() == {project.slug: 1}  # the next hourly run
    assert queued == []  # nothing left; and no follow-up was marked queued by the failed one


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has one writer at a time: two runs take turns")
def test_two_retention_runs_at_once_erase_different_jobs_each_once_and_neither_waits(project, monkeypatch):
    """A follow-up and an hourly run may overlap: each skips the jobs the other holds, instead of waiting for them
    and finding them erased."""
    keep_for_a_day(project)
    jobs = expired_jobs_of(project, 4)
    locked, release, outcome = threading.Event(), threading.Event(), {}
    refuse, calls = erasure._refuse_what_cannot_go, []

    def first_batch_held(held):
        refuse(held)
        calls.append(len(held))
        if len(calls) == 1:  # the first run's first batch: it holds its jobs until released
            locked.set()
            outcome["released"] = release.wait(10)  # False: it waited out the 10 s (the other run waited for it)

    monkeypatch.setattr(erasure, "_refuse_what_cannot_go", first_batch_held)
    first = on_a_thread(outcome, "first", lambda: erasure.erase_expired_content(batch=2))
    assert locked.wait(10)
    second = erasure.erase_expired_content(batch=2)  # meanwhile, on this thread
    release.set()
    first.join(20)
    assert outcome["released"] is True, "the second run waited for the first one's jobs"
    assert second.erased == {project.slug: 2} and outcome["first"].erased == {project.slug: 2}
    assert erased_or_untouched(jobs) == (4, 0)
    events = list(AuditEvent.objects.filter(action="job_erased").values_list("object_id", flat=True))
    assert sorted(events) == sorted(str(job.pk) for job in jobs)


def test_the_beat_schedule_runs_the_retention_task_hourly_on_the_platform_queue():
    from atelier_platform.celery_app import ERASE_EXPIRED_CONTENT_TASK, QUEUE_PLATFORM, app
    from atelier_platform.jobs import tasks

    entry = app.conf.beat_schedule["erase-expired-content"]
    assert entry["task"] == ERASE_EXPIRED_CONTENT_TASK == tasks.erase_expired_content.name
    assert entry["schedule"] == 3600 and entry["options"]["queue"] == QUEUE_PLATFORM
    assert app.conf.task_routes[ERASE_EXPIRED_CONTENT_TASK] == {"queue": QUEUE_PLATFORM}


def test_the_task_applies_the_policies(project):
    from atelier_platform.jobs import tasks

    SafetyPolicy.objects.update_or_create(project=project, defaults={"content_retention_days": 1})
    job = build_job(project)
    Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=2))
    assert tasks.erase_expired_content.apply().get() == {project.slug: 1}
    assert Job.objects.get(pk=job.pk).erased_at is not None


def test_a_run_leaving_many_projects_names_twenty_in_its_log_line_and_counts_the_rest(caplog):
    from django.core.cache import cache

    cache.delete(erasure.RETENTION_FOLLOW_UP_KEY)
    queued = []
    run = erasure.RetentionRun(left=[f"shop-{n}" for n in range(25)], resume_at=1, budget_s=60)
    with caplog.at_level("INFO", logger="atelier.jobs"):
        assert erasure.continue_later(run, lambda **options: queued.append(options), after_s=60, within_s=3660)
    cache.delete(erasure.RETENTION_FOLLOW_UP_KEY)
    (line,) = [message for message in caplog.messages if message.startswith("retention: the run's")]
    assert "in 25 projects (shop-0, shop-1, " in line and "shop-19 and 5 more)" in line and "shop-20" not in line
    assert queued == [{"kwargs": {"follow_up": True, "resume_at": 1}, "countdown": 60, "expires": 3660}]


def test_events_with_nothing_before_are_redacted_too(project):
    """An event that records only what came after (a submission: its input) had every ``before`` of the statement
    NULL: PostgreSQL took the CASE of NULLs for text and refused to write it to a jsonb column, and the erasure
    failed (a 500 for DELETE /jobs/{id}/, a retention run stuck on the batch)."""
    job = build_job(project, input={"text": MARKER})
    AuditEvent.objects.create(project=project, actor="user:1", action="job_submitted", object_type="job",
                              object_id=str(job.pk), before=None, after={"input": {"text": MARKER}, "plugin": "x"})
    assert erasure.erase_jobs(project, [job], "user:1").audit_events_redacted == 1
    event = AuditEvent.objects.get(action="job_submitted")
    assert (event.before, event.after) == (None, {"input": None, "plugin": "x"})
    assert rows_holding(MARKER) == []
