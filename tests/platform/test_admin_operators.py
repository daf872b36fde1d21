"""The Django admin as an operator meets it: no user deleted who is the last owner of a project, projects
renamed and jobs deleted on the audit log like every other admin change, and a project's safety policy and
blocklist fixed there with the API's checks, audited; a staff user who may only view changes nothing."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, transaction

from atelier_platform.accounts.models import Membership, Project
from atelier_platform.accounts.roles import Role
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.moderation import policies
from atelier_platform.moderation.models import AuditEvent, BlocklistEntry, SafetyPolicy
from atelier_platform.moderation.screening import policy_for
from tests.api.helpers import build_job, build_output
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

User = get_user_model()


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


@pytest.fixture
def viewer_client(client):
    """A staff user who may view every model of the admin and change none."""

    def login(*models: str):
        viewer = UserFactory(is_staff=True)
        viewer.user_permissions.add(*Permission.objects.filter(codename__in=[f"view_{model}" for model in models]))
        client.force_login(viewer)
        return client

    return login


# --- deleting a user who is the last owner of a project ---------------------------------------------------------

def test_deleting_a_projects_last_owner_is_refused_naming_the_project(admin_client, project):
    """The project was left with its members and jobs and nobody to manage its keys, members and settings."""
    owner = MembershipFactory(project=project, role=Role.OWNER).user
    MembershipFactory(project=project, role=Role.EDITOR)
    build_job(project)
    page = admin_client.get(f"/admin/auth/user/{owner.pk}/delete/").content.decode()
    assert f"A project keeps at least one owner: make someone else owner of {project.slug} first." in page
    response = admin_client.post(f"/admin/auth/user/{owner.pk}/delete/", {"post": "yes"})
    assert response.status_code == 200 and f"make someone else owner of {project.slug} first" in response.content.decode()
    assert User.objects.filter(pk=owner.pk).exists()
    assert Membership.objects.filter(project=project, user=owner, role=Role.OWNER).exists()
    assert not events("member_removed")


def test_a_bulk_deletion_that_takes_a_projects_every_owner_is_refused_naming_those_projects(admin_client, project,
                                                                                           other_project):
    alone = MembershipFactory(project=project, role=Role.OWNER).user  # the only owner of project
    first, second = (MembershipFactory(project=other_project, role=Role.OWNER).user for _ in range(2))
    MembershipFactory(project=project, user=first, role=Role.EDITOR)
    for chosen, refused in (([alone, first], project), ([first, second], other_project)):
        response = admin_client.post("/admin/auth/user/", {"action": "delete_selected", "post": "yes",
                                                           "_selected_action": [user.pk for user in chosen]})
        page = response.content.decode()
        assert response.status_code == 200 and f"make someone else owner of {refused.slug} first" in page
        assert set(User.objects.filter(pk__in=[user.pk for user in chosen]).values_list("pk", flat=True)) == {
            user.pk for user in chosen}
    assert not events("member_removed")
    # an owner with another owner beside them may go, alone or with users who own nothing
    response = admin_client.post("/admin/auth/user/", {"action": "delete_selected", "post": "yes",
                                                       "_selected_action": [first.pk]})
    assert response.status_code == 302 and not User.objects.filter(pk=first.pk).exists()
    assert list(Membership.objects.filter(project=other_project, role=Role.OWNER).values_list("user", flat=True)) == [
        second.pk]
    assert {event.project_id for event in events("member_removed")} == {project.pk, other_project.pk}


def test_a_staff_user_who_may_only_view_users_deletes_none(viewer_client, project):
    owner = MembershipFactory(project=project, role=Role.OWNER).user
    other = UserFactory()
    client = viewer_client("user")
    assert client.get("/admin/auth/user/").status_code == 200
    assert client.post(f"/admin/auth/user/{other.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post("/admin/auth/user/", {"action": "delete_selected", "post": "yes", "_selected_action": [owner.pk, other.pk]})
    assert User.objects.filter(pk__in=[owner.pk, other.pk]).count() == 2


# --- renaming a project, deleting jobs ------------------------------------------------------------------------

def project_form(project: Project, **fields) -> dict:
    return {"slug": project.slug, "name": project.name, "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0", "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
            **fields}


def test_renaming_a_project_in_the_admin_is_audited(admin_client, admin_user, project):
    old = {"slug": project.slug, "name": project.name}
    assert admin_client.post(f"/admin/accounts/project/{project.pk}/change/", project_form(project)).status_code == 302
    assert not events("project_renamed")  # saved unchanged: nothing to record
    response = admin_client.post(f"/admin/accounts/project/{project.pk}/change/",
                                 project_form(project, slug="acme-marketing", name="ACME Marketing"))
    assert response.status_code == 302
    (event,) = events("project_renamed")
    assert (event.project_id, event.actor, event.object_id) == (project.pk, f"user:{admin_user.pk}", str(project.pk))
    assert (event.before, event.after) == (old, {"slug": "acme-marketing", "name": "ACME Marketing"})


def test_deleting_jobs_in_the_admin_is_audited_without_their_content(admin_client, admin_user, project, other_project):
    one = build_job(project, status=JobStatus.QUEUED)
    build_output(one)
    two = build_job(project, status=JobStatus.SUCCEEDED)
    three = build_job(other_project, status=JobStatus.FAILED)
    assert admin_client.post(f"/admin/jobs/job/{one.pk}/delete/", {"post": "yes"}).status_code == 302
    response = admin_client.post("/admin/jobs/job/", {"action": "delete_selected", "post": "yes",
                                                      "_selected_action": [str(two.pk), str(three.pk)]})
    assert response.status_code == 302 and not Job.objects.exists()
    deleted = {event.object_id: (event.project_id, event.actor, event.before, event.after)
               for event in events("job_deleted")}
    actor = f"user:{admin_user.pk}"
    assert deleted == {
        str(one.pk): (project.pk, actor, {"plugin": one.plugin_id, "status": "queued"}, None),
        str(two.pk): (project.pk, actor, {"plugin": two.plugin_id, "status": "succeeded"}, None),
        str(three.pk): (other_project.pk, actor, {"plugin": three.plugin_id, "status": "failed"}, None),
    }  # nothing of their input or outputs


def test_a_staff_user_who_may_only_view_renames_no_project_and_deletes_no_job(viewer_client, project):
    job = build_job(project)
    client = viewer_client("project", "job")
    assert client.get(f"/admin/accounts/project/{project.pk}/change/").status_code == 200
    assert client.post(f"/admin/accounts/project/{project.pk}/change/",
                       project_form(project, name="Taken over")).status_code == 403
    assert client.post(f"/admin/jobs/job/{job.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post("/admin/jobs/job/", {"action": "delete_selected", "post": "yes", "_selected_action": [str(job.pk)]})
    project.refresh_from_db()
    assert project.name != "Taken over" and Job.objects.filter(pk=job.pk).exists() and not AuditEvent.objects.exists()


# --- the safety policy -------------------------------------------------------------------------------------------

def policy_form(policy: SafetyPolicy, **fields) -> dict:
    """The policy's change form as the page shows it, with ``fields`` changed (the JSON fields, whose defaults
    are callables, come with a hidden copy of the value the page showed)."""
    import json

    form = {"review_mode": policy.review_mode, "audit_sample_percent": str(policy.audit_sample_percent),
            "thresholds": json.dumps(policy.thresholds), "reject_reasons": json.dumps(policy.reject_reasons),
            "lease_seconds": str(policy.lease_seconds), "forbid_self_approval": "on" if policy.forbid_self_approval else ""}
    form.update({f"initial-{name}": form[name] for name in ("thresholds", "reject_reasons")})
    form.update({name: value for name, value in fields.items()})
    return {name: value for name, value in form.items() if value != ""}  # an unticked box is not posted


def test_an_operator_fixes_a_projects_policy_in_the_admin_audited_as_through_the_api(admin_client, admin_user, project):
    policy = policy_for(project, fresh=True)
    assert admin_client.get("/admin/moderation/safetypolicy/").status_code == 200
    assert admin_client.get(f"/admin/moderation/safetypolicy/{policy.pk}/change/").status_code == 200
    response = admin_client.post(f"/admin/moderation/safetypolicy/{policy.pk}/change/", policy_form(
        policy, review_mode="release_after_screening", audit_sample_percent="25", lease_seconds="900",
        # one value of one category, as the API takes it: the rest keep theirs
        thresholds='{"hate": {"review": 0.3}}', reject_reasons='["unsafe", "off_brand"]'))
    assert response.status_code == 302
    policy = policy_for(project, fresh=True)
    assert (policy.review_mode, policy.audit_sample_percent, policy.lease_seconds) == ("release_after_screening", 25, 900)
    assert policy.thresholds["hate"] == {"review": 0.3, "block": 0.9}
    assert policy.thresholds["sexual/minors"] == {"review": 0.2, "block": 0.5}
    assert policy.reject_reasons == ["unsafe", "off_brand"]
    (event,) = events("policy_changed")
    assert (event.project_id, event.actor) == (project.pk, f"user:{admin_user.pk}")
    assert (event.before["review_mode"], event.before["audit_sample_percent"], event.before["thresholds"]["hate"]) == (
        "review_before_release", 10, {"review": 0.5, "block": 0.9})
    assert event.after == policies.policy_json(policy)
    # saved again unchanged: nothing written, nothing audited
    assert admin_client.post(f"/admin/moderation/safetypolicy/{policy.pk}/change/",
                             policy_form(policy)).status_code == 302
    assert len(events("policy_changed")) == 1


@pytest.mark.parametrize("fields, message", [
    ({"audit_sample_percent": "101"}, "Ensure this value is less than or equal to 100."),
    ({"thresholds": '{"hate": {"review": 0.95}}'}, "hate: need 0 &lt;= review &lt;= block &lt;= 1"),  # above its block
    ({"thresholds": '{"hate": {"review": 0.6, "block": 0.4}}'}, "hate: give review &lt;= block"),
    ({"thresholds": '{"nudity": {"review": 0.5}}'}, "Unknown categories: nudity."),
    ({"thresholds": '{"hate": {"review": NaN}}'}, "hate: review: A valid number is required."),
    ({"thresholds": '{"hate": {"review": "0.3\\u0000"}}'}, "hate: review: A valid number is required."),
    ({"thresholds": "[1]"}, "Expected a dictionary of items"),
    ({"reject_reasons": '["Not Allowed"]'}, "0: This value does not match the required pattern."),
    ({"reject_reasons": "[]"}, "Ensure this field has at least 1 elements."),
    ({"reject_reasons": '["ok\\u0000"]'}, "This value does not match the required pattern."),
    ({"lease_seconds": "10"}, "Ensure this value is greater than or equal to 30."),
    ({"review_mode": "whenever"}, "Select a valid choice."),
])
def test_a_policy_the_api_refuses_is_a_form_error_in_the_admin(admin_client, project, fields, message):
    policy = policy_for(project, fresh=True)
    policy.reject_reasons = ["unsafe"]
    policy.save()
    stored = policies.policy_json(policy)
    response = admin_client.post(f"/admin/moderation/safetypolicy/{policy.pk}/change/", policy_form(policy, **fields))
    page = response.content.decode()
    assert response.status_code == 200 and "errorlist" in page and message in page
    assert policies.policy_json(policy_for(project, fresh=True)) == stored and not events("policy_changed")


def test_a_policy_is_added_in_the_admin_for_a_project_without_one_and_never_deleted_there(admin_client, project,
                                                                                         other_project):
    assert not SafetyPolicy.objects.filter(project=other_project).exists()
    assert admin_client.get("/admin/moderation/safetypolicy/add/").status_code == 200
    response = admin_client.post("/admin/moderation/safetypolicy/add/", policy_form(
        SafetyPolicy(), project=str(other_project.pk), audit_sample_percent="50"))
    assert response.status_code == 302
    added = SafetyPolicy.objects.get(project=other_project)
    (event,) = events("policy_changed")
    assert (event.project_id, event.before["audit_sample_percent"], event.after["audit_sample_percent"]) == (
        other_project.pk, 10, 50)
    # a second one for the same project is refused on the form
    response = admin_client.post("/admin/moderation/safetypolicy/add/", policy_form(SafetyPolicy(),
                                                                                   project=str(other_project.pk)))
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert admin_client.post(f"/admin/moderation/safetypolicy/{added.pk}/delete/", {"post": "yes"}).status_code == 403
    admin_client.post("/admin/moderation/safetypolicy/", {"action": "delete_selected", "post": "yes",
                                                          "_selected_action": [added.pk]})
    assert SafetyPolicy.objects.filter(pk=added.pk).exists()


def test_a_policys_project_stays_whatever_the_change_form_sends(admin_client, project, other_project):
    policy = policy_for(project, fresh=True)
    response = admin_client.post(f"/admin/moderation/safetypolicy/{policy.pk}/change/", policy_form(
        policy, project=str(other_project.pk), audit_sample_percent="30"))
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.project_id, policy.audit_sample_percent) == (project.pk, 30)
    assert events("policy_changed")[0].project_id == project.pk


# --- the blocklist -----------------------------------------------------------------------------------------------

def test_blocklist_entries_added_changed_and_deleted_in_the_admin_are_audited_without_the_term(admin_client, admin_user,
                                                                                             project):
    actor = f"user:{admin_user.pk}"
    assert admin_client.get("/admin/moderation/blocklistentry/add/").status_code == 200
    response = admin_client.post("/admin/moderation/blocklistentry/add/", {
        "project": project.pk, "pattern": " darn ", "category": "harassment"})
    assert response.status_code == 302
    entry = BlocklistEntry.objects.get(project=project)
    assert (entry.pattern, entry.is_regex, entry.category) == (" darn ", False, "harassment")  # kept as given, as the API
    assert admin_client.get("/admin/moderation/blocklistentry/").status_code == 200
    assert admin_client.get(f"/admin/moderation/blocklistentry/{entry.pk}/change/").status_code == 200
    response = admin_client.post(f"/admin/moderation/blocklistentry/{entry.pk}/change/", {"category": "hate"})
    assert response.status_code == 302
    other = BlocklistEntry.objects.create(project=project, pattern="heck")
    assert admin_client.post(f"/admin/moderation/blocklistentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 302
    admin_client.post("/admin/moderation/blocklistentry/", {"action": "delete_selected", "post": "yes",
                                                            "_selected_action": [other.pk]})
    assert not BlocklistEntry.objects.exists()
    recorded = [(event.project_id, event.actor, event.object_id, event.before, event.after)
                for event in events("blocklist_entry_changed")]
    assert recorded == [
        (project.pk, actor, str(entry.pk), None, {"category": "harassment", "is_regex": False}),
        (project.pk, actor, str(entry.pk), {"category": "harassment", "is_regex": False},
         {"category": "hate", "is_regex": False}),
        (project.pk, actor, str(entry.pk), {"category": "hate", "is_regex": False}, None),
        (project.pk, actor, str(other.pk), {"category": "custom", "is_regex": False}, None),
    ]
    assert not any("darn" in str(event.before) + str(event.after) for event in AuditEvent.objects.all())


@pytest.mark.parametrize("fields, message", [
    ({"pattern": "(a+)+$", "is_regex": "on"}, "nests quantifiers"),
    ({"pattern": "(unclosed", "is_regex": "on"}, "does not compile"),
    ({"pattern": "   "}, "Empty term."),
    ({"pattern": "a\x00b"}, "Null characters are not allowed."),
    ({"pattern": "x" * 501}, "Ensure this value has at most 500 characters"),
    ({"category": "politics"}, "Select a valid choice."),
    ({"pattern": "taken"}, "already exists"),
])
def test_a_blocklist_term_the_api_refuses_is_a_form_error_in_the_admin(admin_client, project, fields, message):
    BlocklistEntry.objects.create(project=project, pattern="taken")
    response = admin_client.post("/admin/moderation/blocklistentry/add/", {"project": project.pk, "pattern": "fine",
                                                                           "category": "custom", **fields})
    page = response.content.decode()
    assert response.status_code == 200 and "errorlist" in page and message in page
    assert list(BlocklistEntry.objects.values_list("pattern", flat=True)) == ["taken"]
    assert not events("blocklist_entry_changed")


def test_a_blocklist_entry_keeps_its_project_and_term_whatever_the_change_form_sends(admin_client, project,
                                                                                    other_project):
    entry = BlocklistEntry.objects.create(project=project, pattern="heck")
    response = admin_client.post(f"/admin/moderation/blocklistentry/{entry.pk}/change/", {
        "project": other_project.pk, "pattern": "(a+)+", "is_regex": "on", "category": "spam"})
    assert response.status_code == 302
    entry.refresh_from_db()
    assert (entry.project_id, entry.pattern, entry.is_regex, entry.category) == (project.pk, "heck", False, "spam")


def test_a_staff_user_who_may_only_view_policies_and_blocklists_changes_neither(viewer_client, project):
    policy = policy_for(project, fresh=True)
    entry = BlocklistEntry.objects.create(project=project, pattern="heck")
    client = viewer_client("safetypolicy", "blocklistentry")
    for url in ("/admin/moderation/safetypolicy/", f"/admin/moderation/safetypolicy/{policy.pk}/change/",
                "/admin/moderation/blocklistentry/", f"/admin/moderation/blocklistentry/{entry.pk}/change/"):
        assert client.get(url).status_code == 200, url
    assert client.post(f"/admin/moderation/safetypolicy/{policy.pk}/change/",
                       policy_form(policy, audit_sample_percent="90")).status_code == 403
    assert client.post("/admin/moderation/blocklistentry/add/", {"project": project.pk, "pattern": "new",
                                                                 "category": "custom"}).status_code == 403
    assert client.post(f"/admin/moderation/blocklistentry/{entry.pk}/change/", {"category": "spam"}).status_code == 403
    assert client.post(f"/admin/moderation/blocklistentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post("/admin/moderation/blocklistentry/", {"action": "delete_selected", "post": "yes",
                                                      "_selected_action": [entry.pk]})
    assert policy_for(project, fresh=True).audit_sample_percent == 10
    assert list(BlocklistEntry.objects.values_list("pattern", "category")) == [("heck", "custom")]
    assert not AuditEvent.objects.exists()


# --- outside the tests' own transaction ---------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_owner_check_and_the_audited_deletions_hold_outside_the_tests_transaction(admin_client, project):
    """Django runs a delete view's GET and an admin action in no transaction of their own, where PostgreSQL
    refuses a row lock (the owners', the jobs'): a 500 that the transaction each other test runs in hides."""
    owner = MembershipFactory(project=project, role=Role.OWNER).user
    editor = MembershipFactory(project=project, role=Role.EDITOR).user
    page = admin_client.get(f"/admin/auth/user/{owner.pk}/delete/")
    assert page.status_code == 200 and f"make someone else owner of {project.slug} first" in page.content.decode()
    for post in ({}, {"post": "yes"}):  # the bulk action's confirmation page, then "yes"
        response = admin_client.post("/admin/auth/user/", {"action": "delete_selected", "_selected_action": [owner.pk],
                                                           **post})
        assert response.status_code == 200 and f"make someone else owner of {project.slug} first" in response.content.decode()
    response = admin_client.post("/admin/auth/user/", {"action": "delete_selected", "_selected_action": [editor.pk],
                                                       "post": "yes"})
    assert response.status_code == 302 and not User.objects.filter(pk=editor.pk).exists()
    assert User.objects.filter(pk=owner.pk).exists()
    job = build_job(project)
    response = admin_client.post("/admin/jobs/job/", {"action": "delete_selected", "_selected_action": [str(job.pk)],
                                                      "post": "yes"})
    assert response.status_code == 302 and not Job.objects.exists() and len(events("job_deleted")) == 1


def _import_held_open(project, terms, *, replace=False):
    """A blocklist import in a thread of its own, its transaction left open until ``release`` is set: the admin's
    edit meets it mid-way, as a real one would."""
    imported, release = threading.Event(), threading.Event()

    def run():
        try:
            with transaction.atomic():
                policies.import_blocklist(project, "user:0", terms, replace=replace)
                imported.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert imported.wait(10)
    return thread, release


def _posted_meanwhile(admin_client, url: str, data: dict) -> threading.Thread:
    answer = {}

    def post():
        try:
            answer["response"] = admin_client.post(url, data)
        except Exception as error:  # the test client raises what would have been a 500
            answer["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=post)
    thread.start()
    thread.join(0.5)  # it waits for the import's transaction
    thread.answer = answer
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_term_added_in_the_admin_while_an_import_adds_it_is_a_form_error_not_a_500(admin_client, project):
    importer, release = _import_held_open(project, [{"pattern": "wool"}])
    adder = _posted_meanwhile(admin_client, "/admin/moderation/blocklistentry/add/",
                              {"project": project.pk, "pattern": "wool", "category": "custom"})
    release.set()
    importer.join(10)
    adder.join(10)
    assert "error" not in adder.answer, adder.answer.get("error")
    response = adder.answer["response"]
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert list(BlocklistEntry.objects.values_list("pattern", flat=True)) == ["wool"]
    assert not events("blocklist_entry_changed")


@pytest.mark.django_db(transaction=True)
def test_an_entry_a_replacing_import_deletes_meanwhile_is_gone_for_the_admins_change_and_deletions(admin_client, project):
    """Neither a 500 (a change that saves no row) nor an audit record of a deletion the import made."""
    entry = BlocklistEntry.objects.create(project=project, pattern="wool")
    gone = "/admin/"  # "... doesn't exist. Perhaps it was deleted?"
    for url, data, then in ((f"/admin/moderation/blocklistentry/{entry.pk}/change/", {"category": "spam"}, gone),
                            (f"/admin/moderation/blocklistentry/{entry.pk}/delete/", {"post": "yes"}, gone),
                            ("/admin/moderation/blocklistentry/", {"action": "delete_selected", "post": "yes",
                                                                   "_selected_action": [entry.pk]}, None)):
        BlocklistEntry.objects.get_or_create(project=project, pattern="wool", defaults={"pk": entry.pk})
        importer, release = _import_held_open(project, [{"pattern": "heck"}], replace=True)
        editor = _posted_meanwhile(admin_client, url, data)
        release.set()
        importer.join(10)
        editor.join(10)
        assert "error" not in editor.answer, (url, editor.answer.get("error"))
        response = editor.answer["response"]
        assert response.status_code == 302 and response.url == (then or url), url
        assert list(BlocklistEntry.objects.values_list("pattern", "category")) == [("heck", "custom")], url
    assert not events("blocklist_entry_changed")


# --- deactivating a user who is the last owner of a project -------------------------------------------------------

def change_form_data(admin_client, url: str, **changes) -> dict:
    """The admin change form's own values, as a browser would post them back, with ``changes``."""
    form = admin_client.get(url).context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if hasattr(field.widget, "widgets"):  # a split date and time: one posted value per part
            for index, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{index}"] = "" if part is None else str(part)
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, (list, tuple)):
            data[name] = [str(item) for item in value]
        elif value is not None:
            data[name] = str(value)
    for name, value in changes.items():
        if value is False:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def test_deactivating_a_projects_last_active_owner_is_refused_naming_the_project(admin_client, project):
    """A user who cannot sign in manages nothing: turning off the last owner who can left the project as
    unmanaged as deleting them did. An owner already inactive is no owner who can take over."""
    owner = MembershipFactory(project=project, role=Role.OWNER).user
    MembershipFactory(project=project, role=Role.OWNER, user=UserFactory(is_active=False))
    url = f"/admin/auth/user/{owner.pk}/change/"
    response = admin_client.post(url, change_form_data(admin_client, url, is_active=False))
    assert response.status_code == 200
    assert f"A project keeps at least one owner: make someone else owner of {project.slug} first." in response.content.decode()
    owner.refresh_from_db()
    assert owner.is_active

    MembershipFactory(project=project, role=Role.OWNER)  # another owner who can sign in: now they may go
    response = admin_client.post(url, change_form_data(admin_client, url, is_active=False))
    assert response.status_code == 302, response.content.decode()[-2000:]
    owner.refresh_from_db()
    assert not owner.is_active
