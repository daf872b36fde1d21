"""The Django admin: what a staff user can do there, and what it must never do behind the services' back."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.db import transaction

from atelier_platform.accounts.models import ApiKey, Project
from atelier_platform.accounts.services import authenticate_api_key, revoke_api_key
from atelier_platform.jobs.models import Job, OutputFile, ReviewState
from atelier_platform.moderation.models import AuditEvent
from tests.api.helpers import build_job, build_output

pytestmark = pytest.mark.django_db


def change_key(admin_client, key: ApiKey, **fields):
    form = {"project": key.project_id, "name": key.name, "scopes": '["jobs:read", "jobs:write"]',
            "revoked_at_0": "", "revoked_at_1": "", "rate_limit_per_minute": "", **fields}
    return admin_client.post(f"/admin/accounts/apikey/{key.pk}/change/", form)


def test_a_revoked_key_stays_revoked_whatever_the_change_form_sends(admin_client, project, make_key):
    """Clearing the revocation date on the form brought a revoked key back, unaudited."""
    issued = make_key(project)
    revoke_api_key(issued.api_key, actor="test")
    assert change_key(admin_client, issued.api_key, name="renamed").status_code == 302
    key = ApiKey.objects.get(pk=issued.api_key.pk)
    assert key.name == "renamed" and key.revoked_at is not None and authenticate_api_key(issued.raw) is None


def test_a_key_keeps_its_project_and_scopes_whatever_the_change_form_sends(admin_client, project, other_project,
                                                                           make_key):
    key = make_key(project, ["jobs:read"]).api_key
    assert change_key(admin_client, key, project=other_project.pk,
                      scopes='["jobs:read", "admin", "everything"]').status_code == 302  # saved: the name
    key.refresh_from_db()
    assert (key.project_id, key.scopes) == (project.pk, ["jobs:read"])


def test_keys_are_revoked_from_the_list_by_an_audited_action(admin_client, admin_user, project, make_key):
    issued = make_key(project)
    response = admin_client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [issued.api_key.pk]})
    assert response.status_code == 302
    assert authenticate_api_key(issued.raw) is None
    event = AuditEvent.objects.get(action="api_key_revoked")
    assert event.actor == f"user:{admin_user.pk}" and event.project_id == project.pk


def test_the_job_page_shows_outputs_but_cannot_approve_them(admin_client, project):
    """Only a reviewer's decision (lease, rules, audit) moves a review state: the inline's field did it
    with no decision and no audit event."""
    job = build_job(project)
    output = build_output(job)
    response = admin_client.post(f"/admin/jobs/job/{job.pk}/change/", {
        "outputs-TOTAL_FORMS": "1", "outputs-INITIAL_FORMS": "1", "outputs-MIN_NUM_FORMS": "0",
        "outputs-MAX_NUM_FORMS": "1000", "outputs-0-id": str(output.pk), "outputs-0-job": str(job.pk),
        "outputs-0-review_state": ReviewState.APPROVED, "outputs-0-DELETE": "on",
    })
    assert response.status_code == 302  # the form was taken: whatever it said of the output was ignored
    output.refresh_from_db()
    assert output.review_state == ReviewState.PENDING
    assert admin_client.get(f"/admin/jobs/job/{job.pk}/change/").status_code == 200


def stored_files(job) -> list[str]:
    names = [f.file.name for f in OutputFile.objects.filter(output__job=job)]
    assert names and all(default_storage.exists(name) for name in names)
    return names


def test_deleting_a_job_or_its_project_removes_its_generated_files(admin_client, project, other_project,
                                                                  django_capture_on_commit_callbacks):
    """Nothing named them any more: nobody could reach or remove them, blocked images included."""
    job = build_job(project)
    build_output(job, image=True)
    names = stored_files(job)
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(f"/admin/jobs/job/{job.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Job.objects.filter(pk=job.pk).exists() and not any(default_storage.exists(n) for n in names)
    job = build_job(other_project)  # a project without history: the job's deletion above is on project's audit log
    build_output(job, image=True)
    names = stored_files(job)
    with django_capture_on_commit_callbacks(execute=True):
        Project.objects.filter(pk=other_project.pk).delete()
    assert not any(default_storage.exists(n) for n in names)


def test_a_deletion_rolled_back_keeps_its_files(project, django_capture_on_commit_callbacks):
    job = build_job(project)
    build_output(job, image=True)
    names = stored_files(job)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            Job.objects.filter(pk=job.pk).delete()
            raise RuntimeError("the deletion fails")
    assert all(default_storage.exists(n) for n in names) and OutputFile.objects.filter(output__job=job).exists()


def test_a_project_cannot_be_pinned_to_another_plugins_model(admin_client, project):
    from atelier_platform.catalog.models import ModelVersion, ProjectPlugin

    image_model = ModelVersion.objects.create(plugin_id="image", version="v2", model_dir="image/v2")
    setting = ProjectPlugin.objects.create(project=project, plugin_id="chatbot")
    response = admin_client.post(f"/admin/catalog/projectplugin/{setting.pk}/change/", {
        "project": project.pk, "plugin_id": "chatbot", "enabled": "on", "config": "{}", "model_version": image_model.pk})
    assert response.status_code == 200 and "is a model of image, not of chatbot" in response.content.decode()
    setting.refresh_from_db()
    assert setting.model_version is None
