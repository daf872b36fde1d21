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


# --- the audit log ----------------------------------------------------------------------------------------------

def approve(job, reviewer_user):
    from atelier_platform.moderation import review
    from atelier_platform.moderation.models import ReviewItem

    reviewer = review.Reviewer(actor=f"user:{reviewer_user.pk}")
    item = ReviewItem.objects.get(output__job=job)
    review.decide(review.claim(item, reviewer), reviewer, action="approve")


def audit_rows(page: str) -> list[tuple[str, str, str]]:
    """(action code, who, the object cell's text) of each row of the settings page's audit log."""
    rows = re.findall(r'<tr data-action="([a-z_]+)"><td[^>]*>[^<]*</td><td title="[^"]*">([^<]*)</td><td>[^<]*</td>'
                      r'<td>(.*?)</td></tr>', page, re.S)
    return [(action, who, re.sub(r"<[^>]+>", " ", cell)) for action, who, cell in rows]


def test_an_owner_finds_who_approved_a_jobs_output_and_exports_just_that(project, signed_in, submit, run_job, member):
    owner = signed_in(project, "owner")
    editor, bob, eve = member(project, "editor"), member(project, "reviewer"), member(project, "reviewer")
    wanted, other = submit(project, user=editor), submit(project, user=editor)
    run_job(wanted)
    run_job(other)
    approve(wanted, bob)
    approve(other, eve)

    page = text_of(owner.get(f"/settings/?audit_object={wanted.pk}"))
    rows = audit_rows(page)
    # the job's id (its page's address) finds its output's screening, lease and decision, and nothing of the other
    assert {action for action, _who, _cell in rows} == {"output_screened", "lease_claimed", "review_approve"}
    assert ("review_approve", bob.username) in [(action, who) for action, who, _cell in rows]
    assert eve.username not in [who for _action, who, _cell in rows]
    approval = next(cell for action, _who, cell in rows if action == "review_approve")
    assert "review_state: pending → approved" in approval and f'href="/jobs/{wanted.pk}/"' in page
    assert "comment" not in approval  # none was given: not "comment: –"

    # by whom and what, as the selects offer them: the same approval
    page = text_of(owner.get(f"/settings/?audit_actor=user:{bob.pk}&audit_action=review_approve"))
    assert [(action, who) for action, who, _cell in audit_rows(page)] == [("review_approve", bob.username)]

    # the export link carries the search, and exports what the page found
    page = text_of(owner.get(f"/settings/?audit_object={wanted.pk}&audit_action=review_approve"))
    link = re.search(r'<a href="(/api/v1/audit/\?export=csv&[^"]+)" id="export-csv"', page)[1]
    export = b"".join(owner.get(link).streaming_content).decode().splitlines()
    assert len(export) == 2 and f"user:{bob.pk},review_approve,output" in export[1]


def test_the_audit_log_pages_back_and_names_the_member_a_change_was_about(project, signed_in, member):
    from atelier_platform.moderation import audit

    owner = signed_in(project, "owner")
    dave = member(project, "editor")
    owner.post("/settings/", {"action": "set_role", "member": dave.memberships.get().pk, "role": "viewer"})
    owner.post("/settings/", {"action": "remove_member", "member": dave.memberships.get().pk})
    rows = audit_rows(text_of(owner.get("/settings/")))
    assert f"user: {dave.username} · role: editor → viewer" in next(cell for a, _w, cell in rows if a == "member_role_changed")
    removed = next(cell for a, _w, cell in rows if a == "member_removed")
    assert f"user: {dave.username}" in removed and "role: viewer" in removed

    for n in range(60):
        audit.record(project, "screening", "output_screened", project, after={"n": n})
    page = text_of(owner.get("/settings/?audit_action=output_screened"))
    assert [cell.strip() for _a, _w, cell in audit_rows(page)][0].endswith("n: 59")
    older = re.search(r'<a href="\?([^"]+)#audit" id="audit-older"', page)[1]
    page = text_of(owner.get(f"/settings/?{older.replace('&amp;', '&')}"))
    cells = [cell.strip() for _a, _w, cell in audit_rows(page)]
    assert len(cells) == 10 and cells[0].endswith("n: 9") and cells[-1].endswith("n: 0")
    assert 'id="audit-older"' not in page
    # links nobody was given: the page as it is, never a 500
    assert owner.get("/settings/?audit_before=99999999999999999999999").status_code == 200
    assert "Dates as 2026-12-01." in text_of(owner.get("/settings/?audit_from=yesterday"))
    assert owner.get("/settings/?audit_to=9999-12-31").status_code == 200


def test_the_audit_search_offers_whoever_acted_and_whatever_was_done_however_long_ago(project, signed_in,
                                                                                      member):
    from atelier_platform.moderation import audit

    owner = signed_in(project, "owner")
    for n in range(201):  # more events than the selects list choices
        audit.record(project, "screening", "output_screened", project, after={"n": n})
    carol = member(project, "reviewer")
    audit.record(project, f"user:{carol.pk}", "review_reject", project)
    page = text_of(owner.get("/settings/"))
    who = re.search(r'<select name="audit_actor".*?</select>', page, re.S)[0]
    what = re.search(r'<select name="audit_action".*?</select>', page, re.S)[0]
    assert f'<option value="user:{carol.pk}" >{carol.username}</option>' in who
    assert '<option value="review_reject" >' in what
    assert who.count('<option value="screening"') == 1 and what.count('<option value="output_screened"') == 1


