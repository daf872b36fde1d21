"""What the dashboard shows and refuses where it used to show withheld content, save half a change,
leave a project without an owner, or answer 500 on odd input."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.core.exceptions import ValidationError

from atelier_platform.accounts.models import Membership
from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.conversations.models import Conversation
from atelier_platform.jobs.models import Job, Output, ReviewState
from atelier_platform.moderation import review
from atelier_platform.moderation.models import AuditEvent, ReviewItem
from atelier_platform.moderation.screening import policy_for
from tests.api.helpers import build_job, build_output

pytestmark = pytest.mark.django_db


def text_of(response) -> str:
    return response.content.decode()


def reject(job):
    reviewer = review.Reviewer(actor="user:999")
    item = ReviewItem.objects.get(output__job=job)
    review.decide(review.claim(item, reviewer), reviewer, action="reject", reason=policy_for(job.project).reasons[0])


# --- blocked and rejected outputs are withheld, as the jobs API withholds them ---------------------------

@pytest.mark.parametrize("state,notice", [
    (ReviewState.BLOCKED, "Withheld: blocked by screening."), (ReviewState.REJECTED, "Withheld: rejected by a reviewer.")])
@pytest.mark.parametrize("role", ["viewer", "reviewer", "owner"])
def test_the_job_page_withholds_a_blocked_or_rejected_outputs_content_and_files(project, signed_in, state, notice, role):
    job = build_job(project, plugin="gpu_reverse")
    withheld = build_output(job, content={"text": "WITHHELD-WORDS-123"}, review_state=state, image=True)
    shown = build_output(job, index=1, content={"text": "PENDING-WORDS-456"}, image=True)
    page = text_of(signed_in(project, role).get(f"/jobs/{job.pk}/"))
    assert "WITHHELD-WORDS-123" not in page and notice in page
    assert f'data-withheld="{state}"' in page  # its state and number stay
    assert f"/api/v1/outputs/{withheld.pk}/files/" not in page  # neither its image nor any file of it
    assert "PENDING-WORDS-456" in page and f"/api/v1/outputs/{shown.pk}/files/" in page  # the others as before


def test_a_rejected_outputs_file_is_not_linked_but_the_review_panel_still_shows_its_content(
        project, signed_in, submit, run_job, django_capture_on_commit_callbacks):
    job = submit(project, text="secret recipe", with_file=True)
    run_job(job)
    output = Output.objects.get(job=job)
    assert output.files.exists() and output.content["text"] == "epicer terces"
    with django_capture_on_commit_callbacks(execute=True):
        reject(job)
    reviewer = signed_in(project, "reviewer")
    page = text_of(reviewer.get(f"/jobs/{job.pk}/"))
    assert "epicer terces" not in page and "Withheld: rejected by a reviewer." in page
    assert f"/api/v1/outputs/{output.pk}/files/" not in page
    panel = text_of(reviewer.get(f"/review/items/{output.review.pk}/"))
    assert "epicer terces" in panel  # reviewers read it where they decide


@pytest.mark.parametrize("how,notice", [
    ("rejected", "This reply is withheld: rejected by a reviewer."), ("blocked", "This reply is withheld: blocked by screening.")])
def test_chat_shows_a_notice_instead_of_a_withheld_reply_and_its_sources(
        chat_project, signed_in, run_job, django_capture_on_commit_callbacks, how, notice):
    editor = signed_in(chat_project, "editor")
    editor.post("/chat/", {"message": "say something bad"})
    conversation, job = Conversation.objects.get(), Job.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        run_job(job)
    page = text_of(editor.get(f"/chat/{conversation.pk}/"))
    assert "Turn 1: you said" in page and "Returns policy" in page  # pending: a draft, as before
    with django_capture_on_commit_callbacks(execute=True):
        if how == "rejected":
            reject(job)
        else:  # as output screening leaves a reply at or above a block threshold
            Output.objects.filter(job=job).update(review_state=ReviewState.BLOCKED)
    page = text_of(editor.get(f"/chat/{conversation.pk}/"))
    assert "Turn 1: you said" not in page and notice in page
    assert "Returns policy" not in page and "faq/returns" not in page
    assert "say something bad" in page  # the person's own message stays


def test_withheld_notices_are_translated(project, signed_in):
    job = build_job(project)
    build_output(job, content={"text": "x"}, review_state=ReviewState.REJECTED)
    viewer = signed_in(project, "viewer")
    viewer.post("/language/", {"language": "zh-hans", "next": "/jobs/"})
    assert "已扣留：被审核员拒绝。" in text_of(viewer.get(f"/jobs/{job.pk}/"))


# --- members: a project keeps its owner -------------------------------------------------------------------

def test_adding_an_existing_member_is_refused_so_the_last_owner_stays(project, signed_in):
    owner = signed_in(project, "owner")
    response = owner.post("/settings/", {"action": "add_member", "username": owner.user.username, "role": "viewer"})
    assert response.status_code == 400
    assert f"{owner.user.username} is already a member: change their role in the list of members." in text_of(response)
    assert Membership.objects.get(project=project, user=owner.user).role == "owner"
    editor = signed_in(project, "editor")
    response = owner.post("/settings/", {"action": "add_member", "username": editor.user.username, "role": "owner"})
    assert response.status_code == 400 and Membership.objects.get(project=project, user=editor.user).role == "editor"
    assert not AuditEvent.objects.filter(project=project, action="member_added").exists()


# --- settings: a refused change saves nothing -----------------------------------------------------------

def test_a_plugin_form_with_an_unknown_model_version_changes_nothing(project, signed_in):
    owner = signed_in(project, "owner")
    pinned = ModelVersion.objects.create(plugin_id="reverse_text", version="v2", model_dir="reverse/v2")
    ProjectPlugin.objects.filter(project=project, plugin_id="reverse_text").update(model_version=pinned)
    # the box unticked (switch off) together with a version that does not exist
    response = owner.post("/settings/", {"action": "plugin", "plugin": "reverse_text", "model_version": "999999"})
    assert response.status_code == 400 and "No such model version for this plugin." in text_of(response)
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    assert (setting.enabled, setting.model_version) == (True, pinned)
    assert not AuditEvent.objects.filter(project=project, action="plugin_configured").exists()


POLICY_FORM = {"action": "policy", "review_mode": "review_before_release", "audit_sample_percent": "10",
               "lease_seconds": "600", "reject_reasons": "off_brand", "forbid_self_approval": "on"}


@pytest.mark.parametrize("lease", ["29", "86401", "999999999", "99999999999999"])
def test_the_policy_form_keeps_the_lease_within_what_the_api_allows(project, signed_in, lease):
    owner = signed_in(project, "owner")
    response = owner.post("/settings/", {**POLICY_FORM, "lease_seconds": lease})
    assert response.status_code == 400 and "From 30 to 86,400 seconds (a day)." in text_of(response)
    assert policy_for(project, fresh=True).lease_seconds == 600
    assert owner.post("/settings/", {**POLICY_FORM, "lease_seconds": "86400"}).status_code == 302
    assert policy_for(project, fresh=True).lease_seconds == 86_400


@pytest.mark.parametrize("lease", [29, 86_401])
def test_the_policy_service_refuses_a_lease_out_of_bounds_whoever_calls_it(project, lease):
    from atelier_platform.moderation import policies

    with pytest.raises(ValidationError) as refused:
        policies.update_policy(project, "user:1", {"lease_seconds": lease})
    assert "lease_seconds" in refused.value.message_dict
    assert policy_for(project, fresh=True).lease_seconds == 600


def test_the_migration_brings_saved_leases_back_within_bounds(project, other_project):
    import importlib

    from django.apps import apps

    from atelier_platform.moderation.models import SafetyPolicy

    migration = importlib.import_module("atelier_platform.moderation.migrations.0003_safetypolicy_lease_seconds_bounds")
    policy_for(project), policy_for(other_project)  # both have a row
    SafetyPolicy.objects.filter(project=project).update(lease_seconds=999_999_999)  # 31 years
    SafetyPolicy.objects.filter(project=other_project).update(lease_seconds=5)
    migration.clamp_saved_leases(apps, None)
    assert policy_for(project, fresh=True).lease_seconds == 86_400
    assert policy_for(other_project, fresh=True).lease_seconds == 30


# --- odd input: a clean 4xx or an ignored filter, never a 500 ------------------------------------------------

@pytest.fixture
def lenient(signed_in):
    """A client whose view exceptions become the 500 a person would get, instead of failing the test there."""
    def make(project, role):
        client = signed_in(project, role)
        client.raise_request_exception = False
        return client

    return make


def test_an_odd_template_id_finds_no_template(project, lenient):
    editor = lenient(project, "editor")  # "²": str.isdigit() is true, int() refuses it
    assert editor.get(f"/create/reverse_text/?template={quote('²')}").status_code == 200
    response = editor.post("/create/reverse_text/", {"delete_template": "²"})
    assert response.status_code == 302 and response["Location"] == "/create/reverse_text/"


@pytest.mark.parametrize("priority", ["²", "١"])  # int() refuses the first and reads the second as 1
def test_an_odd_priority_is_a_form_error(project, lenient, priority):
    response = lenient(project, "editor").post("/create/reverse_text/", {"input.text": "hello", "priority": priority})
    assert response.status_code == 400 and "Priority: choose 0 to 9." in text_of(response)
    assert not Job.objects.exists()


def test_odd_ids_in_settings_forms_name_nothing(project, lenient):
    owner = lenient(project, "owner")
    assert owner.post("/settings/", {"action": "revoke_key", "key": "²"}).status_code == 302
    response = owner.post("/settings/", {"action": "set_role", "member": "²", "role": "viewer"})
    assert response.status_code == 400 and "No such member." in text_of(response)


def test_a_page_number_past_any_list_shows_an_empty_page(project, lenient, submit):
    submit(project)
    viewer = lenient(project, "viewer")
    response = viewer.get("/jobs/?page=99999999999999999999999")
    assert response.status_code == 200 and "data-job=" not in text_of(response)


@pytest.mark.parametrize("history", ["[" * 100_000, "[" * 5_000 + "]" * 5_000])
def test_deeply_nested_earlier_turns_are_a_field_error(project, lenient, empty_plugin_registry, history):
    from tests.support.plugins import EchoChat

    empty_plugin_registry.register(EchoChat)
    set_plugin_enabled(project, "echo_chat", True)
    response = lenient(project, "editor").post("/create/echo_chat/", {
        "input.messages.user": "hi", "input.messages.system": "", "input.messages.history": history, "priority": "5"})
    assert response.status_code == 400 and "Earlier turns: not valid JSON: nested too deeply." in text_of(response)
    assert not Job.objects.exists()


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_poll_since_the_edge_of_time_answers(project, lenient, submit, since):
    job = submit(project)
    answer = lenient(project, "viewer").get(f"/jobs/status/?ids=&since={quote(since)}")
    assert answer.status_code == 200
    new = [row["id"] for row in answer.json()["new"]]
    assert new == ([str(job.pk)] if since.startswith("0001") else [])


@pytest.mark.parametrize("query", ["q=a%00b", "plugin=%00"])
def test_a_nul_in_a_jobs_filter_is_dropped_as_if_never_typed(project, lenient, submit, query):
    """PostgreSQL refuses a NUL in a query parameter: a 500 there (the failure shows on PostgreSQL only)."""
    job = submit(project, text="ab")
    viewer = lenient(project, "viewer")
    assert f'data-job="{job.pk}"' in text_of(viewer.get(f"/jobs/?{query}"))
    polled = viewer.get(f"/jobs/status/?ids=&since=2020-01-01T00:00:00Z&{query}")
    assert [row["id"] for row in polled.json()["new"]] == [str(job.pk)]


def test_a_nul_in_a_project_switch_is_not_found(project, lenient):
    """A 500 on PostgreSQL before (the failure shows there only)."""
    assert lenient(project, "viewer").post("/project/", {"project": "a\x00b"}).status_code == 404


@pytest.mark.parametrize("form", [
    {"action": "add_member", "username": "a\x00b", "role": "viewer"},
    {"action": "plugin", "plugin": "a\x00b"},
    {"action": "create_key", "name": "shop\x00", "scopes": ["jobs:read"]},
    {**POLICY_FORM, "review:spam\x00": "0.5", "block:spam\x00": "0.9"},
])
def test_a_nul_in_a_settings_form_is_refused(project, lenient, form):
    response = lenient(project, "owner").post("/settings/", form)
    assert response.status_code == 400 and "Null characters are not allowed." in text_of(response)


# --- what a refused chat message leaves, and words from the models in Simplified Chinese -----------------

def test_a_refused_chat_message_stays_in_the_box_to_fix(chat_project, signed_in):
    editor = signed_in(chat_project, "editor")
    too_long = "Can I return these shoes? " * 80  # past the plugin's 2,000 characters
    response = editor.post("/chat/", {"message": too_long})
    assert response.status_code == 400 and "at most 2000 characters" in text_of(response)
    assert f">{too_long.strip()}</textarea>" in text_of(response)  # not typed again from memory
    assert not Job.objects.exists()


def in_chinese(client):
    client.post("/language/", {"language": "zh-hans", "next": "/"})
    return client


def test_the_review_modes_are_translated(project, signed_in):
    page = text_of(in_chinese(signed_in(project, "owner")).get("/settings/"))
    assert ">发布前审核</option>" in page and ">筛查后发布，事后抽查</option>" in page


def test_key_scopes_and_webhook_delivery_statuses_are_translated(project, signed_in):
    from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint

    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/a", secret="s")
    for number, status in enumerate(("pending", "succeeded")):
        WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id=f"e{number}", payload={},
                                       status=status, max_attempts=3)
    page = text_of(in_chinese(signed_in(project, "owner")).get("/settings/"))
    assert '<span class="muted small">读取任务、输出和插件</span>' in page and "Read jobs, outputs and plugins" not in page
    assert '<span class="status s-pending">等待中</span>' in page
    assert ">pending</span>" not in page and ">succeeded</span>" not in page


def test_review_decisions_are_translated_on_the_job_page_and_in_the_review_panel(
        project, signed_in, submit, run_job, django_capture_on_commit_callbacks):
    job = submit(project, text="say it again")
    run_job(job)
    with django_capture_on_commit_callbacks(execute=True):
        reject(job)
    reviewer = in_chinese(signed_in(project, "reviewer"))
    item = ReviewItem.objects.get(output__job=job)
    for page in (text_of(reviewer.get(f"/jobs/{job.pk}/")), text_of(reviewer.get(f"/review/items/{item.pk}/"))):
        assert '<p class="decision muted small">拒绝 — ' in page


def test_recent_prompts_show_their_status_translated(project, signed_in, submit):
    editor = in_chinese(signed_in(project, "editor"))
    submit(project, text="a prompt to reuse", user=editor.user)
    page = text_of(editor.get("/create/reverse_text/"))
    assert '<span class="status s-queued" data-status="queued">排队中</span>' in page


def test_a_blocked_inputs_timeline_is_translated(project, signed_in):
    from atelier_platform.moderation.checks import replace_safety_checks
    from tests.support.safety import WordCheck

    replace_safety_checks([WordCheck()])
    editor = in_chinese(signed_in(project, "editor"))
    assert editor.post("/create/reverse_text/", {"input.text": "a violent plan", "priority": "5"}).status_code == 400
    page = text_of(editor.get(f"/jobs/{Job.objects.get().pk}/"))
    assert '<span class="what">输入已拦截</span>' in page


# --- a job's summary in the lists is what a person wrote ------------------------------------------------

def job_with_input(project, plugin, input):  # noqa: A002 (the job's field)
    job = build_job(project, plugin=plugin)
    Job.objects.filter(pk=job.pk).update(input=input)
    return job


def test_a_chat_jobs_summary_shows_the_messages_not_their_roles_nor_the_conversation_id(chat_project, signed_in):
    conversation_id = "0b7f3c52-8d1e-4c7a-9a55-2f4b1e6d9c10"
    job_with_input(chat_project, "turn_counter", {
        "messages": [{"role": "user", "content": "Where is my parcel?"},
                     {"role": "assistant", "content": "It left yesterday."},
                     {"role": "user", "content": "When will it arrive?"}],
        "conversation_id": conversation_id})
    page = text_of(signed_in(chat_project, "viewer").get("/jobs/"))
    assert "Where is my parcel? · It left yesterday. · When will it arrive?" in page
    assert conversation_id not in page and "user ·" not in page


def test_a_summary_keeps_every_text_of_a_plugin_no_longer_installed(project, signed_in):
    job_with_input(project, "gone_plugin", {"role": "user", "note": "kept as written"})
    page = text_of(signed_in(project, "viewer").get("/jobs/"))
    # in the order the database keeps the keys (PostgreSQL's jsonb sorts them)
    assert "user · kept as written" in page or "kept as written · user" in page


# --- a Chinese page in Chinese throughout: the language menu, dates, field names, form errors ----------------

def test_the_language_menu_names_each_language_in_itself(project, signed_in):
    """On a Chinese page "English" read 英语: someone who cannot read Chinese could not find their language."""
    page = text_of(in_chinese(signed_in(project, "editor")).get("/jobs/"))
    assert '<option value="en" lang="en" >English</option>' in page
    assert '<option value="zh-hans" lang="zh-hans" selected>简体中文</option>' in page


def test_dates_read_as_dates_do_in_chinese(project, signed_in, submit):
    """Not 三月 7, 09:05:02 (an English pattern with Chinese month names)."""
    import datetime
    from unittest import mock

    owner = signed_in(project, "owner")
    job = submit(project, text="a dated prompt", user=owner.user)
    march = datetime.datetime(2026, 3, 7, 9, 5, 2, tzinfo=datetime.timezone.utc)
    Job.objects.filter(pk=job.pk).update(created_at=march)
    with mock.patch("django.utils.timezone.now", return_value=march):  # the audit log's rows cannot be changed later
        AuditEvent.objects.create(project=project, actor=f"user:{owner.user.pk}", action="policy_changed",
                                  object_type="policy", object_id="1")
    assert ">Mar 7, 09:05:02</td>" in text_of(owner.get("/jobs/"))
    in_chinese(owner)
    assert ">3月7日 09:05:02</td>" in text_of(owner.get("/jobs/"))
    assert ">3月7日 09:05:02</span>" in text_of(owner.get(f"/jobs/{job.pk}/"))  # the timeline
    assert ">3月7日 09:05:02</td>" in text_of(owner.get("/settings/"))  # the audit log


def test_controls_are_named_for_what_they_do_in_the_pages_language(project, signed_in):
    from atelier_frontend.models import PromptTemplate

    owner = in_chinese(signed_in(project, "owner"))
    page = text_of(owner.get("/settings/"))
    assert 'aria-label="暴力: 送审阈值"' in page and 'aria-label="暴力: 拦截阈值"' in page  # not "violence review"
    PromptTemplate.objects.create(project=project, plugin_id="reverse_text", name="spring launch", input={"text": "x"},
                                  params={}, priority=5)
    page = text_of(owner.get("/create/reverse_text/"))
    assert 'aria-label="删除模板“spring launch”">×</button>' in page  # a screen reader said "times, button"


def test_form_errors_on_a_chinese_page_are_in_chinese_and_on_their_fields(project, signed_in):
    from atelier_platform.moderation.checks import replace_safety_checks
    from tests.support.safety import WordCheck

    editor = in_chinese(signed_in(project, "editor"))
    response = editor.post("/create/reverse_text/", {"input.text": "", "input.copies": "9", "priority": "5"})
    assert response.status_code == 400
    assert "请修改下方标出的字段。" in text_of(response) and "does not match the plugin" not in text_of(response)

    replace_safety_checks([WordCheck()])
    response = editor.post("/create/reverse_text/", {"input.text": "a violent plan", "priority": "5"})
    page = text_of(response)
    assert response.status_code == 400 and "此请求被项目的安全策略拦截（暴力）" in page
    assert "fields: input.text" not in page and "categories:" not in page  # the service's details, as they were shown
    assert '<div class="field kind-textarea has-error" data-field="input.text">' in page
    assert "已被安全筛查拦截：请改写此处内容。" in page
    assert not Job.objects.filter(status="queued").exists()


def test_a_refused_settings_form_keeps_what_was_typed_and_names_the_field_as_the_form_does(project, signed_in):
    """A refused policy came back as stored (the owner's other changes gone) and named ``reject_reasons``; a
    blocklist with one bad line among many came back empty, its error naming ``terms.1.pattern``."""
    from atelier_platform.moderation.models import BlocklistEntry

    owner = in_chinese(signed_in(project, "owner"))
    response = owner.post("/settings/", {
        "action": "policy", "review_mode": "release_after_screening", "audit_sample_percent": "25", "lease_seconds": "900",
        "reject_reasons": "off_brand, Too Long", "mask_personal_data": "on", "review:violence": "0.4", "block:violence": "0.8"})
    page = text_of(response)
    assert response.status_code == 400 and "拒绝原因（逗号分隔）: " in page and "reject_reasons:" not in page
    assert 'value="off_brand, Too Long"' in page and 'name="audit_sample_percent" min="0" max="100" value="25"' in page
    assert '<option value="release_after_screening" selected>' in page and 'name="review:violence" value="0.4"' in page
    assert 'name="mask_personal_data" checked' in page
    assert policy_for(project, fresh=True).audit_sample_percent != 25  # nothing of it saved

    terms = "spam offer\n\n([unclosed\nfree money"
    response = owner.post("/settings/", {"action": "blocklist", "terms": terms, "category": "spam", "is_regex": "on"})
    page = text_of(response)
    assert response.status_code == 400 and "第 3 行: " in page and "terms.1.pattern" not in page
    assert f'name="terms" rows="5" class="mono" aria-invalid="true">{terms}</textarea>' in page
    assert '<option value="spam" selected>垃圾内容或不符合品牌</option>' in page and 'name="is_regex" checked' in page
    assert not BlocklistEntry.objects.exists()


# --- which worker ran a job: its label for owners, as the workers page gives it; nothing for other members ------

@pytest.mark.parametrize("role,shown", [("viewer", False), ("editor", False), ("reviewer", False), ("owner", True)])
def test_the_job_page_names_the_worker_to_owners_only(project, signed_in, role, shown):
    """The timeline's "started" named the worker (its host and process id by default) to every member. Its host is
    the operators' (Django staff) alone now: an owner sees the label the workers page gives it."""
    from django.utils import timezone

    from atelier_platform.fleet.services import worker_label

    job = build_job(project, worker="gpu-host-7:4242")
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now())
    page = text_of(signed_in(project, role).get(f"/jobs/{job.pk}/"))
    assert "gpu-host-7:4242" not in page
    assert (worker_label("gpu-host-7:4242") in page) is shown


def test_a_jobs_timeline_shows_no_audit_event_of_another_object_that_shares_an_id(project, signed_in, submit, run_job):
    """Audit events were matched by id alone: an owner's "member added" (a membership's id) showed on the timeline
    of every job whose review item had the same number, to every member."""
    from atelier_platform.moderation import audit
    from atelier_platform.moderation.models import ReviewItem

    editor = signed_in(project, "editor")
    job = submit(project, text="hello", user=editor.user)
    run_job(job)
    item = ReviewItem.objects.get(output__job=job)

    class Membership:  # an object of another type with the review item's number, as audit.record names it
        pk = item.pk

    audit.record(project, "user:1", "member_added", Membership())
    page = text_of(editor.get(f"/jobs/{job.pk}/")).lower()
    assert '<span class="what">output screened</span>' in page  # the job's own events are there
    assert "member added" not in page
