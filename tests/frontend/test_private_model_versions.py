"""The settings page's model versions are the shared ones and the project's own: another tenant's private version
(its fine-tune) is neither listed nor pinnable, a forged form naming it included."""

from __future__ import annotations

import pytest

from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.moderation.models import AuditEvent
from tests.frontend.test_dashboard_fixes import in_chinese

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(project, signed_in):
    return signed_in(project, "owner")


@pytest.fixture
def versions(project, other_project):
    return {
        "shared": ModelVersion.objects.create(plugin_id="reverse_text", version="v2", model_dir="reverse/v2"),
        "own": ModelVersion.objects.create(plugin_id="reverse_text", version="ours-ft", model_dir="reverse/ours",
                                           description="our brand voice", project=project),
        "theirs": ModelVersion.objects.create(plugin_id="reverse_text", version="globex-ft", model_dir="globex/ft",
                                              description="Globex's secret sauce", project=other_project),
    }


def test_the_list_holds_the_shared_versions_and_the_projects_own_never_another_projects(owner, versions):
    page = owner.get("/settings/").content.decode()
    assert f'<option value="{versions["shared"].pk}" >v2 · reverse/v2 · ' in page
    assert f'<option value="{versions["own"].pk}" >ours-ft · reverse/ours · ' in page
    assert "this project's own</option>" in page  # the private one is marked as the project's
    assert page.count("this project's own") == 1  # and the shared one is not
    for trace in ("globex-ft", "globex/ft", "Globex", f'value="{versions["theirs"].pk}"'):
        assert trace not in page


def test_the_other_project_sees_its_own_and_not_this_ones(other_project, signed_in, versions):
    page = signed_in(other_project, "owner").get("/settings/").content.decode()
    assert "globex-ft · globex/ft · " in page and "v2 · reverse/v2 · " in page
    assert "ours-ft" not in page and "reverse/ours" not in page


def test_the_projects_own_version_is_pinned(project, owner, versions):
    owner.post("/settings/", {"action": "plugin", "plugin": "reverse_text", "enabled": "on",
                              "model_version": str(versions["own"].pk)})
    assert ProjectPlugin.objects.get(project=project, plugin_id="reverse_text").model_version == versions["own"]


def test_a_forged_pin_to_another_projects_version_is_refused_and_changes_nothing(project, owner, versions):
    owner.post("/settings/", {"action": "plugin", "plugin": "reverse_text", "enabled": "on",
                              "model_version": str(versions["shared"].pk)})
    audit = list(AuditEvent.objects.values_list("pk", flat=True))
    response = owner.post("/settings/", {"action": "plugin", "plugin": "reverse_text",  # switched off too
                                         "model_version": str(versions["theirs"].pk)})
    page = response.content.decode()
    assert response.status_code == 400 and "No such model version for this plugin." in page
    assert "globex" not in page.lower()  # not even named in the refusal
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    assert (setting.enabled, setting.model_version) == (True, versions["shared"])
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == audit


def test_the_forged_pins_refusal_and_the_private_mark_are_in_the_pages_language(project, owner, versions):
    in_chinese(owner)
    assert "本项目专用</option>" in owner.get("/settings/").content.decode()
    response = owner.post("/settings/", {"action": "plugin", "plugin": "reverse_text", "enabled": "on",
                                         "model_version": str(versions["theirs"].pk)})
    assert response.status_code == 400 and "此插件没有这个模型版本。" in response.content.decode()
    assert ProjectPlugin.objects.get(project=project, plugin_id="reverse_text").model_version is None
