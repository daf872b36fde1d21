"""Model versions private to one project (``register_model --project``): registered, pinned and listed only for
their project, refused to every other (the command, ProjectPlugin.clean, the admin); shared versions as before."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from atelier_platform.accounts.models import Project
from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.moderation.models import AuditEvent
from tests.factories import ProjectFactory


@pytest.fixture
def models_root(tmp_path, atelier_config):
    root = tmp_path / "models"
    for relative in ("rev/shared", "rev/acme-ft", "rev/other"):
        (root / relative).mkdir(parents=True)
        (root / relative / "model.safetensors").write_bytes(b"\0" * 8)
    atelier_config(models_root=root)
    return root


def register(*args) -> str:
    out = io.StringIO()
    call_command("register_model", "--plugin", "reverse_text", *args, stdout=out)
    return out.getvalue()


def pin_of(project):
    setting = ProjectPlugin.objects.filter(project=project, plugin_id="reverse_text").first()
    return setting.model_version if setting else None


# --- register_model --project ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_register_model_with_a_project_registers_a_version_private_to_it(project, other_project, models_root):
    said = register("--name", "acme-ft", "--dir", "rev/acme-ft", "--project", project.slug, "--pin", project.slug)
    version = ModelVersion.objects.get(version="acme-ft")
    assert version.project == project and pin_of(project) == version
    assert f"private to {project.slug}" in said
    assert list(ModelVersion.objects.available_to(project)) == [version]
    assert not ModelVersion.objects.available_to(other_project).exists()
    register("--name", "acme-ft", "--dir", "rev/acme-ft", "--project", project.slug)  # again: nothing changes
    assert ModelVersion.objects.get(version="acme-ft") == version


@pytest.mark.django_db
def test_register_model_refuses_to_pin_another_project_to_a_private_version_and_keeps_nothing(
        project, other_project, models_root):
    with pytest.raises(CommandError, match=f"private to project '{project.slug}': it cannot be pinned for "
                                           f"'{other_project.slug}'"):
        register("--name", "acme-ft", "--dir", "rev/acme-ft", "--project", project.slug,
                 "--pin", project.slug, other_project.slug)
    # the one command's work is undone: no version, and not even the owner's pin
    assert not ModelVersion.objects.exists() and pin_of(project) is None and pin_of(other_project) is None
    register("--name", "acme-ft", "--dir", "rev/acme-ft", "--project", project.slug)
    with pytest.raises(CommandError, match="private to project"):
        register("--name", "acme-ft", "--dir", "rev/acme-ft", "--project", project.slug, "--pin", other_project.slug)
    assert pin_of(other_project) is None


@pytest.mark.django_db
def test_a_version_keeps_the_owner_it_was_registered_with(project, other_project, models_root):
    register("--name", "v2", "--dir", "rev/shared", "--pin", other_project.slug)
    register("--name", "acme-ft", "--dir", "rev/acme-ft", "--project", project.slug)
    # a shared version is never made private (the other project's pin would point at another tenant's model)
    with pytest.raises(CommandError, match="shared by every project"):
        register("--name", "v2", "--dir", "rev/shared", "--project", project.slug)
    # a private one is never made shared, nor moved to another project, by registering its name again
    with pytest.raises(CommandError, match=f"private to project '{project.slug}': give --project {project.slug}"):
        register("--name", "acme-ft", "--dir", "rev/acme-ft", "--pin", other_project.slug)
    with pytest.raises(CommandError, match="private to project"):
        register("--name", "acme-ft", "--dir", "rev/acme-ft", "--project", other_project.slug,
                 "--pin", other_project.slug)
    # one name per plugin across the installation: a private name never shadows a shared one, nor another's
    with pytest.raises(CommandError, match="already names rev/shared"):
        register("--name", "v2", "--dir", "rev/other", "--project", other_project.slug)
    assert {(v.version, v.project_id) for v in ModelVersion.objects.all()} == {("v2", None), ("acme-ft", project.pk)}
    assert pin_of(other_project).version == "v2"


@pytest.mark.django_db
def test_register_model_refuses_an_unknown_owner(project, models_root):
    with pytest.raises(CommandError, match="No project 'nobody'"):
        register("--name", "ft", "--dir", "rev/acme-ft", "--project", "nobody")
    assert not ModelVersion.objects.exists()


# --- ProjectPlugin.clean and the admin ---------------------------------------------------------------------------

@pytest.fixture
def private_versions(project, other_project):
    return (ModelVersion.objects.create(plugin_id="reverse_text", version="acme-ft", model_dir="rev/acme-ft",
                                        project=project),
            ModelVersion.objects.create(plugin_id="reverse_text", version="globex-ft", model_dir="rev/other",
                                        project=other_project))


@pytest.mark.django_db
def test_a_pin_to_another_projects_private_version_is_invalid(project, private_versions):
    ours, theirs = private_versions
    shared = ModelVersion.objects.create(plugin_id="reverse_text", version="v2", model_dir="rev/shared")
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    for allowed in (ours, shared, None):
        setting.model_version = allowed
        setting.full_clean()
    setting.model_version = theirs
    with pytest.raises(ValidationError) as refused:
        setting.full_clean()
    assert "is private to project" in str(refused.value.message_dict["model_version"])


@pytest.mark.django_db
def test_the_admin_refuses_a_pin_to_another_projects_version_and_offers_only_the_projects_own(
        admin_client, project, private_versions):
    ours, theirs = private_versions
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    form = admin_client.get(f"/admin/catalog/projectplugin/{setting.pk}/change/").content.decode()
    assert f'<option value="{ours.pk}"' in form and f'<option value="{theirs.pk}"' not in form
    response = admin_client.post(f"/admin/catalog/projectplugin/{setting.pk}/change/", {
        "project": project.pk, "plugin_id": "reverse_text", "enabled": "on", "config": "{}",
        "model_version": theirs.pk})
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert pin_of(project) is None and not AuditEvent.objects.filter(action="plugin_configured").exists()
    # and on the add form, where the project is only known once posted
    fresh = ProjectFactory()
    response = admin_client.post("/admin/catalog/projectplugin/add/", {
        "project": fresh.pk, "plugin_id": "reverse_text", "enabled": "on", "config": "{}", "model_version": theirs.pk})
    assert response.status_code == 200 and "is private to project" in response.content.decode()
    assert not ProjectPlugin.objects.filter(project=fresh).exists()


@pytest.mark.django_db
def test_the_admin_shows_each_versions_project_and_filters_by_it(admin_client, project, private_versions):
    ours, theirs = private_versions
    ModelVersion.objects.create(plugin_id="reverse_text", version="v2", model_dir="rev/shared")
    page = admin_client.get("/admin/catalog/modelversion/").content.decode()
    assert project.slug in page and "shared" in page
    assert f"?project__id__exact={project.pk}" in page  # the filter offers the owners
    mine = admin_client.get(f"/admin/catalog/modelversion/?project__id__exact={project.pk}").content.decode()
    assert "acme-ft" in mine and "globex-ft" not in mine and ">v2<" not in mine
    shared = admin_client.get("/admin/catalog/modelversion/?project__isnull=True").content.decode()
    assert ">v2<" in shared and "acme-ft" not in shared and "globex-ft" not in shared
    found = admin_client.get(f"/admin/catalog/modelversion/?q={project.slug}").content.decode()
    assert "acme-ft" in found and "globex-ft" not in found
    # the owner cannot be changed there: it shows, read only
    change = admin_client.get(f"/admin/catalog/modelversion/{ours.pk}/change/").content.decode()
    assert 'name="project"' not in change and project.slug in change


# --- what reads a pin ---------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_pin_to_another_projects_version_is_never_named_to_the_project(project, private_versions, api,
                                                                         empty_plugin_registry):
    """Refused by every way of pinning; were one ever in the database, /v1/models would not name the version."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    theirs = ModelVersion.objects.create(plugin_id="chatbot", version="globex-chat", model_dir="chat/globex",
                                         project=ProjectFactory())
    ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").update(model_version=theirs)
    listed = api.get("/v1/models").json()["data"]
    assert [m["atelier"]["model_version"] for m in listed] == ["default"]


