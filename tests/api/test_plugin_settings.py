"""A project's plugin settings over the API: ``/api/v1/plugins/{id}/settings/`` (switch, model pin, default params)
and ``/api/v1/model-versions/`` (the versions the project may pin). Promoting a version and rolling it back are both
a PATCH; every refusal is a 4xx naming its field and changes nothing; each change is one audit event."""

from __future__ import annotations

import pytest

from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.jobs.models import Job
from atelier_platform.moderation.models import AuditEvent

pytestmark = pytest.mark.django_db

SETTINGS = "/api/v1/plugins/{}/settings/"
VERSIONS = "/api/v1/model-versions/"


@pytest.fixture
def recommender(empty_plugin_registry):
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    empty_plugin_registry.register(RecommenderCopyPlugin)


@pytest.fixture
def versions(project, other_project):
    return {
        "v1": ModelVersion.objects.create(plugin_id="reverse_text", version="v1", model_dir="reverse/v1"),
        "v2": ModelVersion.objects.create(plugin_id="reverse_text", version="v2", model_dir="reverse/v2"),
        "own": ModelVersion.objects.create(plugin_id="reverse_text", version="ours-ft", model_dir="reverse/ours",
                                           project=project),
        "theirs": ModelVersion.objects.create(plugin_id="reverse_text", version="globex-ft", model_dir="globex/ft",
                                              description="Globex's secret sauce", project=other_project),
        "other_plugin": ModelVersion.objects.create(plugin_id="gpu_reverse", version="g1", model_dir="gpu/g1"),
    }


def patch(client, plugin_id, body):
    return client.patch(SETTINGS.format(plugin_id), body, format="json")


def events():
    return list(AuditEvent.objects.filter(action="plugin_configured").order_by("id"))


def test_the_settings_of_a_plugin_are_read(project, owner_api):
    ProjectPlugin.objects.filter(project=project, plugin_id="reverse_text").update(config={"params": {"uppercase": True}})
    body = owner_api.get(SETTINGS.format("reverse_text")).json()
    assert {k: body[k] for k in ("plugin", "enabled", "model_version", "model_version_name", "defaults")} == {
        "plugin": "reverse_text", "enabled": True, "model_version": None, "model_version_name": None,
        "defaults": {"uppercase": True}}


def test_a_plugin_not_installed_is_404_whatever_the_body(owner_api):
    for answer in (owner_api.get(SETTINGS.format("nope")), patch(owner_api, "nope", {"enabled": "not a flag"})):
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert not ProjectPlugin.objects.filter(plugin_id="nope").exists()


def test_defaults_are_set_and_used_by_the_next_job_and_audited_by_name(project, owner_api):
    answer = patch(owner_api, "reverse_text", {"defaults": {"uppercase": True}})
    assert answer.status_code == 200 and answer.json()["defaults"] == {"uppercase": True}
    job = owner_api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "ab"}}, format="json")
    assert Job.objects.get(pk=job.json()["id"]).params == {"uppercase": True}
    (event,) = events()
    assert event.actor.startswith("key:") and event.before["default_params"] == []
    assert event.after["default_params"] == ["uppercase"] and event.after["changed_params"] == ["uppercase"]
    assert patch(owner_api, "reverse_text", {"defaults": {}}).json()["defaults"] == {}
    assert ProjectPlugin.objects.get(project=project, plugin_id="reverse_text").config == {}


def test_a_plugin_never_configured_is_switched_on_through_the_api(project, owner_api):
    ProjectPlugin.objects.filter(project=project, plugin_id="gpu_reverse").delete()
    assert owner_api.get(SETTINGS.format("gpu_reverse")).json()["enabled"] is False
    assert patch(owner_api, "gpu_reverse", {"enabled": True}).json()["enabled"] is True
    assert ProjectPlugin.objects.get(project=project, plugin_id="gpu_reverse").enabled


