"""What the dashboard tells its users about the state of things: a succeeded job's review state rather than
"Succeeded", a running job's progress in words, the review lease's end and its extension, a refused settings
form's errors where the form is, and the shape a JSON field expects."""

from __future__ import annotations

import re

import pytest
from django.utils import translation

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job, JobPurpose, JobStatus, Output, ReviewState

from atelier_frontend.job_states import badges, progress_words
from atelier_frontend.schema_form import example_of

pytestmark = pytest.mark.django_db


def text_of(response) -> str:
    return response.content.decode()


def status_cell(page: str, job) -> str:
    """The status cell of ``job``'s row in the jobs list."""
    row = re.search(rf'<tr data-job="{job.pk}".*?</tr>', page, re.S).group(0)
    return re.search(r'<td class="status-cell">(.*?)</td>', row, re.S).group(1)


class TestSucceededJobsSayWhetherTheirContentMayBeUsed:
    def test_the_jobs_list_and_the_job_page_name_the_outputs_review_state_not_succeeded(
            self, project, signed_in, submit, run_job):
        viewer = signed_in(project, "viewer")
        job = submit(project, text="fresh copy")
        run_job(job)
        assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
        cell = status_cell(text_of(viewer.get("/jobs/")), job)
        assert 'data-review="pending"' in cell and ">Awaiting review</span>" in cell and "Succeeded" not in cell
        header = text_of(viewer.get(f"/jobs/{job.pk}/")).split('id="job-status"')[1].split("</div>")[0]
        assert ">Awaiting review</span>" in header and "Succeeded" not in header

        for state, words in ((ReviewState.APPROVED, "Approved"), (ReviewState.RELEASED, "Released"),
                             (ReviewState.BLOCKED, "Output blocked"), (ReviewState.REJECTED, "Rejected")):
            Output.objects.filter(job=job).update(review_state=state)
            cell = status_cell(text_of(viewer.get("/jobs/")), job)
            assert f'class="status r-{state}" data-status="succeeded" data-review="{state}"' in cell
            assert f">{words}</span>" in cell, state

    def test_outputs_in_different_states_each_get_a_badge_with_their_count(self, project, signed_in, submit, run_job):
        job = submit(project, text="three takes", copies=3)
        run_job(job)
        first, second, _third = Output.objects.filter(job=job).order_by("index")
        Output.objects.filter(pk__in=[first.pk, second.pk]).update(review_state=ReviewState.APPROVED)
        cell = status_cell(text_of(signed_in(project, "viewer").get("/jobs/")), job)
        assert re.findall(r'data-review="(\w+)"[^>]*>[^<]+<span class="count">(\d+)</span>', cell) == [
            ("pending", "1"), ("approved", "2")]  # what still waits for someone first

    def test_jobs_that_did_not_succeed_keep_their_run_state(self, project, signed_in, submit, run_job):
        failed = submit(project, text="broken", fail="permanent")
        run_job(failed)
        queued = submit(project, text="waiting")
        page = text_of(signed_in(project, "viewer").get("/jobs/"))
        assert '<span class="status s-queued" data-status="queued">Queued</span>' in status_cell(page, queued)
        assert '<span class="status s-failed" data-status="failed">Failed</span>' in status_cell(page, failed)

    def test_the_poll_paints_a_job_that_finished_with_its_review_state(self, project, signed_in, submit, run_job):
        viewer = signed_in(project, "viewer")
        job = submit(project, text="watched")
        run_job(job)
        [answer] = viewer.get("/jobs/status/", {"ids": str(job.pk)}).json()["jobs"]
        assert answer["finished"] and 'data-review="pending"' in answer["html"] and "Awaiting review" in answer["html"]

    def test_the_create_pages_recent_prompts_name_the_review_state_as_the_jobs_list(self, project, signed_in, submit,
                                                                                       run_job):
        editor = signed_in(project, "editor")
        ran = submit(project, text="two takes", user=editor.user, copies=2)
        run_job(ran)
        first = Output.objects.filter(job=ran).order_by("index").first()
        Output.objects.filter(pk=first.pk).update(review_state=ReviewState.REJECTED)
        blocked = submit(project, text="one take", user=editor.user)
        run_job(blocked)
        Output.objects.filter(job=blocked).update(review_state=ReviewState.BLOCKED)
        queued = submit(project, text="not yet run", user=editor.user)

        def recent_prompts(client) -> dict[str, list]:
            """Each recent prompt's summary with its badges: [(data-review or data-status, label, count)]."""
            section = text_of(client.get("/create/reverse_text/")).split('<section class="card recent">')[1]
            rows = re.findall(r'<li><a href="\?from=[^"]+"[^>]*>([^<]+)</a>(.*?)</li>', section.split("</section>")[0], re.S)
            return {summary: re.findall(r'<span class="status [^"]*" data-status="\w+"(?: data-review="(\w+)")?[^>]*>'
                                        r'([^<]+?)(?: <span class="count">(\d+)</span>)?</span>', badges)
                    for summary, badges in rows}

        assert recent_prompts(editor) == {
            "not yet run": [("", "Queued", "")], "one take": [("blocked", "Output blocked", "")],
            "two takes": [("pending", "Awaiting review", "1"), ("rejected", "Rejected", "1")]}
        editor.post("/language/", {"language": "zh-hans", "next": "/"})
        assert recent_prompts(editor)["two takes"] == [("pending", "等待审核", "1"), ("rejected", "已拒绝", "1")]
        assert queued.status == JobStatus.QUEUED

    def test_an_evaluation_jobs_answer_is_not_said_to_await_a_review_that_never_comes(self, project, signed_in, submit,
                                                                                       run_job):
        """An evaluation run's jobs open no review item: "Awaiting review" (waits for a reviewer) was never over for
        them, on the jobs list, the job's page and the poll; nor are they the member's recent prompts."""
        owner = signed_in(project, "owner")
        job = submit(project, text="case one", user=owner.user)
        run_job(job)
        Job.objects.filter(pk=job.pk).update(purpose=JobPurpose.EVALUATION)  # as evaluation.services.start_run makes
        own = submit(project, text="my own prompt", user=owner.user)
        cell = status_cell(text_of(owner.get("/jobs/", {"purpose": "evaluation"})), job)  # (listed on asking)
        assert 'data-review="pending"' in cell and ">Evaluation answer</span>" in cell and "Awaiting review" not in cell
        header = text_of(owner.get(f"/jobs/{job.pk}/")).split('id="job-status"')[1].split("</div>")[0]
        assert ">Evaluation answer</span>" in header
        [answer] = owner.get("/jobs/status/", {"ids": str(job.pk)}).json()["jobs"]
        assert "Evaluation answer" in answer["html"] and "Awaiting review" not in answer["html"]
        recent = text_of(owner.get("/create/reverse_text/")).split('<section class="card recent">')[1].split("</section>")[0]
        assert "my own prompt" in recent and "case one" not in recent and own.purpose == JobPurpose.REQUEST
        owner.post("/language/", {"language": "zh-hans", "next": "/jobs/"})
        assert ">评估答案</span>" in status_cell(text_of(owner.get("/jobs/", {"purpose": "all"})), job)

    def test_in_chinese(self, project, signed_in, submit, run_job):
        viewer = signed_in(project, "viewer")
        job = submit(project, text="中文")
        run_job(job)
        viewer.post("/language/", {"language": "zh-hans", "next": "/jobs/"})
        assert ">等待审核</span>" in status_cell(text_of(viewer.get("/jobs/")), job)
        Output.objects.filter(job=job).update(review_state=ReviewState.RELEASED)
        assert ">已发布</span>" in status_cell(text_of(viewer.get("/jobs/")), job)

    def test_a_job_that_ran_without_output_still_says_succeeded(self, project, submit):
        job = submit(project, text="nothing came")
        Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
        with translation.override("en"):
            [badge] = badges(Job.objects.prefetch_related("outputs").get(pk=job.pk))
        assert (badge.status, badge.review_state, badge.label) == ("succeeded", "", "Succeeded")


