"""Why a job did not succeed, as its page tells the person who submitted it: a translated explanation of each
error code with what to do, the code and the platform's English message folded away for whoever debugs it."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone, translation

from atelier_platform.config import REPO_ROOT
from atelier_platform.jobs.models import Job, JobStatus
from tests.frontend.test_dashboard_fixes import in_chinese, text_of

#: Where job error codes are written: the plugins and their SDK, the worker runtime, the jobs' lifecycle.
CODE = re.compile(r'\b(?:error_)?code(?:: str)?\s*=\s*"([a-z_]+)"')
#: a code given as a literal argument of the lifecycle's failing calls (within their parentheses, a call in them too)
FAILED_WITH = re.compile(r'\b(?:retry_or_fail|fail_job)\((?:[^"\n()]|\([^()\n]*\))*"([a-z_]+)"')


def error_codes_written() -> set[str]:
    from atelier_platform.jobs.lifecycle import WORKER_LOST

    sources = [*(REPO_ROOT / "plugins").rglob("*.py"), *(REPO_ROOT / "workers" / "atelier_workers").rglob("*.py"),
               REPO_ROOT / "platform" / "atelier_platform" / "jobs" / "lifecycle.py"]
    codes = {WORKER_LOST}
    for path in sources:
        text = path.read_text(encoding="utf-8")
        codes |= set(CODE.findall(text)) | set(FAILED_WITH.findall(text))
    submission = (REPO_ROOT / "platform" / "atelier_platform" / "jobs" / "submission.py").read_text(encoding="utf-8")
    return codes | set(re.findall(r'\berror_code="([a-z_]+)"', submission))


def test_every_error_code_a_job_can_end_with_has_its_own_explanation_in_chinese():
    from atelier_frontend.job_errors import EXPLANATIONS, GENERAL, explain

    codes = error_codes_written()
    assert {"model_load_failed", "out_of_memory", "worker_lost", "store_failed", "input_blocked", "retrieval_failed",
            "plugin_error", "transient_error"} <= codes  # a guard for the guard
    assert sorted(codes - set(EXPLANATIONS)) == []
    for code in [*codes, "acme_quota_exceeded"]:
        with translation.override("en"):
            english = explain(code)
        with translation.override("zh-hans"):
            chinese = explain(code)
        assert chinese.what_happened != english.what_happened and chinese.what_to_do != english.what_to_do, code
    with translation.override("en"):
        assert explain("acme_quota_exceeded").what_happened == str(GENERAL[0]) == "The job failed."


def failed(job, code: str, message: str) -> Job:
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error_code=code, error_message=message,
                                         finished_at=timezone.now())
    return job


@pytest.mark.django_db
def test_a_failed_jobs_page_says_what_happened_and_what_to_do_and_folds_the_technical_message_away(
        project, signed_in, submit):
    editor = signed_in(project, "editor")
    message = ("The model could not be loaded (OSError); an operator finds why in the worker's log and on the workers "
               "page. (gave up after 3 attempts)")
    job = failed(submit(project, user=editor.user), "model_load_failed", message)
    page = text_of(editor.get(f"/jobs/{job.pk}/"))
    box = page[page.index('id="job-error"'):page.index("</div>", page.index('id="job-error"'))]
    assert "<strong>The worker could not load the plugin&#x27;s model.</strong>" in box
    assert "the workers page says why" in box and f'href="/create/reverse_text/?from={job.pk}">Try again</a>' in box
    technical = box[box.index('<details class="technical">'):]
    assert "<code>model_load_failed</code>" in technical and "an operator finds why" in technical
    assert page.count("model_load_failed") == 2  # data-error-code and the folded details: nowhere in plain sight

    page = text_of(in_chinese(editor).get(f"/jobs/{job.pk}/"))
    assert "<strong>工作节点无法加载插件的模型。</strong>" in page and "工作节点页面会说明原因" in page
    assert ">重试</a>" in page and "<summary>技术详情</summary>" in page
    timeline = page[page.index('class="timeline"'):]
    assert "工作节点无法加载插件的模型。" in timeline and "OSError" not in timeline


@pytest.mark.django_db
def test_what_is_offered_follows_the_error_and_the_role(project, signed_in, submit):
    editor = signed_in(project, "editor")
    job = failed(submit(project, user=editor.user), "model_missing", "Model directory m does not exist.")
    page = text_of(editor.get(f"/jobs/{job.pk}/"))
    assert "check the model version chosen for this plugin" in page and 'id="try-again"' not in page
    job = failed(submit(project, user=editor.user), "invalid_input", "The model cannot make this image: too wide")
    assert ">Change the request and try again</a>" in text_of(editor.get(f"/jobs/{job.pk}/"))
    page = text_of(signed_in(project, "viewer").get(f"/jobs/{job.pk}/"))  # a viewer submits nothing
    assert "The plugin could not work with this input." in page and 'id="try-again"' not in page
    job = failed(submit(project, user=editor.user), "acme_quota_exceeded", "Acme says no.")
    page = text_of(in_chinese(editor).get(f"/jobs/{job.pk}/"))
    assert "<strong>任务失败。</strong>" in page and "<code>acme_quota_exceeded</code> Acme says no." in page


@pytest.mark.django_db
def test_a_job_queued_again_after_a_failed_attempt_says_so(project, signed_in, submit):
    editor = signed_in(project, "editor")
    job = submit(project, user=editor.user)
    Job.objects.filter(pk=job.pk).update(error_code="worker_lost",
                                         error_message="Worker w1 stopped responding; retrying.")
    page = text_of(in_chinese(editor).get(f"/jobs/{job.pk}/"))
    assert 'class="job-note job-error"' in page and "上一次尝试未能完成；任务已重新排队" in page
    assert 'id="try-again"' not in page


@pytest.mark.django_db
def test_a_failed_chat_reply_says_why_in_the_readers_language(chat_project, signed_in):
    editor = signed_in(chat_project, "editor")
    thread = editor.post("/chat/", {"message": "Where is my order?"})["Location"]
    job = Job.objects.get()
    failed(job, "retrieval_failed", "Knowledge-base retrieval failed: connection refused")
    page = text_of(in_chinese(editor).get(thread))
    assert "生成此回复时无法检索项目的知识库。" in page and "connection refused" not in page
