"""The Django admin as a project admin and a security reviewer meet it: the audit log read only and
protecting its projects, every change a staff user makes audited as the dashboard's and the API's are,
no secret shown, no setting saved that the platform would choke on, no 500 from odd input, and lists
that do not read a large table more than they must."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Membership, Project
from atelier_platform.accounts.roles import Role
from atelier_platform.accounts.services import authenticate_api_key
from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.moderation import audit
from atelier_platform.moderation.models import AuditEvent
from atelier_platform.usage.models import ProjectQuota
from atelier_platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.api.helpers import build_job
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


# --- the audit log -------------------------------------------------------------------------------------

def test_the_audit_log_is_in_the_admin_and_cannot_be_added_to_changed_or_deleted_there(admin_client, project):
    event = audit.record(project, "user:1", "policy_changed", project, before={"a": 1}, after={"a": 2})
    listing = admin_client.get("/admin/moderation/auditevent/")
    assert listing.status_code == 200 and "policy_changed" in listing.content.decode()
    assert "delete_selected" not in listing.content.decode()  # no bulk deletion offered
    assert admin_client.get(f"/admin/moderation/auditevent/{event.pk}/change/").status_code == 200  # to read
    assert admin_client.post(f"/admin/moderation/auditevent/{event.pk}/change/",
                             {"actor": "someone else", "action": "nothing"}).status_code == 403
    assert admin_client.get("/admin/moderation/auditevent/add/").status_code == 403
    assert admin_client.post(f"/admin/moderation/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    admin_client.post("/admin/moderation/auditevent/", {"action": "delete_selected", "_selected_action": [event.pk],
                                                        "post": "yes"})
    assert list(AuditEvent.objects.values_list("pk", "actor", "action")) == [(event.pk, "user:1", "policy_changed")]


def test_a_project_with_history_is_kept_and_the_refusal_says_why_in_one_line(admin_client, project, other_project):
    """Its events protect it (the log is append-only). Django's page listed every event, one line each
    (millions for a busy project, after walking every job): now one line per project."""
    for n in range(30):
        audit.record(project, "screening", "output_screened", project, after={"n": n})
    page = admin_client.get(f"/admin/accounts/project/{project.pk}/delete/").content.decode()
    assert "Cannot delete project" in page and "its audit log (30 events) is append-only" in page
    assert "Audit event object" not in page
    assert admin_client.post(f"/admin/accounts/project/{project.pk}/delete/", {"post": "yes"}).status_code == 200
    admin_client.post("/admin/accounts/project/", {"action": "delete_selected", "post": "yes",
                                                   "_selected_action": [project.pk, other_project.pk]})
    assert set(Project.objects.values_list("pk", flat=True)) == {project.pk, other_project.pk}
    assert AuditEvent.objects.filter(project=project).count() == 30
    # a project without history (made by mistake) can still go
    assert admin_client.post(f"/admin/accounts/project/{other_project.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Project.objects.filter(pk=other_project.pk).exists()


# --- API keys ------------------------------------------------------------------------------------------

def test_a_key_page_never_shows_nor_takes_the_keys_hash(admin_client, project, make_key):
    key = make_key(project).api_key
    page = admin_client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert key.prefix in page and key.secret_hash not in page
    admin_client.post(f"/admin/accounts/apikey/{key.pk}/change/", {"name": "n", "rate_limit_per_minute": "",
                                                                  "secret_hash": "0" * 64})
    assert ApiKey.objects.get(pk=key.pk).secret_hash == key.secret_hash


def test_a_key_cannot_be_deleted_in_the_admin_only_revoked(admin_client, project, make_key):
    """Deleting revoked it with no audit record and erased which key had done what."""
    key = make_key(project).api_key
    assert admin_client.post(f"/admin/accounts/apikey/{key.pk}/delete/", {"post": "yes"}).status_code == 403
    assert "delete_selected" not in admin_client.get("/admin/accounts/apikey/").content.decode()
    admin_client.post("/admin/accounts/apikey/", {"action": "delete_selected", "_selected_action": [key.pk], "post": "yes"})
    assert ApiKey.objects.filter(pk=key.pk).exists()


def test_only_staff_who_may_change_keys_may_revoke_them(client, project, make_key):
    """The action named no permission, so a staff user allowed only to view keys could revoke every one."""
    from django.contrib.auth.models import Permission

    issued = make_key(project)
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client.force_login(viewer)
    assert client.get("/admin/accounts/apikey/").status_code == 200
    client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [issued.api_key.pk]})
    assert authenticate_api_key(issued.raw) is not None and not events("api_key_revoked")


def test_renaming_a_key_or_changing_its_rate_limit_is_audited(admin_client, admin_user, project, make_key):
    key = make_key(project).api_key
    response = admin_client.post(f"/admin/accounts/apikey/{key.pk}/change/", {"name": "ci", "rate_limit_per_minute": "0"})
    assert response.status_code == 302
    (event,) = events("api_key_changed")
    assert (event.project_id, event.actor, event.object_id) == (project.pk, f"user:{admin_user.pk}", str(key.pk))
    assert (event.before["rate_limit_per_minute"], event.after["rate_limit_per_minute"]) == (None, 0)
    assert event.after["name"] == "ci"
    (renamed,) = events("api_key_renamed")  # the name's change, as the API and the dashboard record it
    assert renamed.after == {"prefix": key.prefix, "name": "ci"} and renamed.actor == f"user:{admin_user.pk}"


def test_renaming_a_key_in_the_admin_is_recorded_as_the_api_and_the_dashboard_record_it(
        admin_client, admin_user, project, make_key):
    """The admin logged a new name as api_key_changed, the API and the settings page as api_key_renamed: a
    search of the audit log for renamed keys missed the admin's."""
    key = make_key(project).api_key
    ApiKey.objects.filter(pk=key.pk).update(name="shop")
    response = admin_client.post(f"/admin/accounts/apikey/{key.pk}/change/", {"name": "  till  ", "rate_limit_per_minute": ""})
    assert response.status_code == 302
    (event,) = events("api_key_renamed")
    assert (event.project_id, event.actor, event.object_id) == (project.pk, f"user:{admin_user.pk}", str(key.pk))
    assert (event.before, event.after) == ({"prefix": key.prefix, "name": "shop"}, {"prefix": key.prefix, "name": "till"})
    assert not events("api_key_changed")  # nothing else changed
    key.refresh_from_db()
    assert key.name == "till"
    # saved again unchanged: nothing recorded
    admin_client.post(f"/admin/accounts/apikey/{key.pk}/change/", {"name": "till", "rate_limit_per_minute": ""})
    assert len(events("api_key_renamed")) == 1 and not events("api_key_changed")