class TestProgressInWords:
    @pytest.mark.parametrize("detail, words", [
        ({"tokens": 37, "max_new_tokens": 64}, "37 of 64 tokens"),  # the chatbot
        ({"step": 12, "steps": 30}, "12 of 30 steps"),  # the image plugin's diffusion steps
        ({"tokens": 1}, "1 token"),  # the recommender's copy as it is written
        ({"stage": "copy", "copy_done": 3, "copy_total": 8, "round": 1}, "3 of 8 copy variants written"),
        ({"stage": "ranked", "items": 5}, "5 items ranked"),
        ({"step": 4}, "step 4"),
        ({}, ""), ({"tokens": "many"}, ""), ({"tokens": True}, ""), (None, ""),
    ])
    def test_what_plugins_report_is_said_in_words(self, detail, words):
        with translation.override("en"):
            assert progress_words(detail) == words

    def test_a_running_jobs_cell_shows_the_bar_its_percentage_and_its_words(self, project, signed_in, submit):
        viewer = signed_in(project, "viewer")
        job = submit(project, text="long reply")
        Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, progress=37 / 64,
                                             progress_detail={"tokens": 37, "max_new_tokens": 64})
        cell = status_cell(text_of(viewer.get("/jobs/")), job)
        assert '<progress max="1" value="0.578125"></progress>' in cell
        assert '<span class="small muted progress-words">58% · 37 of 64 tokens</span>' in cell
        [answer] = viewer.get("/jobs/status/", {"ids": str(job.pk)}).json()["jobs"]
        assert "58% · 37 of 64 tokens" in answer["html"]  # as the list repaints it every second
        viewer.post("/language/", {"language": "zh-hans", "next": "/jobs/"})
        [answer] = viewer.get("/jobs/status/", {"ids": str(job.pk)}).json()["jobs"]
        assert "58% · 37 / 64 个词元" in answer["html"]