def test_the_audit_api_filters_by_actor_object_and_time(project, client_for, make_key, submit, run_job, member):
    api = client_for(make_key(project, ["admin"]).raw)
    bob = member(project, "reviewer")
    job = submit(project, user=member(project, "editor"))
    run_job(job)
    approve(job, bob)
    answer = api.get("/api/v1/audit/", {"actor": f"user:{bob.pk}", "object_id": str(job.pk), "created_after": "2000-01-01"})
    assert [row["action"] for row in answer.json()["results"]] == ["lease_claimed", "review_approve"]
    assert api.get("/api/v1/audit/", {"created_before": "2000-01-01"}).json()["results"] == []
    # an offset PostgreSQL would refuse (beyond ±15:59) is read in UTC; one past year 1 is refused, never a 500
    found = api.get("/api/v1/audit/", {"created_after": "2000-01-01T23:44:39-23:32", "action": "review_approve"})
    assert [row["action"] for row in found.json()["results"]] == ["review_approve"]
    assert api.get("/api/v1/audit/", {"created_before": "0001-01-01T00:00:00+10:00"}).status_code == 400
    refused = api.get("/api/v1/audit/", {"created_after": "yesterday"})
    assert refused.status_code == 400 and "created_after" in refused.json()["error"]["details"]


# --- changes that say what they changed --------------------------------------------------------------------

def notice_after(client, form) -> str:
    """The notice the settings page shows after ``form`` is posted (and its redirect followed)."""
    page = text_of(client.post("/settings/", form, follow=True))
    found = re.search(r'<p class="notice" role="status">([^<]*)</p>', page)
    return found[1] if found else ""


def test_member_changes_say_who_and_what_and_an_owner_who_gives_up_ownership_lands_outside(project, signed_in, member):
    from django.contrib.auth import get_user_model

    from tests.factories import UserFactory, colleagues

    owner = signed_in(project, "owner")
    carol = UserFactory()
    elsewhere = colleagues(owner.user, carol)  # added by username: someone the owner works with already
    assert notice_after(owner, {"action": "add_member", "username": carol.username, "role": "viewer"}) == \
        f"{carol.username} added as viewer."
    elsewhere.delete()
    membership = get_user_model().objects.get(pk=carol.pk).memberships.get()
    assert notice_after(owner, {"action": "set_role", "member": membership.pk, "role": "reviewer"}) == \
        f"{carol.username} is now reviewer (was viewer)."
    assert notice_after(owner, {"action": "set_role", "member": membership.pk, "role": "reviewer"}) == \
        f"{carol.username} is already reviewer: nothing changed."
    assert notice_after(in_chinese(owner), {"action": "remove_member", "member": membership.pk}).startswith(
        f"已将 {carol.username} 移出项目")

    # the form of one's own role asks first; giving ownership away leads out of settings, not to a 403
    page = text_of(owner.get("/settings/"))
    own = re.search(rf'<tr data-member="{owner.user.username}">.*?</tr>', page, re.S)[0]
    assert 'data-confirm="要更改您自己的角色吗？' in own  # the client reads Chinese since the removal
    member(project, "owner")
    mine = owner.user.memberships.get()
    response = owner.post("/settings/", {"action": "set_role", "member": mine.pk, "role": "editor"}, follow=True)
    assert response.status_code == 200 and response.redirect_chain[0][0] == "/"


def test_pinning_a_model_version_says_what_new_jobs_use_and_what_they_used(project, signed_in):
    from atelier_platform.catalog.models import ModelVersion

    owner = signed_in(project, "owner")
    v2 = ModelVersion.objects.create(plugin_id="reverse_text", version="v2", model_dir="reverse/v2")
    page = text_of(owner.get("/settings/"))
    assert re.search(rf'<option value="{v2.pk}" >v2 · reverse/v2 · [A-Z][a-z]{{2}} \d+, \d\d:\d\d</option>', page)
    pin = {"action": "plugin", "plugin": "reverse_text", "enabled": "on"}
    assert notice_after(owner, {**pin, "model_version": v2.pk}) == (
        "Reverse text: jobs that start from now on use model version v2 (reverse/v2) (was the plugin's default model), "
        "those already queued too; a running job finishes on its own.")
    assert notice_after(owner, {**pin, "model_version": ""}).startswith(
        "Reverse text: jobs that start from now on use the plugin's default model (was model version v2 (reverse/v2))")
    assert notice_after(owner, {"action": "plugin", "plugin": "reverse_text", "model_version": ""}) == (
        "Reverse text switched off: requests for it are refused until it is switched on again.")


