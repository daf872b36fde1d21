"""Cancelling an evaluation run from its page: owners see "Cancel run" (with a confirmation) while it goes; the run
is cancelled through the service the API uses; the page and the settings card then say it was cancelled."""

from __future__ import annotations

import re

import pytest

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation import services
from atelier_platform.evaluation.models import EvaluationRun, RunStatus
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.moderation.models import AuditEvent
from tests.evaluation.conftest import chat_case

pytestmark = pytest.mark.django_db

QUESTIONS = ["Where is my parcel?", "Can I pay later?", "Do you ship abroad?"]


@pytest.fixture
def chatbot(project, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)


def start(project, name="support") -> EvaluationRun:
    reference_set = services.create_reference_set(
        project, plugin_id="chatbot", name=name, actor="test",
        cases=[chat_case(question, f"Reference {i}") for i, question in enumerate(QUESTIONS)])
    return services.start_run(project, reference_set, actor="test")


def answer_first_case(run: EvaluationRun, text="Reference 0") -> None:
    job = Job.objects.get(evaluation_case__run=run, evaluation_case__index=0)
    claim = lifecycle.claim_job(str(job.pk), "worker-1")
    lifecycle.complete_job(str(job.pk), claim.token, [lifecycle.ProducedOutput({"reply": text})],
                           {"model_version": "default"})


def cancel_form(page: str) -> str | None:
    found = re.search(r'<form[^>]*id="cancel-run-form"[^>]*>', page)
    return found.group(0) if found else None


def test_owners_see_cancel_run_with_a_confirmation_while_the_run_goes_and_others_do_not(project, chatbot, signed_in):
    run = start(project)
    owner = signed_in(project, "owner")
    form = cancel_form(owner.get(f"/evaluation/runs/{run.pk}/").content.decode())
    assert form is not None and f'action="/evaluation/runs/{run.pk}/cancel/"' in form
    assert 'data-confirm="Cancel this run?' in form
    for role in ("editor", "reviewer", "viewer"):
        assert cancel_form(signed_in(project, role).get(f"/evaluation/runs/{run.pk}/").content.decode()) is None, role
    services.cancel_run(run, actor="test")
    assert cancel_form(owner.get(f"/evaluation/runs/{run.pk}/").content.decode()) is None  # finished: nothing to cancel


def test_an_owner_cancels_a_run_and_its_page_says_what_was_scored(project, chatbot, signed_in):
    run = start(project)
    answer_first_case(run)
    owner = signed_in(project, "owner")
    response = owner.post(f"/evaluation/runs/{run.pk}/cancel/")
    assert response.status_code == 302 and response["Location"] == f"/evaluation/runs/{run.pk}/"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.metrics["succeeded"] == 1
    assert [job.status for job in Job.objects.filter(evaluation_case__run=run).order_by("evaluation_case__index")] == [
        JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert AuditEvent.objects.get(action="evaluation_run_cancelled").actor == f"user:{owner.user.pk}"
    page = owner.get(f"/evaluation/runs/{run.pk}/").content.decode()
    assert 'data-run-status="cancelled"' in page
    assert "This run was cancelled: the 1 of 3 cases answered before are scored, the others count as failed." in page
    assert 'data-case-status="succeeded"' in page and page.count('data-error-code="cancelled"') == 2

    again = owner.post(f"/evaluation/runs/{run.pk}/cancel/")  # a second click, or another owner's: nothing more
    assert again.status_code == 302 and AuditEvent.objects.filter(action="evaluation_run_cancelled").count() == 1

    owner.post("/language/", {"language": "zh-hans", "next": "/"})
    chinese = owner.get(f"/evaluation/runs/{run.pk}/").content.decode()
    assert "此运行已取消：取消前已回答的 1 / 3 个用例已评分，其余计为失败。" in chinese and "已取消" in chinese


def test_the_settings_card_shows_a_cancelled_run(project, chatbot, signed_in):
    run = start(project)
    answer_first_case(run)
    services.cancel_run(run, actor="test")
    owner = signed_in(project, "owner")
    page = owner.get("/settings/").content.decode()
    status = re.search(r'<span class="status s-cancelled" data-run-status="cancelled">(.*?)</span>', page, re.S)
    assert status is not None and "Cancelled · 1 of 3 answered" in status.group(1)
    owner.post("/language/", {"language": "zh-hans", "next": "/"})
    chinese = owner.get("/settings/").content.decode()
    assert re.search(r'data-run-status="cancelled">已取消 · 已回答 1 / 3</span>', chinese)


def test_only_owners_cancel_and_another_projects_run_is_not_found(project, other_project, chatbot, signed_in):
    run = start(project)
    for role in ("editor", "reviewer", "viewer"):
        assert signed_in(project, role).post(f"/evaluation/runs/{run.pk}/cancel/").status_code == 403, role
    owner = signed_in(project, "owner")
    assert owner.get(f"/evaluation/runs/{run.pk}/cancel/").status_code == 405  # a change is a POST
    set_plugin_enabled(other_project, "chatbot", True)
    theirs = start(other_project)
    assert owner.post(f"/evaluation/runs/{theirs.pk}/cancel/").status_code == 404
    assert set(EvaluationRun.objects.values_list("status", flat=True)) == {RunStatus.QUEUED}
    assert not Job.objects.filter(status=JobStatus.CANCELLED).exists()