class TestReviewLease:
    def test_the_queue_offers_to_extend_the_lease_in_the_bar_and_in_the_editor(self, project, signed_in):
        page = text_of(signed_in(project, "reviewer").get("/review/"))
        assert '<button type="button" id="lease-extend" class="extend-lease" hidden' in page
        editor = page.split('id="editor"')[1]
        assert 'id="edit-lease"' in editor and '<button type="button" id="edit-extend" class="extend-lease">Extend lease</button>' in editor


class TestRefusedSettingsForms:
    def test_a_refused_policy_shows_its_errors_in_its_section_with_the_field_marked(self, project, signed_in):
        owner = signed_in(project, "owner")
        response = owner.post("/settings/", {"action": "policy", "review_mode": "review_before_release",
                                             "audit_sample_percent": "5", "lease_seconds": "600",
                                             "reject_reasons": "Bad Reason"})
        page = text_of(response)
        assert response.status_code == 400
        section = page.split('<section class="card" id="policy" data-refused>')[1].split("</section>")[0]
        assert re.search(r'<div class="error-box" role="alert" id="form-errors">.*Reject reasons \(comma-separated\): Give reasons',
                         section, re.S)
        assert re.search(r'<input type="text" id="reject_reasons" name="reject_reasons" value="Bad Reason" aria-invalid="true">'
                         r'<p class="field-error">Give reasons as lowercase words', section)  # the error beside its field too
        assert page.count('aria-invalid="true"') == 1 and page.count('id="form-errors"') == 1

    def test_a_refused_threshold_marks_both_inputs_of_its_category(self, project, signed_in):
        owner = signed_in(project, "owner")
        response = owner.post("/settings/", {"action": "policy", "review_mode": "review_before_release",
                                             "audit_sample_percent": "5", "lease_seconds": "600", "reject_reasons": "off_brand",
                                             "review:violence": "0.9", "block:violence": "0.2"})
        page = text_of(response)
        assert re.findall(r'name="(\w+:\w+)" value="[^"]*" aria-label="[^"]*" aria-invalid="true"', page) == [
            "review:violence", "block:violence"]
        assert re.search(r'name="block:violence"[^>]*></td></tr><tr class="threshold-error"><td colspan="3">'
                         r'<p class="field-error">Violence: need 0 &lt;= review', page)  # under the category's row

    def test_a_refused_member_form_says_so_in_the_members_section(self, project, signed_in):
        page = text_of(signed_in(project, "owner").post("/settings/", {"action": "add_member", "username": "nobody",
                                                                        "role": "editor"}))
        section = page.split('<section class="card" id="members" data-refused>')[1].split("</section>")[0]
        assert "No account “nobody” that you can add directly" in section and "Invite them by e-mail below" in section


class TestJsonFieldsShowTheirShape:
    def test_examples_follow_the_schema(self):
        root = {"$defs": {"Item": {"type": "object", "required": ["id", "title"],
                                   "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "price": {"type": "number"}}}}}
        assert example_of({"type": "array", "items": {"$ref": "#/$defs/Item"}}, root) == [{"id": "…", "title": "…"}]
        assert example_of({"type": "array", "items": {"type": "string"}}, root) == ["…"]
        assert example_of({"type": "object", "properties": {"a": {"type": "integer", "minimum": 2}, "b": {"type": "boolean"},
                                                            "c": {"type": "string"}}}, root) == {"a": 2, "b": True}
        assert example_of({"type": "object", "additionalProperties": {"type": "string"}}, root) == {"…": "…"}
        assert example_of({"type": "array", "examples": [["stop"]]}, root) == ["stop"]
        assert example_of({"anyOf": [{"type": "null"}, {"type": "array", "items": {"enum": ["a", "b"]}}]}, root) == ["a"]

    def test_the_request_form_shows_an_example_under_each_json_field(self, project, signed_in, empty_plugin_registry):
        from atelier_plugins.chatbot.plugin import ChatbotPlugin
        from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

        for plugin in (ChatbotPlugin, RecommenderCopyPlugin):
            empty_plugin_registry.register(plugin)
            set_plugin_enabled(project, plugin.manifest.id, True)
        editor = signed_in(project, "editor")
        page = text_of(editor.get("/create/recommender_copy/"))
        items = page.split('data-field="input.items"')[1].split('data-field=')[0]
        assert 'aria-describedby="f-input-items-hint"' in items
        assert ('<p class="help json-hint" id="f-input-items-hint">JSON, for example: '
                '<code>[{&quot;id&quot;: &quot;…&quot;, &quot;title&quot;: &quot;…&quot;}]</code></p>') in items
        assert "<code>{&quot;interests&quot;: &quot;…&quot;, &quot;recent_items&quot;: [&quot;…&quot;]}</code>" in page
        chat = text_of(editor.get("/create/chatbot/"))
        assert 'id="f-input-messages-history-hint">A JSON list of the earlier messages, oldest first' in chat
        assert 'id="f-params-stop-hint">JSON, for example: <code>[&quot;…&quot;]</code>' in chat
        editor.post("/language/", {"language": "zh-hans", "next": "/create/"})
        assert "JSON 格式，例如：" in text_of(editor.get("/create/recommender_copy/"))
