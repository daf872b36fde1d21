"""The plugin catalog: model versions and their directories, project settings, discovery, and the commands
that manage them."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.catalog.models_dir import ModelDirError, resolve_model_dir
from atelier_platform.catalog.services import enabled_plugin_ids, set_plugin_enabled
from atelier_platform.jobs.errors import PluginNotEnabled
from atelier_platform.jobs.models import Job
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_platform.moderation.models import ReviewItem
from tests.api.helpers import build_job, build_output
from tests.factories import ProjectFactory


@pytest.fixture
def models_root(tmp_path, atelier_config):
    root = tmp_path / "models"
    root.mkdir()
    atelier_config(models_root=root)
    return root


def model_dir(root, relative):
    path = root / relative
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"\0" * 8)
    return path


# --- pins and settings --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_register_model_pin_does_not_enable_a_plugin_the_project_did_not_enable(reverse_plugin, models_root):
    project = ProjectFactory()  # reverse_text installed, never enabled for this project
    model_dir(models_root, "rev/v2")
    with pytest.raises(PluginNotEnabled):
        submit_job(project, JobRequest(plugin_id="reverse_text", input={"text": "x"}, params={}))
    call_command("register_model", plugin="reverse_text", name="v2", dir="rev/v2", pin=[project.slug])
    assert ProjectPlugin.objects.get(project=project, plugin_id="reverse_text").model_version.version == "v2"
    assert "reverse_text" not in enabled_plugin_ids(project)
    with pytest.raises(PluginNotEnabled):  # pinning a model is not consent to run the plugin
        submit_job(project, JobRequest(plugin_id="reverse_text", input={"text": "x"}, params={}))


@pytest.mark.django_db
def test_regenerate_is_refused_once_the_plugin_is_disabled(project, make_key, client_for):
    job = build_job(project)
    item = ReviewItem.objects.create(output=build_output(job), project=project, priority=5)
    set_plugin_enabled(project, "reverse_text", False)
    reviewer = client_for(make_key(project, ["reviews:read", "reviews:write", "jobs:read"]).raw)
    assert reviewer.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
    answer = reviewer.post(f"/api/v1/reviews/{item.pk}/decision/", {"action": "regenerate"}, format="json")
    queued = Job.objects.filter(project=project, regenerated_from__isnull=False)
    assert not queued.exists(), f"disabled plugin got a new queued job (answer {answer.status_code})"
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "plugin_not_enabled"


@pytest.mark.django_db
def test_prepare_demo_keeps_the_owners_recommender_defaults(monkeypatch):
    from atelier_platform.accounts.services import create_project
    from atelier_workers import demo

    monkeypatch.setattr(demo, "DEMO_MODELS", [])  # models already built: only the database part runs
    monkeypatch.setattr(demo, "demo_documents", lambda: [])
    project = create_project("demo", "Demo project")
    owner_config = {"params": {"brand_voice": "Our own voice", "banned_words": ["cheap"], "max_chars": 120},
                    "note": "set by the owner in the admin"}
    ProjectPlugin.objects.create(project=project, plugin_id="recommender_copy", enabled=True, config=owner_config)
    call_command("prepare_demo")  # what `make run` does on each start, through `make demo`
    assert ProjectPlugin.objects.get(project=project, plugin_id="recommender_copy").config == owner_config


# --- discovery ---------------------------------------------------------------------------------------

def test_a_plugin_exiting_at_import_is_listed_broken_and_discovery_goes_on():
    from atelier_sdk import PluginRegistry

    registry = PluginRegistry.discover(extra_paths=["tests.support.exits_at_import:Shout",
                                                    "tests.support.plugins:ReverseText"], entry_point_list=[])
    states = {r.name: r.state for r in registry.records()}
    assert states.get("Shout") == "broken" and registry.get("reverse_text") is not None


# --- model directories -------------------------------------------------------------------------------

def test_a_symlinked_subfolder_outside_the_root_with_pickle_weights_is_refused(tmp_path, models_root):
    outside = tmp_path / "elsewhere" / "unet"
    outside.mkdir(parents=True)
    (outside / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    candidate = model_dir(models_root, "image/v2")
    (candidate / "unet").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelDirError):
        resolve_model_dir("image/v2")


# --- commands given bad arguments ---------------------------------------------------------------------

@pytest.mark.django_db
def test_bootstrap_with_an_empty_username_is_a_command_error(tmp_path, atelier_config):
    atelier_config(data_dir=tmp_path)
    with pytest.raises(CommandError):
        call_command("bootstrap", username="")


@pytest.mark.django_db
def test_register_model_refuses_an_empty_version_name(reverse_plugin, models_root):
    model_dir(models_root, "rev/v2")
    with pytest.raises(CommandError):
        call_command("register_model", plugin="reverse_text", name="", dir="rev/v2")
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["default", "Default", "DEFAULT"])
def test_register_model_refuses_the_name_of_the_plugins_default_model(reverse_plugin, models_root, name):
    """"default" is what provenance, a run's model_versions and the evaluation gate call the unpinned default model: a
    version of that name, pinned, made runs of "the current model" read as the default's, and the gate measured the
    one against the other's runs."""
    from django.core.exceptions import ValidationError

    from atelier_platform.evaluation import gate

    model_dir(models_root, "rev/v2")
    with pytest.raises(CommandError, match="reserved: it names the plugin's own default model"):
        call_command("register_model", plugin="reverse_text", name=name, dir="rev/v2")
    assert not ModelVersion.objects.exists()
    with pytest.raises(ValidationError, match="reserved"):  # any other way a version is made and cleaned
        ModelVersion(plugin_id="reverse_text", version=name, model_dir="rev/v2").full_clean()
    assert gate.DEFAULT_MODEL_NAME == "default"
    call_command("register_model", plugin="reverse_text", name="default-v2", dir="rev/v2")  # a name that holds it
    assert ModelVersion.objects.get().version == "default-v2"