def test_an_owner_sends_a_failed_delivery_again_from_the_delivery_log(project, other_project, signed_in):
    from atelier_platform.moderation.models import AuditEvent
    from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint

    owner = signed_in(project, "owner")
    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/atelier", secret="s")
    failed = WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id="e1", payload={},
                                            status="failed", attempts=3, max_attempts=3, last_error="HTTP 500")
    waiting = WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.failed", event_id="e2", payload={},
                                             max_attempts=3)
    page = text_of(owner.get("/settings/"))
    assert page.count('class="link retry-delivery"') == 1  # the failed one; the waiting one is retried by itself

    assert notice_after(owner, {"action": "webhook_retry", "delivery": str(failed.pk)}) == (
        "job.succeeded queued again for https://hooks.example.com/atelier: its state below changes once it is sent.")
    failed.refresh_from_db()
    assert (failed.status, failed.max_attempts) == ("pending", 4)
    assert AuditEvent.objects.filter(action="webhook_delivery_retried", object_id=str(failed.pk)).exists()

    refused = owner.post("/settings/", {"action": "webhook_retry", "delivery": str(waiting.pk)})
    assert refused.status_code == 400 and "still waiting for an attempt" in text_of(refused)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    WebhookDelivery.objects.filter(pk=failed.pk).update(status="failed")
    refused = text_of(owner.post("/settings/", {"action": "webhook_retry", "delivery": str(failed.pk)}))
    assert "The endpoint is disabled: tick “enabled” in its Edit form" in refused
    # another project's delivery, or no id: refused, nothing sent
    theirs = WebhookDelivery.objects.create(
        endpoint=WebhookEndpoint.objects.create(project=other_project, url="https://93.184.216.34/x", secret="s"),
        event_type="job.succeeded", event_id="e3", payload={}, status="failed", attempts=1, max_attempts=1)
    for value in (str(theirs.pk), "nope", ""):
        assert owner.post("/settings/", {"action": "webhook_retry", "delivery": value}).status_code == 400
    theirs.refresh_from_db()
    assert theirs.status == "failed"


def test_the_key_list_says_who_made_each_key_when_and_how_fast_it_may_go(project, signed_in, client_for):
    from atelier_platform.accounts.models import ApiKey

    owner = signed_in(project, "owner")
    notice_after(owner, {"action": "create_key", "name": "old script", "scopes": ["jobs:read"]})
    notice_after(owner, {"action": "create_key", "name": "CRM sync", "scopes": ["jobs:read"], "rate_limit_per_minute": "30"})
    crm = ApiKey.objects.get(name="CRM sync")
    assert crm.rate_limit_per_minute == 30 and crm.created_by == owner.user
    owner.post("/settings/", {"action": "revoke_key", "key": ApiKey.objects.get(name="old script").pk})
    notice_after(owner, {"action": "create_key", "name": "newest", "scopes": ["jobs:read"]})

    page = text_of(owner.get("/settings/"))
    rows = re.findall(r'<tr class="(revoked|)" data-key="([0-9a-f]+)"><td class="key-name">([^<]*?)\s*<.*?class="small key-rate">([^<]*)</td>'
                      r'\s*<td class="small key-created">([^<]*)</td>', page, re.S)
    # the active keys first, newest first; the revoked one last, saying when
    assert [(state, name, rate.strip()) for state, _prefix, name, rate, _created in rows] == [
        ("", "newest", "600 (the server's)"), ("", "CRM sync", "30"), ("revoked", "old script", "600 (the server's)")]
    assert all(created.endswith(f" · {owner.user.username}") for *_rest, created in rows)
    assert re.search(r"revoked [A-Z][a-z]{2} \d+, \d\d:\d\d", page)

    # a limit above the server's is refused with what is allowed, the name typed kept
    refused = owner.post("/settings/", {"action": "create_key", "name": "greedy", "scopes": ["jobs:read"],
                                        "rate_limit_per_minute": "601"})
    assert refused.status_code == 400 and "a whole number from 1 to 600" in text_of(refused)
    assert 'value="greedy"' in text_of(refused) and not ApiKey.objects.filter(name="greedy").exists()


def test_without_a_server_limit_a_keys_limit_too_large_to_keep_is_refused_in_words(project, signed_in, atelier_config):
    from atelier_platform.accounts.models import ApiKey

    atelier_config(rate_limit_per_minute=0)
    owner = signed_in(project, "owner")
    refused = owner.post("/settings/", {"action": "create_key", "name": "huge", "scopes": ["jobs:read"],
                                        "rate_limit_per_minute": "99999999999"})
    assert refused.status_code == 400
    assert "a whole number from 1 to 2147483647, or empty for no limit" in text_of(refused)
    assert not ApiKey.objects.filter(name="huge").exists()
    chinese = in_chinese(owner).post("/settings/", {"action": "create_key", "name": "huge", "scopes": ["jobs:read"],
                                                    "rate_limit_per_minute": "2147483648"})
    assert "每分钟请求数：1 到 2147483647 之间的整数，或留空表示不限。" in text_of(chinese)
    notice_after(owner, {"action": "create_key", "name": "fast", "scopes": ["jobs:read"],
                         "rate_limit_per_minute": "2147483647"})
    assert ApiKey.objects.get(name="fast").rate_limit_per_minute == 2147483647
