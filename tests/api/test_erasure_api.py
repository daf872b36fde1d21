"""Erasure through the API: ``DELETE /api/v1/jobs/{id}/``, ``GET`` and ``DELETE /api/v1/conversations/``, and the
policy's ``content_retention_days``; what an erased job reads back as on every read of it."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.jobs.models import Job, JobStatus, ReviewState
from atelier_platform.moderation.models import AuditEvent
from atelier_platform.openai_compat import services as openai_services
from atelier_platform.openai_compat.errors import OpenAIError
from tests.api.helpers import assert_envelope, build_job, build_output
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "call Jane Roe on 07700 900123"


@pytest.fixture
def eraser(project, make_key, client_for) -> APIClient:
    """An app's key that may read jobs and erase content, and nothing else."""
    return client_for(make_key(project, ["jobs:read", "content:erase"]).raw)


def a_finished_job(project):
    job = build_job(project, input={"text": SECRET}, run_seconds=2, metadata={"customer": SECRET})
    output = build_output(job, content={"text": SECRET, "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
                          review_state=ReviewState.APPROVED, image=True)
    return job, output


def test_delete_erases_the_job_and_it_reads_back_as_an_erased_tombstone(project, eraser, api):
    job, output = a_finished_job(project)
    before = api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert before["erased_at"] is None and before["erased_by"] is None and before["outputs"][0]["content"]["text"] == SECRET
    assert before["metadata"] == {"customer": SECRET}
    file_url = before["outputs"][0]["files"][0]["url"]
    assert api.get(file_url).status_code == 200

    response = eraser.delete(f"/api/v1/jobs/{job.pk}/")
    assert response.status_code == 204, response.content
    assert response.content == b""

    shown = api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert shown["erased_at"] and shown["erased_by"].startswith("key:")
    assert (shown["input"], shown["params"], shown["metadata"]) == ({}, {}, {})
    assert shown["status"] == "succeeded" and shown["plugin"] == "reverse_text" and shown["finished_at"]
    assert shown["outputs"][0]["content"] is None and shown["outputs"][0]["files"] == []
    assert shown["outputs"][0]["review_state"] == "approved"
    assert SECRET not in str(shown)
    # every read of it holds: the list, the outputs, the file (gone, said so)
    listed = api.get("/api/v1/jobs/").json()["results"]
    assert [j["erased_at"] is not None for j in listed] == [True] and SECRET not in str(listed)
    assert api.get(f"/api/v1/outputs/{output.pk}/").json()["content"] is None
    assert SECRET not in str(api.get("/api/v1/outputs/").json())
    gone = assert_envelope(api.get(file_url), 404, "not_found")
    assert "erased" in gone["message"]

    again = eraser.delete(f"/api/v1/jobs/{job.pk}/")  # erasing twice is fine
    assert again.status_code == 204
    assert AuditEvent.objects.filter(action="job_erased").count() == 1


def test_the_usage_report_and_quota_read_the_same_after_erasure(project, eraser, api):
    a_finished_job(project)
    job, _ = a_finished_job(project)
    usage, quota = api.get("/api/v1/usage/").json(), api.get("/api/v1/usage/quota/").json()
    assert eraser.delete(f"/api/v1/jobs/{job.pk}/").status_code == 204
    assert api.get("/api/v1/usage/").json() == usage
    after = api.get("/api/v1/usage/quota/").json()
    assert after["jobs_per_day"]["used"] == quota["jobs_per_day"]["used"]
    assert after["compute_seconds_per_month"]["used"] == quota["compute_seconds_per_month"]["used"]


def test_another_projects_job_and_an_unknown_id_are_404_and_stay(project, other_project, eraser):
    theirs, _ = a_finished_job(other_project)
    assert_envelope(eraser.delete(f"/api/v1/jobs/{theirs.pk}/"), 404, "not_found")
    assert_envelope(eraser.delete("/api/v1/jobs/5c0ffee0-0000-4000-8000-000000000000/"), 404, "not_found")
    assert Job.objects.get(pk=theirs.pk).erased_at is None


def test_a_running_job_is_a_409_telling_to_cancel_first_and_a_queued_one_is_cancelled_and_erased(project, eraser):
    running = build_job(project, status=JobStatus.RUNNING, input={"text": SECRET})
    refused = assert_envelope(eraser.delete(f"/api/v1/jobs/{running.pk}/"), 409, "job_running")
    assert f"/api/v1/jobs/{running.pk}/cancel/" in refused["message"] and "Nothing was erased" in refused["message"]
    assert refused["details"] == {"running_jobs": [str(running.pk)]}
    assert Job.objects.get(pk=running.pk).input == {"text": SECRET}

    queued = build_job(project, status=JobStatus.QUEUED, input={"text": SECRET})
    assert eraser.delete(f"/api/v1/jobs/{queued.pk}/").status_code == 204
    erased = Job.objects.get(pk=queued.pk)
    assert erased.status == JobStatus.CANCELLED and erased.erased_at is not None and erased.input == {}


def test_only_owners_and_keys_with_content_erase_may_erase(project, make_key, client_for):
    job, _ = a_finished_job(project)
    default_key = client_for(make_key(project).raw)  # jobs:read jobs:write, what a new key gets
    assert_envelope(default_key.delete(f"/api/v1/jobs/{job.pk}/"), 403, "permission_denied")
    admin_key = client_for(make_key(project, ["admin", "jobs:read", "jobs:write"]).raw)
    assert_envelope(admin_key.delete(f"/api/v1/jobs/{job.pk}/"), 403, "permission_denied")
    for role in ("editor", "reviewer", "viewer"):
        member = APIClient()
        member.force_login(MembershipFactory(project=project, user=UserFactory(), role=role).user)
        member.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
        assert_envelope(member.delete(f"/api/v1/jobs/{job.pk}/"), 403, "permission_denied")
    assert Job.objects.get(pk=job.pk).erased_at is None
    owner = APIClient()
    owner_user = MembershipFactory(project=project, user=UserFactory(), role="owner").user
    owner.force_login(owner_user)
    owner.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
    assert owner.delete(f"/api/v1/jobs/{job.pk}/").status_code == 204
    assert Job.objects.get(pk=job.pk).erased_by == f"user:{owner_user.pk}"


def test_an_evaluation_case_is_a_409_naming_its_run(project, eraser):
    from atelier_platform.evaluation.models import EvaluationCase, EvaluationRun, ReferenceSet

    reference_set = ReferenceSet.objects.create(project=project, plugin_id="reverse_text", name="s", cases=[])
    run = EvaluationRun.objects.create(project=project, reference_set=reference_set, plugin_id="reverse_text")
    job = build_job(project, purpose="evaluation")
    EvaluationCase.objects.create(run=run, index=0, job=job)
    refused = assert_envelope(eraser.delete(f"/api/v1/jobs/{job.pk}/"), 409, "evaluation_job")
    assert str(run.pk) in refused["message"] and refused["details"]["evaluation_runs"] == [str(run.pk)]


# --- Idempotency-Key replays of an erased job -----------------------------------------------------------------------
# Kept, the hash of the erased request told a replay's body from the erased one: the right guess replayed the
# tombstone, a wrong one answered 422, so the key's holder could test guesses at the content. Erased, every body
# gets the same answer, and no hash of the request is left to compare one with.

JOBS = "/api/v1/jobs/"


def test_a_replay_of_an_erased_jobs_key_answers_its_tombstone_whatever_the_body(project, eraser, api):
    sent = {"plugin": "reverse_text", "input": {"text": SECRET}, "params": {"uppercase": True}}
    guesses = [{**sent, "input": {"text": "call Jane Roe on 07700 900124"}}, {**sent, "params": {}},
               {"plugin": "reverse_text", "input": {"text": "anything"}, "priority": 9}]
    created = api.post(JOBS, sent, format="json", HTTP_IDEMPOTENCY_KEY="order-7")
    assert created.status_code == 201, created.content
    job_id = created.json()["id"]
    # while the content is there, the key tells bodies apart, as any key does
    assert_envelope(api.post(JOBS, guesses[0], format="json", HTTP_IDEMPOTENCY_KEY="order-7"), 422,
                    "idempotency_key_reused")
    assert eraser.delete(f"{JOBS}{job_id}/").status_code == 204

    replays = [api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="order-7") for body in [sent, *guesses]]
    for replay in replays:
        assert (replay.status_code, replay.json()) == (replays[0].status_code, replays[0].json()), replay.content
        assert replay["Idempotent-Replayed"] == "true" and replay["Location"] == f"{JOBS}{job_id}/"
    tombstone = replays[0].json()
    assert replays[0].status_code == 200 and tombstone["id"] == job_id and tombstone["erased_at"]
    assert (tombstone["input"], tombstone["params"]) == ({}, {}) and SECRET not in str(tombstone)
    assert Job.objects.count() == 1
    erased = Job.objects.get(pk=job_id)
    assert (erased.request_fingerprint, erased.batch_key) == ("", "")
    # a body the API refuses on its own is refused as it is for any request, telling nothing of the erased one
    assert_envelope(api.post(JOBS, {"plugin": "reverse_text"}, format="json", HTTP_IDEMPOTENCY_KEY="order-7"), 400,
                    "validation_error")