def test_a_save_in_the_admin_writes_only_what_its_form_edits(admin_client, project, make_key, monkeypatch):
    """It wrote back every column as the page had read it: a key revoked through the API while the staff
    user renamed it came back to life, and a job a worker finished meanwhile went back to running."""
    from atelier_platform.accounts.admin import ApiKeyAdmin
    from atelier_platform.jobs.admin import JobAdmin

    key = make_key(project).api_key
    job = build_job(project, status=JobStatus.RUNNING)
    read = ApiKeyAdmin.get_object

    def read_while_others_write(self, request, object_id, from_field=None):
        obj = read(self, request, object_id, from_field)
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
        Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
        return obj

    monkeypatch.setattr(ApiKeyAdmin, "get_object", read_while_others_write)
    monkeypatch.setattr(JobAdmin, "get_object", read_while_others_write)
    response = admin_client.post(f"/admin/accounts/apikey/{key.pk}/change/", {"name": "renamed", "rate_limit_per_minute": ""})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.name == "renamed" and key.revoked_at is not None
    assert admin_client.post(f"/admin/jobs/job/{job.pk}/change/", {
        "outputs-TOTAL_FORMS": "0", "outputs-INITIAL_FORMS": "0", "outputs-MIN_NUM_FORMS": "0",
        "outputs-MAX_NUM_FORMS": "1000"}).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


# --- members -------------------------------------------------------------------------------------------