# --- the migration and a project's deletion ----------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_migration_leaves_the_versions_registered_before_it_shared(project, other_project):
    before, after = ("catalog", "0002_modelversion_projectplugin_model_version"), ("catalog", "0003_modelversion_project")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    try:
        old = MigrationExecutor(connection).loader.project_state([before]).apps.get_model("catalog", "ModelVersion")
        old.objects.create(plugin_id="reverse_text", version="v1", model_dir="rev/v1")
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([after])
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    version = ModelVersion.objects.get(version="v1")
    assert version.project is None
    assert list(ModelVersion.objects.available_to(project)) == list(ModelVersion.objects.available_to(other_project)) \
        == [version]


@pytest.mark.django_db
def test_a_project_deleted_takes_its_private_versions_and_leaves_the_shared_ones(project, other_project,
                                                                                 private_versions):
    ours, theirs = private_versions
    shared = ModelVersion.objects.create(plugin_id="reverse_text", version="v2", model_dir="rev/shared")
    ProjectPlugin.objects.filter(project=project, plugin_id="reverse_text").update(model_version=ours)
    ProjectPlugin.objects.filter(project=other_project, plugin_id="reverse_text").update(model_version=shared)
    Project.objects.filter(pk=project.pk).delete()
    assert set(ModelVersion.objects.all()) == {theirs, shared} and pin_of(other_project) == shared


@pytest.mark.django_db
def test_the_workers_page_never_counts_another_projects_version_among_the_projects_models(project, private_versions):
    from atelier_platform.fleet.services import models_of_project

    ours, theirs = private_versions
    ProjectPlugin.objects.filter(project=project, plugin_id="reverse_text").update(model_version=theirs)
    assert ("reverse_text", "rev/other") not in models_of_project(project)  # a worker keeping it warm is not shown
    ProjectPlugin.objects.filter(project=project, plugin_id="reverse_text").update(model_version=ours)
    assert ("reverse_text", "rev/acme-ft") in models_of_project(project)


@pytest.mark.django_db
def test_a_project_whose_evaluation_ran_on_its_own_version_can_still_be_deleted(project, private_versions):
    """Its jobs and runs name the version; they go with the project, and so does the version (no ProtectedError)."""
    from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet
    from atelier_platform.jobs.models import Job
    from atelier_platform.jobs.submission import JobRequest, submit_job

    ours, theirs = private_versions
    job = submit_job(project, JobRequest("reverse_text", {"text": "x"}, {})).job
    Job.objects.filter(pk=job.pk).update(model_version=ours)
    reference_set = ReferenceSet.objects.create(project=project, plugin_id="reverse_text", name="set", cases=[])
    EvaluationRun.objects.create(project=project, reference_set=reference_set, model_version=ours)
    Project.objects.filter(pk=project.pk).delete()
    assert list(ModelVersion.objects.all()) == [theirs] and not Job.objects.exists()
    assert not EvaluationRun.objects.exists()