def test_a_batch_replay_tells_nothing_of_its_erased_job_and_still_compares_the_others(project, eraser, api):
    from atelier_platform.jobs.submission import JobRequest, batch_fingerprint
    from atelier_platform.usage.models import IdempotencyRecord

    erased_body = {"plugin": "reverse_text", "input": {"text": SECRET}}
    kept_body = {"plugin": "reverse_text", "input": {"text": "the parcel is late"}}
    sent = {"jobs": [erased_body, kept_body]}
    created = api.post(f"{JOBS}batch/", sent, format="json", HTTP_IDEMPOTENCY_KEY="nightly-7")
    assert created.status_code == 201, created.content
    erased_id, kept_id = (job["id"] for job in created.json()["jobs"])
    assert eraser.delete(f"{JOBS}{erased_id}/").status_code == 204

    guess = {"jobs": [{**erased_body, "input": {"text": "call Jane Roe on 07700 900124"}}, kept_body]}
    right, wrong = (api.post(f"{JOBS}batch/", body, format="json", HTTP_IDEMPOTENCY_KEY="nightly-7")
                    for body in (sent, guess))
    assert (right.status_code, right.json()) == (wrong.status_code, wrong.json()) and right.status_code == 200
    assert right["Idempotent-Replayed"] == wrong["Idempotent-Replayed"] == "true"
    assert [job["id"] for job in right.json()["jobs"]] == [erased_id, kept_id] and SECRET not in right.content.decode()
    # the job whose content is kept is compared as before: another body for it, or another batch, is another request
    changed = {**kept_body, "input": {"text": "the parcel is lost"}}
    for other in ({"jobs": [erased_body, changed]}, {"jobs": [erased_body]},
                  {"jobs": [erased_body, kept_body, kept_body]}):
        assert_envelope(api.post(f"{JOBS}batch/", other, format="json", HTTP_IDEMPOTENCY_KEY="nightly-7"), 422,
                        "idempotency_key_reused")
    assert Job.objects.count() == 2
    # no hash of the erased request is left: not its job's, not the batch's (the record keeps no hash of its own)
    assert Job.objects.get(pk=erased_id).request_fingerprint == ""
    requests = [JobRequest("reverse_text", body["input"], {}, 5) for body in (erased_body, kept_body)]
    assert not IdempotencyRecord.objects.filter(fingerprint=batch_fingerprint(requests)).exists()
    assert IdempotencyRecord.objects.filter(key="nightly-7").exists()  # the key still holds: no second batch