def project_form(project: Project, rows: list[dict]) -> dict:
    """The project's change form with its members as ``rows`` ({"id", "user", "role", "DELETE"})."""
    form = {"slug": project.slug, "name": project.name, "memberships-TOTAL_FORMS": str(len(rows)),
            "memberships-INITIAL_FORMS": str(sum(1 for row in rows if row.get("id"))),
            "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000"}
    for index, row in enumerate(rows):
        form.update({f"memberships-{index}-{name}": str(value) for name, value in row.items() if value is not None})
        form[f"memberships-{index}-project"] = str(project.pk)
    return form


def test_member_changes_in_the_admin_are_audited_as_on_the_dashboard(admin_client, admin_user, project):
    owner = MembershipFactory(project=project, role=Role.OWNER)
    editor = MembershipFactory(project=project, role=Role.EDITOR)
    leaving = MembershipFactory(project=project, role=Role.VIEWER)
    newcomer = UserFactory()
    response = admin_client.post(f"/admin/accounts/project/{project.pk}/change/", project_form(project, [
        {"id": owner.pk, "user": owner.user_id, "role": Role.OWNER},
        {"id": editor.pk, "user": editor.user_id, "role": Role.REVIEWER},
        {"id": leaving.pk, "user": leaving.user_id, "role": Role.VIEWER, "DELETE": "on"},
        {"user": newcomer.pk, "role": Role.EDITOR},
    ]))
    assert response.status_code == 302
    actor = f"user:{admin_user.pk}"
    (changed,) = events("member_role_changed")
    assert (changed.actor, changed.before["role"], changed.after) == (actor, "editor", {"user": editor.user.username,
                                                                                       "role": "reviewer"})
    (removed,) = events("member_removed")
    assert (removed.actor, removed.object_id, removed.before) == (actor, str(leaving.pk),
                                                                  {"user": leaving.user.username, "role": "viewer"})
    (added,) = events("member_added")
    assert (added.project_id, added.after) == (project.pk, {"user": newcomer.username, "role": "editor"})
    assert not Membership.objects.filter(pk=leaving.pk).exists()


def test_the_admin_cannot_remove_or_demote_a_projects_last_owner(admin_client, project):
    owner = MembershipFactory(project=project, role=Role.OWNER)
    for row in ({"id": owner.pk, "user": owner.user_id, "role": Role.OWNER, "DELETE": "on"},
                {"id": owner.pk, "user": owner.user_id, "role": Role.VIEWER}):
        response = admin_client.post(f"/admin/accounts/project/{project.pk}/change/", project_form(project, [row]))
        assert response.status_code == 200 and "A project keeps at least one owner" in response.content.decode()
    assert Membership.objects.get(pk=owner.pk).role == Role.OWNER
    # with another owner named in the same form, the first may step down
    successor = UserFactory()
    response = admin_client.post(f"/admin/accounts/project/{project.pk}/change/", project_form(project, [
        {"id": owner.pk, "user": owner.user_id, "role": Role.VIEWER}, {"user": successor.pk, "role": Role.OWNER}]))
    assert response.status_code == 302
    assert Membership.objects.get(project=project, role=Role.OWNER).user == successor


def test_deleting_a_user_in_the_admin_records_their_memberships_removed(admin_client, admin_user, project, other_project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=Role.REVIEWER)
    MembershipFactory(project=other_project, user=user, role=Role.EDITOR)
    assert admin_client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"}).status_code == 302
    removed = {(event.project_id, event.before["role"]) for event in events("member_removed")}
    assert removed == {(project.pk, "reviewer"), (other_project.pk, "editor")}
    assert not get_user_model().objects.filter(pk=user.pk).exists()


def test_a_project_made_in_the_admin_has_the_installed_plugins_switched_on(admin_client, reverse_plugin):
    """As a project made by create_api_key --create-project or bootstrap: without them every job was refused."""
    response = admin_client.post("/admin/accounts/project/add/", project_form(Project(slug="made-here", name="Made"), []))
    assert response.status_code == 302
    project = Project.objects.get(slug="made-here")
    assert set(ProjectPlugin.objects.filter(project=project, enabled=True).values_list("plugin_id", flat=True)) == {
        "reverse_text", "gpu_reverse"}


# --- plugins, quotas, webhooks -------------------------------------------------------------------------

