"""Erasure in the dashboard: an owner erases a job from its page (a confirmed POST form), the pages that show jobs
say it was erased without breaking, and the settings page sets the project's content retention."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.jobs import erasure
from atelier_platform.jobs.models import Job, JobStatus, ReviewState
from atelier_platform.moderation.models import ReviewItem
from atelier_platform.moderation.screening import policy_for
from tests.api.helpers import build_job, build_output

pytestmark = pytest.mark.django_db

SECRET = "call Jane Roe on 07700 900123"


@pytest.fixture
def owner(project, signed_in):
    return signed_in(project, "owner")


def a_job(project, **fields):
    job = build_job(project, input={"text": SECRET}, run_seconds=1, **fields)
    build_output(job, content={"text": SECRET[::-1], "characters": 5}, review_state=ReviewState.APPROVED, image=True)
    return job


def test_an_owner_erases_a_job_from_its_page_and_the_page_then_says_so(project, owner):
    job = a_job(project)
    page = owner.get(f"/jobs/{job.pk}/").content.decode()
    form = re.search(r'<form method="post" action="/jobs/[^"]+/erase/"[^>]*>', page)
    assert form and 'data-confirm="Erase this job' in form.group(0) and "cannot be undone" in form.group(0)
    assert 'id="erase-job"' in page and "csrfmiddlewaretoken" in page[form.start():]

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner.user)
    assert strict.post(f"/jobs/{job.pk}/erase/").status_code == 403  # no CSRF token: refused
    assert Job.objects.get(pk=job.pk).erased_at is None

    response = owner.post(f"/jobs/{job.pk}/erase/")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    erased = Job.objects.get(pk=job.pk)
    assert erased.erased_at is not None and erased.erased_by == f"user:{owner.user.pk}"
    page = owner.get(response["Location"]).content.decode()
    assert '<p class="notice" role="status" id="job-notice">Erased.</p>' in page
    assert 'id="job-erased"' in page and f"by {owner.user.username}." in page
    assert SECRET not in page and SECRET[::-1] not in page and "/files/" not in page
    assert 'data-withheld="erased"' in page and 'id="input-erased"' in page
    assert 'id="erase-job"' not in page and "Reuse this request" not in page
    assert "content erased" in page  # the timeline's event
    assert 'id="job-notice"' not in owner.get(f"/jobs/{job.pk}/").content.decode()  # said once


def test_other_roles_see_no_button_and_are_refused(project, signed_in):
    job = a_job(project)
    for role in ("editor", "reviewer", "viewer"):
        client = signed_in(project, role)
        assert 'id="erase-job"' not in client.get(f"/jobs/{job.pk}/").content.decode()
        assert client.post(f"/jobs/{job.pk}/erase/").status_code == 403
    assert Job.objects.get(pk=job.pk).erased_at is None


def test_a_running_job_is_not_erased_and_the_page_says_why(project, owner):
    job = build_job(project, status=JobStatus.RUNNING, input={"text": SECRET})
    page = owner.get(owner.post(f"/jobs/{job.pk}/erase/")["Location"]).content.decode()
    assert "Not erased: the job is running. Cancel it, and erase it once it has stopped." in page
    assert Job.objects.get(pk=job.pk).erased_at is None and SECRET in page


def test_another_projects_job_is_a_404(project, other_project, owner):
    theirs = a_job(other_project)
    assert owner.post(f"/jobs/{theirs.pk}/erase/").status_code == 404
    assert Job.objects.get(pk=theirs.pk).erased_at is None


def test_the_pages_that_show_an_erased_job_still_work(project, owner, signed_in, chat_project):
    job = a_job(project)
    item_job = a_job(project)
    item = ReviewItem.objects.create(output=item_job.outputs.get(), project=project)
    conversation = Conversation.objects.create(project=project, plugin_id="turn_counter")
    ConversationMessage.objects.create(conversation=conversation, index=0, role="user", content=SECRET, job=job)
    erasure.erase_jobs(project, [job, item_job], "retention")

    jobs_page = owner.get("/jobs/").content.decode()
    assert SECRET not in jobs_page and jobs_page.count("(content erased)") == 2
    page = owner.get(f"/jobs/{job.pk}/").content.decode()
    assert "by the project&#x27;s content retention." in page or "by the project's content retention." in page
    chat = owner.get(f"/chat/{conversation.pk}/")
    assert chat.status_code == 200 and "This turn was erased." in chat.content.decode()
    assert SECRET not in chat.content.decode()
    assert owner.get("/usage/").status_code == 200
    reviewer = signed_in(project, "reviewer")
    assert reviewer.get("/review/").status_code == 200
    panel = reviewer.get(f"/review/items/{item.pk}/")
    assert panel.status_code in (200, 404) and SECRET not in panel.content.decode()
    status = owner.get(f"/jobs/status/?ids={job.pk}").json()
    assert status["jobs"][0]["status"] == "succeeded"


def test_the_retention_is_set_in_the_policy_form_and_cleared_by_leaving_it_empty(project, owner):
    form = {"action": "policy", "review_mode": "review_before_release", "audit_sample_percent": "10",
            "lease_seconds": "600", "reject_reasons": "off_brand", "forbid_self_approval": "on"}
    page = owner.get("/settings/").content.decode()
    assert 'name="content_retention_days"' in page and 'value=""' in page
    assert owner.post("/settings/", {**form, "content_retention_days": "90"}).status_code == 302
    assert policy_for(project, fresh=True).content_retention_days == 90
    assert 'name="content_retention_days" min="1" max="3650" placeholder="for good" value="90"' in \
        owner.get("/settings/").content.decode()
    refused = owner.post("/settings/", {**form, "content_retention_days": "0"})
    assert refused.status_code == 400
    assert "From 1 to 3,650 days (ten years), or empty to keep content for good." in refused.content.decode()
    assert 'value="0"' in refused.content.decode()  # shown as typed
    assert policy_for(project, fresh=True).content_retention_days == 90
    assert owner.post("/settings/", {**form, "content_retention_days": ""}).status_code == 302
    assert policy_for(project, fresh=True).content_retention_days is None


def test_the_erasure_and_the_retention_speak_chinese(project, owner):
    owner.cookies["django_language"] = "zh-hans"
    job = a_job(project)
    page = owner.get(f"/jobs/{job.pk}/").content.decode()
    assert "清除内容" in page and "永久清除这个任务的内容？" in page
    page = owner.get(owner.post(f"/jobs/{job.pk}/erase/")["Location"]).content.decode()
    assert "已清除。" in page and "内容已于" in page
    assert "生成内容保留天数" in owner.get("/settings/").content.decode()


def test_the_usage_page_counts_no_decision_for_an_item_an_erasure_closed(project, owner):
    from atelier_frontend.usage import summary
    from django.utils import timezone

    approved = a_job(project)
    ReviewItem.objects.create(output=approved.outputs.get(), project=project, state="decided",
                              decided_at=timezone.now())
    waiting = build_job(project, input={"text": SECRET}, run_seconds=1)
    output = build_output(waiting, content={"text": SECRET, "usage": {"prompt_tokens": 2, "completion_tokens": 3}})
    ReviewItem.objects.create(output=output, project=project)
    before = summary(project)
    assert (before["approval_rate"][-1], before["decided"][-1], before["now"]["review_open"]) == (1.0, 1, 1)

    erasure.erase_jobs(project, [waiting], "user:1")
    after = summary(project)
    # it left the queue, decided by nobody: the day's approval rate and decisions are as they were
    assert (after["approval_rate"][-1], after["decided"][-1], after["now"]["review_open"]) == (1.0, 1, 0)
    assert after["tokens"] == before["tokens"] and after["images"] == before["images"]
    assert after["compute_seconds"] == before["compute_seconds"]
    assert owner.get("/usage/").status_code == 200


def test_a_review_item_erased_says_so_on_its_panel_and_in_the_queue_words(project, signed_in):
    from django.utils import translation

    from atelier_frontend.texts import js_text

    job = build_job(project, input={"text": SECRET}, run_seconds=1)
    item = ReviewItem.objects.create(output=build_output(job, content={"text": SECRET}, image=True), project=project)
    erasure.erase_jobs(project, [job], "user:1")
    reviewer = signed_in(project, "reviewer")
    panel = reviewer.get(f"/review/items/{item.pk}/").content.decode()
    assert 'id="item-erased"' in panel and "This item's content was erased" in panel
    assert SECRET not in panel and "/files/" not in panel
    reviewer.cookies["django_language"] = "zh-hans"
    assert "此条目的内容已被清除" in reviewer.get(f"/review/items/{item.pk}/").content.decode()
    with translation.override("zh-hans"):
        assert js_text()["content_erased"] == "此条目的内容已被清除，没有可审核的内容了。按 n 领取下一条。"


def test_an_erased_job_is_not_among_the_recent_prompts_to_reuse(project, signed_in, submit):
    editor = signed_in(project, "editor")
    kept = submit(project, text="a prompt to keep", user=editor.user)
    erased = submit(project, text=SECRET, user=editor.user)
    erasure.erase_jobs(project, [erased], "user:1")
    page = editor.get("/create/reverse_text/").content.decode()
    assert f"?from={kept.pk}" in page and "a prompt to keep" in page
    assert f"?from={erased.pk}" not in page and SECRET not in page