# --- conversations ------------------------------------------------------------------------------------------------

def a_thread(project, *texts) -> Conversation:
    conversation = Conversation.objects.create(project=project, plugin_id="reverse_text")
    for index, text in enumerate(texts):
        job = build_job(project, input={"messages": [{"role": "user", "content": text}],
                                        "conversation_id": str(conversation.pk)})
        ConversationMessage.objects.create(conversation=conversation, index=index, role="user", content=text, job=job)
    return conversation


def test_conversations_are_listed_newest_first_in_cursor_pages_of_the_project_only(project, other_project, api):
    threads = [a_thread(project, f"hello {n}", "and more") for n in range(3)]
    a_thread(other_project, "not theirs to see")
    first = api.get("/api/v1/conversations/?page_size=2").json()
    assert set(first) == {"next", "previous", "results"}
    assert [c["id"] for c in first["results"]] == [str(threads[2].pk), str(threads[1].pk)]
    assert first["results"][0] == {
        "id": str(threads[2].pk), "plugin": "reverse_text", "created_at": first["results"][0]["created_at"],
        "updated_at": first["results"][0]["updated_at"], "message_count": 2,
        "url": f"/api/v1/conversations/{threads[2].pk}/"}
    rest = api.get(first["next"]).json()
    assert [c["id"] for c in rest["results"]] == [str(threads[0].pk)] and rest["next"] is None
    assert_envelope(api.get("/api/v1/conversations/?cursor=forged"), 400, "validation_error")