def plugin_form(setting: ProjectPlugin, **fields) -> dict:
    return {"project": setting.project_id, "plugin_id": setting.plugin_id, "enabled": "on", "config": "{}",
            "model_version": "", **fields}


def test_plugin_settings_changed_in_the_admin_are_audited_and_stay_with_their_project(admin_client, admin_user, project,
                                                                                    other_project):
    version = ModelVersion.objects.create(plugin_id="reverse_text", version="v2", model_dir="reverse/v2")
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    response = admin_client.post(f"/admin/catalog/projectplugin/{setting.pk}/change/", plugin_form(
        setting, enabled="", model_version=version.pk, project=other_project.pk, plugin_id="gpu_reverse"))
    assert response.status_code == 302
    setting.refresh_from_db()
    assert (setting.project_id, setting.plugin_id, setting.enabled, setting.model_version_id) == (
        project.pk, "reverse_text", False, version.pk)
    (event,) = events("plugin_configured")
    assert (event.project_id, event.actor) == (project.pk, f"user:{admin_user.pk}")
    assert (event.before["enabled"], event.before["model_version"]) == (True, None)
    assert (event.after["enabled"], event.after["model_version"]) == (False, "v2")


def test_deleting_plugin_settings_in_the_admin_is_audited(admin_client, admin_user, project):
    """Without its setting a plugin is off for the project: a switch like any other."""
    settings = list(ProjectPlugin.objects.filter(project=project).order_by("plugin_id"))
    admin_client.post("/admin/catalog/projectplugin/", {"action": "delete_selected", "post": "yes",
                                                        "_selected_action": [setting.pk for setting in settings]})
    assert not ProjectPlugin.objects.filter(project=project).exists()
    deleted = events("plugin_configured")
    assert sorted((event.before["plugin"], event.after) for event in deleted) == [("gpu_reverse", None),
                                                                                  ("reverse_text", None)]
    assert all(event.actor == f"user:{admin_user.pk}" and event.project_id == project.pk for event in deleted)


@pytest.mark.parametrize("config", ["[1]", '"brand voice"', '{"brand": "a\\u0000b"}'])
def test_a_plugin_config_the_platform_cannot_read_or_store_is_refused(admin_client, project, config):
    """A list or a string failed every job of the project (500: the defaults are read with config.get);
    a NUL character failed the save itself (500: PostgreSQL's jsonb refuses it)."""
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    response = admin_client.post(f"/admin/catalog/projectplugin/{setting.pk}/change/", plugin_form(setting, config=config))
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    setting.refresh_from_db()
    assert setting.config == {}


def test_an_emptied_plugin_config_means_no_defaults(admin_client, project):
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    ProjectPlugin.objects.filter(pk=setting.pk).update(config={"params": {}})
    response = admin_client.post(f"/admin/catalog/projectplugin/{setting.pk}/change/", plugin_form(setting, config=""))
    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.config == {}


def test_quota_grants_are_audited_and_stay_with_their_project(admin_client, admin_user, project, other_project):
    response = admin_client.post("/admin/usage/projectquota/add/", {"project": project.pk, "jobs_per_day": "100",
                                                                     "compute_seconds_per_month": ""})
    assert response.status_code == 302
    quota = ProjectQuota.objects.get(project=project)
    response = admin_client.post(f"/admin/usage/projectquota/{quota.pk}/change/", {
        "project": other_project.pk, "jobs_per_day": "500", "compute_seconds_per_month": "3600"})
    assert response.status_code == 302
    quota.refresh_from_db()
    assert (quota.project_id, quota.jobs_per_day, quota.compute_seconds_per_month) == (project.pk, 500, 3600)
    granted, raised = events("quota_changed")
    assert (granted.project_id, granted.actor, granted.before) == (project.pk, f"user:{admin_user.pk}", None)
    assert granted.after == {"jobs_per_day": 100, "compute_seconds_per_month": None}
    assert (raised.project_id, raised.before["jobs_per_day"], raised.after) == (
        project.pk, 100, {"jobs_per_day": 500, "compute_seconds_per_month": 3600})


