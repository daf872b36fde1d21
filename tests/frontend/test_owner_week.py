"""A project owner's week on the dashboard: quotas an editor hits and a member reads, the audit log searched for who
did what, and changes that say what they changed."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from atelier_platform.jobs.models import Job
from atelier_platform.usage.models import ProjectQuota
from tests.frontend.test_dashboard_fixes import in_chinese

pytestmark = pytest.mark.django_db

def text_of(response) -> str:
    """The page as a reader sees its characters (an apostrophe, not ``&#x27;``)."""
    return html.unescape(response.content.decode())


#: the next UTC midnight as the dashboard writes it ("Dec 6, 00:00 UTC"), however long from now
RESETS_TONIGHT = re.compile(r"[A-Z][a-z]{2} \d{1,2}, 00:00 UTC \(in [^)]+\)")


# --- quotas ------------------------------------------------------------------------------------------------

def test_an_editor_over_the_days_quota_is_told_in_words_when_it_starts_again(project, signed_in, submit, chat_project):
    ProjectQuota.objects.create(project=project, jobs_per_day=1)
    editor = signed_in(project, "editor")
    submit(project, user=editor.user)

    response = editor.post("/create/reverse_text/", {"input.text": "one more", "priority": "5"})
    assert response.status_code == 400
    page = text_of(response)
    assert "This project's job quota for today is used up (1 of 1 jobs since 00:00 UTC)." in page
    assert RESETS_TONIGHT.search(page), page
    assert "ask a project owner" in page
    # not the API's message and its details, as they were shown before
    assert "resets_at" not in page and "jobs_per_day" not in page and "an operator can raise it" not in page

    chinese = text_of(in_chinese(editor).post("/create/reverse_text/", {"input.text": "one more", "priority": "5"}))
    assert "本项目今天的任务配额已用完（自 UTC 00:00 起 1 / 1 个任务）" in chinese and "UTC" in chinese

    # the chat page says the same, and keeps the message typed
    chat = text_of(editor.post("/chat/", {"message": "Where is my order?"}))
    assert "本项目今天的任务配额已用完（自 UTC 00:00 起 1 / 1 个任务）" in chat and "Where is my order?" in chat


def test_a_month_of_compute_used_up_is_told_in_seconds(project, signed_in, submit, run_job):
    editor = signed_in(project, "editor")
    job = submit(project, user=editor.user)
    run_job(job)
    job.refresh_from_db()
    Job.objects.filter(pk=job.pk).update(started_at=job.finished_at - timedelta(seconds=90))  # a minute and a half
    ProjectQuota.objects.create(project=project, compute_seconds_per_month=60)

    page = text_of(editor.post("/create/reverse_text/", {"input.text": "one more", "priority": "5"}))
    assert "This project's compute quota for this month is used up (90 s of 60 s)." in page
    assert re.search(r"until [A-Z][a-z]{2} 1, 00:00 UTC \(in ", page), page


def test_the_usage_page_shows_each_quota_with_its_unit_its_use_and_when_it_starts_again(project, signed_in, submit):
    ProjectQuota.objects.create(project=project, jobs_per_day=3, compute_seconds_per_month=3600)
    viewer = signed_in(project, "viewer")
    submit(project)
    submit(project)
    page = text_of(viewer.get("/usage/"))
    jobs = re.search(r'<tr data-quota="jobs_per_day".*?</tr>', page, re.S)[0]
    assert "Jobs today (UTC day)" in jobs and "2 of 3" in jobs and "1 left" in jobs
    assert RESETS_TONIGHT.search(jobs), jobs
    compute = re.search(r'<tr data-quota="compute_seconds_per_month".*?</tr>', page, re.S)[0]
    assert "0 s of 3,600 s" in compute and "3,600 s left" in compute and " 1, 00:00 UTC" in compute

    submit(project)
    page = text_of(viewer.get("/usage/"))
    assert re.search(r'<tr data-quota="jobs_per_day" class="used-up">.*?3 of 3 · .*?0 left', page, re.S)

    ProjectQuota.objects.filter(project=project).update(jobs_per_day=0, compute_seconds_per_month=0)
    page = text_of(in_chinese(viewer).get("/usage/"))
    assert re.search(r'<tr data-quota="jobs_per_day">.*?3（不限）', page, re.S)