def test_a_page_of_conversations_counts_the_turns_of_its_threads_only(project, api):
    """Each page grouped every turn of the project to count the fifty threads it showed (a project with 400,000 turns:
    half a second a page, and growing); a page now counts its own threads' turns, after its LIMIT."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    threads = [a_thread(project, *[f"turn {n}"] * n) for n in (1, 2, 3)]
    with CaptureQueriesContext(connection) as queries:
        page = api.get("/api/v1/conversations/?page_size=2").json()["results"]
    assert [(c["id"], c["message_count"]) for c in page] == [(str(threads[2].pk), 3), (str(threads[1].pk), 2)]
    [listing] = [q["sql"] for q in queries if 'FROM "conversations_conversation"' in q["sql"]]
    assert "GROUP BY" not in listing and "LIMIT" in listing, listing


def test_delete_erases_a_conversation_and_its_jobs(project, other_project, eraser, api):
    conversation = a_thread(project, SECRET, f"again: {SECRET}")
    jobs = list(Job.objects.filter(project=project))
    kept = a_thread(project, "another thread")
    theirs = a_thread(other_project, SECRET)

    assert_envelope(eraser.delete(f"/api/v1/conversations/{theirs.pk}/"), 404, "not_found")
    response = eraser.delete(f"/api/v1/conversations/{conversation.pk}/")
    assert response.status_code == 204, response.content

    assert_envelope(api.get(f"/api/v1/conversations/{conversation.pk}/"), 404, "not_found")
    assert [c["id"] for c in api.get("/api/v1/conversations/").json()["results"]] == [str(kept.pk)]
    for job in jobs:
        shown = api.get(f"/api/v1/jobs/{job.pk}/").json()
        assert shown["erased_at"] and shown["input"] == {}
    assert not ConversationMessage.objects.filter(content__contains=SECRET, conversation__project=project).exists()
    assert Conversation.objects.filter(pk=theirs.pk).exists()
    assert_envelope(eraser.delete(f"/api/v1/conversations/{conversation.pk}/"), 404, "not_found")  # gone


def test_a_blocked_attempt_to_continue_a_conversation_is_erased_with_it(project, other_project, eraser, api,
                                                                       empty_plugin_registry):
    """Screening keeps a blocked job with its input as sent (the new turn, the conversation's id), never as a turn of
    the thread: the conversation's erasure must find it by the id its input names, however the plugin let it be
    spelt, and leave the blocked attempts of other conversations and other projects alone."""
    from atelier_platform.catalog.services import set_plugin_enabled
    from atelier_platform.moderation.checks import replace_safety_checks
    from tests.support.plugins import EchoChat
    from tests.support.safety import WordCheck

    empty_plugin_registry.register(EchoChat)
    for each in (project, other_project):
        set_plugin_enabled(each, "echo_chat", True)

    def say(text, conversation_id=None):
        body = {"plugin": "echo_chat", "input": {"messages": [{"role": "user", "content": text}],
                                                 **({"conversation_id": conversation_id} if conversation_id else {})}}
        return api.post("/api/v1/jobs/", body, format="json")

    started = say("hello there")
    assert started.status_code == 201, started.content
    conversation_id = started.json()["input"]["conversation_id"]
    other_thread = say("another thread").json()["input"]["conversation_id"]
    replace_safety_checks([WordCheck()])
    for spelling in (conversation_id, conversation_id.upper(), conversation_id.replace("-", "")):
        assert_envelope(say(f"violent words from {SECRET}", spelling), 422, "input_blocked")
    assert_envelope(say(f"violent but elsewhere {SECRET}", other_thread), 422, "input_blocked")
    assert_envelope(say(f"violent, no thread {SECRET}", "not-a-uuid"), 422, "input_blocked")
    blocked = Job.objects.filter(project=project, status=JobStatus.BLOCKED)
    assert blocked.count() == 5 and ConversationMessage.objects.filter(content__contains=SECRET).count() == 0
    Job.objects.filter(project=project, status=JobStatus.QUEUED).update(status=JobStatus.SUCCEEDED)

    assert eraser.delete(f"/api/v1/conversations/{conversation_id}/").status_code == 204
    erased = blocked.filter(erased_at__isnull=False)
    assert erased.count() == 3 and all(job.input == {} for job in erased)
    assert {job.input["messages"][0]["content"] for job in blocked.filter(erased_at=None)} == {
        f"violent but elsewhere {SECRET}", f"violent, no thread {SECRET}"}


def test_a_conversation_with_a_running_job_is_a_409_and_stays(project, eraser):
    conversation = a_thread(project, SECRET)
    running = build_job(project, status=JobStatus.RUNNING)
    ConversationMessage.objects.create(conversation=conversation, index=1, role="user", content="more", job=running)
    assert_envelope(eraser.delete(f"/api/v1/conversations/{conversation.pk}/"), 409, "job_running")
    assert ConversationMessage.objects.filter(conversation=conversation).count() == 2
    assert not Job.objects.filter(erased_at__isnull=False).exists()


def test_a_jobs_read_key_lists_conversations_but_cannot_erase_them(project, make_key, client_for):
    conversation = a_thread(project, "hi")
    reader = client_for(make_key(project, ["jobs:read"]).raw)
    assert reader.get("/api/v1/conversations/").status_code == 200
    assert_envelope(reader.delete(f"/api/v1/conversations/{conversation.pk}/"), 403, "permission_denied")


# --- the policy -------------------------------------------------------------------------------------------------

def test_the_retention_is_set_and_cleared_through_the_policy_and_audited(project, make_key, client_for):
    admin = client_for(make_key(project, ["admin", "content:erase"]).raw)
    assert admin.get("/api/v1/safety/policy/").json()["content_retention_days"] is None
    for wrong in (0, 3651, "a month", 1.5):
        refused = assert_envelope(admin.patch("/api/v1/safety/policy/", {"content_retention_days": wrong}, format="json"),
                                  400, "validation_error")
        assert "content_retention_days" in refused["details"]
    set_ = admin.patch("/api/v1/safety/policy/", {"content_retention_days": 30}, format="json")
    assert set_.status_code == 200 and set_.json()["content_retention_days"] == 30
    assert admin.get("/api/v1/safety/policy/").json()["content_retention_days"] == 30
    event = AuditEvent.objects.filter(action="policy_changed").latest("id")
    assert event.before["content_retention_days"] is None and event.after["content_retention_days"] == 30
    cleared = admin.patch("/api/v1/safety/policy/", {"content_retention_days": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["content_retention_days"] is None


def test_an_admin_key_without_content_erase_cannot_change_the_retention(project, make_key, client_for):
    """A retention of a day erases the project's history within the hour: it is content:erase's to decide, as a
    job's erasure is, not admin's alone (which could otherwise erase what it may not erase directly)."""
    admin = client_for(make_key(project, ["admin", "jobs:read"]).raw)
    for days in (1, 3650):
        refused = assert_envelope(admin.patch("/api/v1/safety/policy/", {"content_retention_days": days}, format="json"),
                                  403, "permission_denied")
        assert "content:erase" in refused["message"] and "Nothing was changed" in refused["message"]
    assert admin.get("/api/v1/safety/policy/").json()["content_retention_days"] is None
    assert not AuditEvent.objects.filter(action="policy_changed").exists()
    # the policy as read, sent back with another change: the retention is not changed, so admin suffices
    policy = admin.get("/api/v1/safety/policy/").json()
    changed = admin.patch("/api/v1/safety/policy/", {**policy, "lease_seconds": 900}, format="json")
    assert changed.status_code == 200 and changed.json()["lease_seconds"] == 900
    owner_key = client_for(make_key(project, ["admin", "content:erase"]).raw)
    assert owner_key.patch("/api/v1/safety/policy/", {"content_retention_days": 7}, format="json").status_code == 200
    # nor may admin alone lengthen or clear a retention that content:erase set
    for days in (30, None):
        assert_envelope(admin.patch("/api/v1/safety/policy/", {"content_retention_days": days}, format="json"),
                        403, "permission_denied")
    assert admin.get("/api/v1/safety/policy/").json()["content_retention_days"] == 7


# --- the OpenAI-compatible answers ---------------------------------------------------------------------------------

def test_an_openai_replay_of_an_erased_job_is_a_410(project):
    from atelier_platform.jobs import erasure

    job, _ = a_finished_job(project)
    erasure.erase_jobs(project, [job], "user:1")
    job = Job.objects.get(pk=job.pk)
    for answer in (lambda: openai_services.chat_completion(job, "chatbot"),
                   lambda: openai_services.images_response(job, "url", lambda path: path)):
        with pytest.raises(OpenAIError) as erased:
            answer()
        assert erased.value.status == 410 and erased.value.code == "job_erased" and str(job.pk) in erased.value.message


# --- the review queue ---------------------------------------------------------------------------------------------

def a_member(project, role: str) -> APIClient:
    client = APIClient()
    client.force_login(MembershipFactory(project=project, user=UserFactory(), role=role).user)
    client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
    return client


def an_item_waiting(project, *, flagged_as: str = "pii"):
    from atelier_platform.moderation.models import ReviewItem

    job = build_job(project, input={"text": SECRET}, run_seconds=1)
    output = build_output(job, content={"text": SECRET, "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    return job, ReviewItem.objects.create(output=output, project=project, categories=[flagged_as])


def test_an_item_closed_by_an_erasure_is_no_decision_in_the_review_metrics(project, eraser):
    reviewer = a_member(project, "reviewer")
    _, approved = an_item_waiting(project)
    assert reviewer.post(f"/api/v1/reviews/{approved.pk}/claim/").status_code == 200
    assert reviewer.post(f"/api/v1/reviews/{approved.pk}/decision/", {"action": "approve"}, format="json").status_code == 200
    erased_job, _ = an_item_waiting(project)
    erased_after_a_decision, decided = an_item_waiting(project, flagged_as="violence")
    assert reviewer.post(f"/api/v1/reviews/{decided.pk}/claim/").status_code == 200
    assert reviewer.post(f"/api/v1/reviews/{decided.pk}/decision/", {"action": "reject", "reason": "off_brand"},
                         format="json").status_code == 200
    before = reviewer.get("/api/v1/reviews/metrics/").json()
    assert before["queue_depth"] == 1 and before["approval_rate_by_plugin"] == {"reverse_text": 0.5}

    for job in (erased_job, erased_after_a_decision):
        assert eraser.delete(f"/api/v1/jobs/{job.pk}/").status_code == 204
    metrics = reviewer.get("/api/v1/reviews/metrics/").json()
    # the erased item left the queue, decided by nobody: one approval of two decisions, as before; the decision made
    # before its job was erased still counts
    assert metrics["queue_depth"] == 0 and metrics["oldest_item_age_s"] is None
    assert metrics["approval_rate_by_plugin"] == {"reverse_text": 0.5}
    assert metrics["approval_rate_by_category"] == {"pii": 1.0, "violence": 0.0}
    assert list(metrics["decisions_per_hour_last_24h"].values()) == [round(2 / 24, 2)]


def test_a_reviewer_holding_an_erased_item_is_told_it_was_erased_and_nothing_comes_back(project, eraser):
    from atelier_platform.moderation.models import ReviewDecision

    reviewer = a_member(project, "reviewer")
    job, item = an_item_waiting(project)
    assert reviewer.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
    assert eraser.delete(f"/api/v1/jobs/{job.pk}/").status_code == 204

    for body in ({"action": "approve"}, {"action": "edit", "content": {"text": SECRET, "characters": 3}},
                 {"action": "regenerate", "comment": "again"}, {"action": "reject", "reason": "off_brand"}):
        refused = assert_envelope(reviewer.post(f"/api/v1/reviews/{item.pk}/decision/", body, format="json",
                                                HTTP_IDEMPOTENCY_KEY=f"retry-{body['action']}"), 409, "content_erased")
        assert "erased" in refused["message"] and refused["details"]["erased_at"]
    for step in ("claim", "renew"):
        assert_envelope(reviewer.post(f"/api/v1/reviews/{item.pk}/{step}/"), 409, "content_erased")
    # nothing written: no decision, no regeneration, the content not back
    assert not ReviewDecision.objects.exists() and Job.objects.count() == 1
    shown = reviewer.get(f"/api/v1/reviews/{item.pk}/").json()
    assert shown["state"] == "decided" and shown["output"]["content"] is None and shown["job_input"] == {}
    assert SECRET not in str(shown)
    # claiming the next item passes it over
    assert reviewer.post("/api/v1/reviews/claim-next/").status_code == 204


def test_an_item_decided_by_someone_is_still_review_decided(project):
    reviewer, other = a_member(project, "reviewer"), a_member(project, "reviewer")
    _, item = an_item_waiting(project)
    assert reviewer.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
    assert reviewer.post(f"/api/v1/reviews/{item.pk}/decision/", {"action": "approve"}, format="json").status_code == 200
    assert_envelope(other.post(f"/api/v1/reviews/{item.pk}/claim/"), 409, "review_decided")


# --- final content ------------------------------------------------------------------------------------------------

def test_an_erased_output_is_no_final_content_in_the_outputs_list_and_its_export(project, eraser, api):
    import json as json_module

    erased_job, erased = a_finished_job(project)
    kept_job = build_job(project, input={"text": "a kept prompt"}, run_seconds=1)
    kept = build_output(kept_job, content={"text": "kept copy"}, review_state=ReviewState.APPROVED)
    assert eraser.delete(f"/api/v1/jobs/{erased_job.pk}/").status_code == 204

    # a CMS syncing the final content gets the kept output only, not an approved row with no text
    assert [o["id"] for o in api.get("/api/v1/outputs/?final=true").json()["results"]] == [str(kept.pk)]
    rows = [json_module.loads(line) for line in
            b"".join(api.get("/api/v1/outputs/?final=true&export=jsonl").streaming_content).decode().splitlines()]
    assert [(row["output_id"], row["text"], row["final"]) for row in rows] == [(str(kept.pk), "kept copy", True)]
    # it keeps its review state (the tombstone), and says it is not final: there is no content to use
    shown = api.get(f"/api/v1/outputs/{erased.pk}/").json()
    assert (shown["review_state"], shown["final"], shown["content"]) == ("approved", False, None)
    assert [o["id"] for o in api.get("/api/v1/outputs/?final=false").json()["results"]] == [str(erased.pk)]
    assert api.get(f"/api/v1/jobs/{erased_job.pk}/").json()["outputs"][0]["final"] is False
    assert SECRET not in str(api.get("/api/v1/outputs/?final=false&export=csv").getvalue())


def test_a_thread_says_which_of_its_turns_were_erased(project, eraser, api):
    conversation = a_thread(project, SECRET, "and more")
    first = ConversationMessage.objects.get(conversation=conversation, index=0)
    ConversationMessage.objects.create(conversation=conversation, index=2, role="user", content="a turn of no job")
    assert eraser.delete(f"/api/v1/jobs/{first.job_id}/").status_code == 204

    shown = api.get(f"/api/v1/conversations/{conversation.pk}/").json()["messages"]
    assert [(m["content"], m["erased"]) for m in shown] == [("", True), ("and more", False), ("a turn of no job", False)]
    pages = api.get(f"/api/v1/conversations/{conversation.pk}/messages/").json()["results"]
    assert [(m["index"], m["erased"]) for m in pages] == [(2, False), (1, False), (0, True)]