def test_promote_then_roll_back(project, owner_api, versions):
    promoted = patch(owner_api, "reverse_text", {"model_version": versions["v2"].pk}).json()
    assert (promoted["model_version"], promoted["model_version_name"]) == (versions["v2"].pk, "v2")
    listed = {v["version"]: v for v in owner_api.get(f"{VERSIONS}?plugin=reverse_text").json()["results"]}
    assert listed["v2"]["pinned"] and not listed["v1"]["pinned"]
    back = patch(owner_api, "reverse_text", {"model_version": versions["v1"].pk}).json()
    assert back["model_version_name"] == "v1"
    assert patch(owner_api, "reverse_text", {"model_version": None}).json()["model_version"] is None
    assert [(e.before["model_version"], e.after["model_version"]) for e in events()] == [
        (None, "v2"), ("v2", "v1"), ("v1", None)]
    assert ProjectPlugin.objects.get(project=project, plugin_id="reverse_text").enabled  # a pin left the switch alone


def test_the_versions_listed_are_the_shared_ones_and_the_projects_own(owner_api, versions):
    body = owner_api.get(VERSIONS).json()
    assert set(body) == {"next", "previous", "results"}
    assert {(v["version"], v["shared"]) for v in body["results"]} == {
        ("v1", True), ("v2", True), ("ours-ft", False), ("g1", True)}
    assert "globex" not in str(body).lower()
    assert {v["version"] for v in owner_api.get(f"{VERSIONS}?plugin=gpu_reverse").json()["results"]} == {"g1"}


@pytest.mark.parametrize("version", ["theirs", "other_plugin", 999999])
def test_an_unknown_or_foreign_version_is_a_field_error_and_changes_nothing(project, owner_api, versions, version):
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    pk = versions[version].pk if isinstance(version, str) else version
    answer = patch(owner_api, "reverse_text", {"enabled": False, "model_version": pk})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "validation_error" and set(error["details"]) == {"model_version"}
    assert "globex" not in answer.content.decode().lower()
    setting.refresh_from_db()
    assert (setting.enabled, setting.model_version_id) == (True, None) and not events()


@pytest.mark.parametrize("defaults, fields", [
    ({"uppercase": "loudly"}, {"defaults.uppercase"}),
    ({"uppercase": 1}, {"defaults.uppercase"}),  # strict, as a job reads it: 1 is no flag
    ({"colour": "red", "uppercase": True}, {"defaults.colour"}),
    ({"uppercase": True, "colour": "a\x00b"}, {"defaults.colour"}),
])
def test_bad_defaults_are_field_errors_and_nothing_is_saved(project, owner_api, defaults, fields):
    answer = patch(owner_api, "reverse_text", {"enabled": False, "defaults": defaults})
    assert answer.status_code == 400 and set(answer.json()["error"]["details"]) == fields
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    assert (setting.enabled, setting.config) == (True, {}) and not events()


@pytest.mark.parametrize("body", [{"defaults": [1]}, {"defaults": None}, {"enabled": None}, {"model_version": "v2"},
                                  {"model_version": 0}, {"model_version": 2**63}, {"plugin": "chatbot"}, [1], "x"])