@pytest.mark.django_db
def test_the_admin_cannot_add_a_model_version_around_register_model(admin_client):
    assert admin_client.post("/admin/catalog/modelversion/add/", {"description": "made in the admin"}).status_code == 403
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_register_model_stores_the_directory_relative_to_the_models_root(reverse_plugin, models_root, tmp_path,
                                                                         atelier_config):
    path = model_dir(models_root, "rev/v2")
    call_command("register_model", plugin="reverse_text", name="v2", dir=str(path))  # accepted: it is inside
    assert ModelVersion.objects.get().model_dir == "rev/v2"
    # a GPU host mounting the same models volume elsewhere (the README's compose `models` volume)
    moved = tmp_path / "gpu-host-mount"
    models_root.rename(moved)
    atelier_config(models_root=moved)
    assert resolve_model_dir(ModelVersion.objects.get().model_dir) == (moved / "rev/v2").resolve()


# --- a project's default params ---------------------------------------------------------------------

JOBS = "/api/v1/jobs/"


def set_defaults(project, params):
    ProjectPlugin.objects.filter(project=project, plugin_id="reverse_text").update(config={"params": params})


@pytest.mark.django_db
def test_callers_params_win_over_project_defaults(project, api):
    set_defaults(project, {"uppercase": True})
    plain = api.post(JOBS, {"plugin": "reverse_text", "input": {"text": "ab"}, "params": {"uppercase": False}}, format="json")
    defaulted = api.post(JOBS, {"plugin": "reverse_text", "input": {"text": "ab"}}, format="json")
    assert plain.status_code == defaulted.status_code == 201
    assert Job.objects.get(pk=plain.json()["id"]).params == {"uppercase": False}
    assert Job.objects.get(pk=defaulted.json()["id"]).params == {"uppercase": True}


@pytest.mark.django_db
def test_project_defaults_the_plugin_refuses_cannot_be_saved(project):
    """An owner's default the plugin's Params refuse would make every caller's job answer 400 for a
    field the caller never sent; saving it (admin form, full_clean) should be refused instead."""
    from django.core.exceptions import ValidationError

    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    setting.config = {"params": {"uppercase": "loudly", "colour": "red"}}
    with pytest.raises(ValidationError) as refused:
        setting.full_clean()
    message = " ".join(refused.value.message_dict["config"])
    assert "params.uppercase" in message and "params.colour" in message


@pytest.mark.django_db
def test_a_bad_project_default_does_not_blame_the_caller(project, api):
    """Saved before settings were checked (or the plugin changed since): every caller's job answered 400 over
    a field they never sent. Now it says whose the fault is, and a caller who sends the field gets on."""
    set_defaults(project, {"colour": "red", "uppercase": "loudly"})
    answer = api.post(JOBS, {"plugin": "reverse_text", "input": {"text": "ab"}, "params": {}}, format="json")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "project_defaults_invalid"
    assert set(answer.json()["error"]["details"]) == {"params.colour", "params.uppercase"}
    set_defaults(project, {"uppercase": "loudly"})
    overridden = api.post(JOBS, {"plugin": "reverse_text", "input": {"text": "ab"}, "params": {"uppercase": True}},
                          format="json")
    assert overridden.status_code == 201


@pytest.mark.django_db
def test_a_key_refused_for_its_scopes_creates_no_project_and_does_not_say_it_did():
    import io

    from atelier_platform.accounts.models import Project

    said = io.StringIO()
    with pytest.raises(CommandError, match="bogus"):
        call_command("create_api_key", project="demo2", create_project=True, scopes=["bogus"], stderr=said)
    assert not Project.objects.filter(slug="demo2").exists() and "Created project" not in said.getvalue()


@pytest.mark.django_db
def test_project_defaults_are_checked_as_jobs_read_them(project, api):
    """Checked laxly, a default of 1 for a flag (or "300" for a number) was saved, and every job then failed
    with 409 project_defaults_invalid, for jobs read params strictly, as the JSON they are."""
    from django.core.exceptions import ValidationError

    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    setting.config = {"params": {"uppercase": 1}}
    with pytest.raises(ValidationError) as refused:
        setting.full_clean()
    assert "params.uppercase" in " ".join(refused.value.message_dict["config"])


@pytest.mark.django_db
def test_project_defaults_over_a_server_cap_are_refused_by_the_admin_too(project, atelier_config, empty_plugin_registry):
    """As the settings page and the API refuse them: saved, they would refuse every job that leaves the field to them."""
    from django.core.exceptions import ValidationError

    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    atelier_config(max_new_tokens=64)
    setting = ProjectPlugin(project=project, plugin_id="chatbot", config={"params": {"max_new_tokens": 500}})
    with pytest.raises(ValidationError) as refused:
        setting.full_clean()
    assert "ATELIER_MAX_NEW_TOKENS" in " ".join(refused.value.message_dict["config"])
    setting.config = {"params": {"max_new_tokens": 64}}
    setting.full_clean()