def test_deleting_webhook_endpoints_in_the_admin_is_audited(admin_client, admin_user, project):
    one, two, three = (WebhookEndpoint.objects.create(project=project, url=f"https://hooks.example.com/{n}", secret="s")
                       for n in range(3))
    assert admin_client.post(f"/admin/webhooks/webhookendpoint/{one.pk}/delete/", {"post": "yes"}).status_code == 302
    admin_client.post("/admin/webhooks/webhookendpoint/", {"action": "delete_selected", "post": "yes",
                                                           "_selected_action": [str(two.pk), str(three.pk)]})
    assert not WebhookEndpoint.objects.exists()
    deleted = events("webhook_deleted")
    assert {event.object_id for event in deleted} == {str(one.pk), str(two.pk), str(three.pk)}
    assert all(event.actor == f"user:{admin_user.pk}" and event.before["url"] for event in deleted)


def test_deleting_an_endpoint_asks_with_counts_not_a_line_per_delivery(admin_client, project):
    """Django's page read and listed every delivery and attempt of the endpoint's log, which only grows."""
    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/a", secret="s")
    for n in range(5):
        delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id=f"evt_{n}",
                                                  payload={}, max_attempts=3)
        WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=delivery.created_at, duration_ms=5)
    page = admin_client.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/delete/").content.decode()
    assert "Webhook deliveries: 5" in page and "Webhook attempts: 5" in page and "evt_0" not in page
    assert "https://hooks.example.com/a" in page


# --- odd input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "/admin/jobs/job/?status__exact=%00", "/admin/jobs/job/?plugin_id=%00", "/admin/jobs/job/?input__text=%00",
    "/admin/accounts/apikey/?prefix=%00", "/admin/accounts/apikey/?scopes__contains=%00",
    "/admin/catalog/projectplugin/?plugin_id__exact=%00", "/admin/catalog/modelversion/?plugin_id__exact=%00",
    "/admin/webhooks/webhookdelivery/?event_type=%00", "/admin/usage/projectquota/?project__slug=%00",
    "/admin/accounts/project/?slug=%00", "/admin/auth/user/?username=%00", "/admin/moderation/auditevent/?actor=%00",
])
def test_a_nul_character_in_a_lists_filters_is_a_bad_filter_not_a_500(admin_client, project, url):
    response = admin_client.get(url)
    assert response.status_code == 302 and response["Location"].endswith("?e=1")


@pytest.mark.parametrize("model, field", [("usage.projectquota", "project"), ("accounts.membership", "user")])
def test_an_autocomplete_term_with_a_nul_character_finds_nothing(admin_client, project, model, field):
    app_label, model_name = model.split(".")
    response = admin_client.get("/admin/autocomplete/", {"term": "a\x00", "app_label": app_label,
                                                         "model_name": model_name, "field_name": field})
    assert response.status_code == 200 and response.json()["results"] == []


@pytest.mark.parametrize("value", ["abc", "%00"])
def test_an_add_form_leaves_out_an_initial_project_that_is_no_id(admin_client, project, value):
    assert admin_client.get(f"/admin/usage/projectquota/add/?project={value}").status_code == 200
    page = admin_client.get(f"/admin/usage/projectquota/add/?project={project.pk}").content.decode()
    assert f'<option value="{project.pk}" selected>' in page  # a real id is still taken


# --- large tables --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, table", [("/admin/jobs/job/?status__exact=succeeded", "jobs_job"),
                                        ("/admin/webhooks/webhookdelivery/?status__exact=pending",
                                         "webhooks_webhookdelivery")])
def test_a_list_of_a_large_table_reads_it_once_for_its_rows_and_once_for_their_count(admin_client, project, url, table):
    """It also counted the whole table (the "of N" figure) and read every row for the distinct plugin ids or
    event types of its filter: two more passes over millions of rows for each page of a hundred."""
    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/a", secret="s")
    for n in range(3):
        build_job(project)
        WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id=f"evt_{n}", payload={},
                                       max_attempts=3)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)
    assert response.status_code == 200
    reads = [query["sql"] for query in queries.captured_queries if f'FROM "{table}"' in query["sql"]]
    assert len(reads) == 2, reads
    assert response.context["cl"].result_count == 3