def test_a_malformed_body_is_a_400(project, owner_api, body):
    answer = owner_api.patch(SETTINGS.format("reverse_text"), body, format="json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "validation_error"
    assert not events()


def test_the_recommenders_brand_voice_is_set_and_checked(project, owner_api, recommender):
    voice = {"brand_voice": "Warm, plain, never pushy.", "banned_words": ["cheap", "guarantee"], "max_chars": 160}
    answer = patch(owner_api, "recommender_copy", {"enabled": True, "defaults": voice})
    assert answer.status_code == 200 and answer.json()["defaults"] == voice
    too_short = patch(owner_api, "recommender_copy", {"defaults": {**voice, "max_chars": 5, "banned_words": "cheap"}})
    assert set(too_short.json()["error"]["details"]) == {"defaults.max_chars", "defaults.banned_words"}
    assert owner_api.get(SETTINGS.format("recommender_copy")).json()["defaults"] == voice
    (event,) = events()
    assert "Warm" not in str(event.after) and "cheap" not in str(event.after)  # names, never the brand's words


def test_nothing_changed_is_no_audit_event(owner_api):
    assert patch(owner_api, "reverse_text", {"enabled": True, "defaults": {}}).status_code == 200
    assert not events()


def test_one_projects_settings_never_touch_anothers(project, other_project, owner_api, versions):
    ProjectPlugin.objects.filter(project=other_project, plugin_id="reverse_text").update(
        config={"params": {"uppercase": True}}, model_version=versions["theirs"])
    assert owner_api.get(SETTINGS.format("reverse_text")).json()["defaults"] == {}
    patch(owner_api, "reverse_text", {"enabled": False, "defaults": {"uppercase": False}, "model_version": versions["v1"].pk})
    theirs = ProjectPlugin.objects.get(project=other_project, plugin_id="reverse_text")
    assert (theirs.enabled, theirs.config, theirs.model_version_id) == (
        True, {"params": {"uppercase": True}}, versions["theirs"].pk)
    assert not any(v["pinned"] for v in owner_api.get(VERSIONS).json()["results"] if v["version"] != "v1")


@pytest.mark.parametrize("scopes", [["jobs:read"], ["jobs:read", "jobs:write", "reviews:read", "reviews:write"]])
def test_reading_and_changing_need_admin(project, make_key, client_for, scopes):
    """The defaults may hold a brand's private voice, the versions its private fine-tunes."""
    client = client_for(make_key(project, scopes).raw)
    for answer in (client.get(SETTINGS.format("reverse_text")), client.get(VERSIONS),
                   patch(client, "reverse_text", {"enabled": False})):
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "permission_denied"


def test_a_field_the_plugin_does_not_name_is_refused_even_where_its_params_would_ignore_it(project, owner_api,
                                                                                          empty_plugin_registry):
    """pydantic's default ignores unknown fields: saved silently, a typo (``max_char``) would seem to set a default
    that no job ever reads."""
    from pydantic import BaseModel

    from tests.support.plugins import ReverseText

    class LenientParams(BaseModel):  # extra fields ignored, pydantic's default
        uppercase: bool = False

    class Lenient(ReverseText):
        manifest = ReverseText.manifest.model_copy(update={"id": "lenient"})
        Params = LenientParams

    empty_plugin_registry.register(Lenient)
    answer = patch(owner_api, "lenient", {"defaults": {"uppercase": True, "colour": "red"}})
    assert answer.status_code == 400 and set(answer.json()["error"]["details"]) == {"defaults.colour"}
    assert "uppercase" in answer.json()["error"]["details"]["defaults.colour"][0]  # says what it takes
    assert not ProjectPlugin.objects.filter(plugin_id="lenient").exists()


def test_a_default_over_a_server_cap_is_refused_rather_than_refusing_every_job(project, owner_api, atelier_config,
                                                                               empty_plugin_registry):
    """Saved, a default of 500 new tokens under ATELIER_MAX_NEW_TOKENS=64 refused every job that left the field to it
    with limit_exceeded, as if its caller had asked for 500."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    atelier_config(max_new_tokens=64)
    answer = patch(owner_api, "chatbot", {"enabled": True, "defaults": {"max_new_tokens": 500}})
    assert answer.status_code == 400, answer.content
    details = answer.json()["error"]["details"]
    assert list(details) == ["defaults.max_new_tokens"] and "ATELIER_MAX_NEW_TOKENS" in details["defaults.max_new_tokens"][0]
    assert not ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").exists()  # the switch neither
    answer = patch(owner_api, "chatbot", {"enabled": True, "defaults": {"max_new_tokens": 64}})
    assert answer.status_code == 200 and answer.json()["defaults"] == {"max_new_tokens": 64}
