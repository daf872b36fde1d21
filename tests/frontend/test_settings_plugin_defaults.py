"""The settings page's default params of each plugin: a form generated from the plugin's params schema (the
recommender's brand voice, banned words, max chars...), where an empty field sets no default, refused fields are
marked beside themselves in the page's language, and nothing is saved on any error."""

from __future__ import annotations

import re

import pytest

from atelier_platform.catalog.models import ProjectPlugin
from atelier_platform.moderation.models import AuditEvent
from tests.frontend.test_dashboard_fixes import in_chinese

pytestmark = pytest.mark.django_db


@pytest.fixture
def recommender(project, empty_plugin_registry):
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    empty_plugin_registry.register(RecommenderCopyPlugin)
    ProjectPlugin.objects.create(project=project, plugin_id="recommender_copy", enabled=True)


@pytest.fixture
def owner(project, signed_in):
    return signed_in(project, "owner")


def saved(project, plugin_id="recommender_copy") -> dict:
    return ProjectPlugin.objects.get(project=project, plugin_id=plugin_id).config.get("params", {})


def form(**fields) -> dict:
    return {"action": "plugin_defaults", "plugin": "recommender_copy", **fields}


def field_block(page: str, name: str) -> str:
    """The markup of one field of the recommender's defaults form."""
    start = page.index(f'data-field="{name}"', page.index('data-plugin-defaults="recommender_copy"'))
    return page[start:page.index("</div>", start)]


def test_each_plugin_has_a_form_of_its_params(owner, recommender):
    page = owner.get("/settings/").content.decode()
    voice = field_block(page, "params.brand_voice")
    assert "<textarea" in voice and "Brand Voice" in voice
    assert 'type="number"' in field_block(page, "params.max_chars") and 'placeholder="220"' in field_block(page, "params.max_chars")
    assert "<textarea" in field_block(page, "params.banned_words")
    # the reverse test plugin's flag: the plugin's default, yes or no (a checkbox could not say "no default")
    flag = page[page.index('data-plugin-defaults="reverse_text"'):]
    assert '<select id="d-reverse_text-f-params-uppercase" name="params.uppercase"' in flag


def test_the_brand_voice_is_saved_and_shown_and_audited(project, owner, recommender):
    answer = owner.post("/settings/", form(**{"params.brand_voice": "Warm and plain.", "params.banned_words": '["cheap"]',
                                              "params.max_chars": "160", "params.diversity": "", "params.seed": ""}))
    assert answer.status_code == 302
    assert saved(project) == {"brand_voice": "Warm and plain.", "banned_words": ["cheap"], "max_chars": 160}
    page = owner.get(answer["Location"]).content.decode()
    assert "Default params of Recommendations with personalised copy saved" in page
    assert "Warm and plain.</textarea>" in field_block(page, "params.brand_voice")
    assert 'value="160"' in field_block(page, "params.max_chars")
    assert "3 defaults set" in page
    (event,) = AuditEvent.objects.filter(action="plugin_configured")
    assert event.after["changed_params"] == ["banned_words", "brand_voice", "max_chars"]


def test_an_emptied_field_removes_its_default(project, owner, recommender):
    ProjectPlugin.objects.filter(project=project, plugin_id="recommender_copy").update(
        config={"params": {"brand_voice": "Loud.", "max_chars": 100}})
    assert owner.post("/settings/", form(**{"params.brand_voice": "", "params.max_chars": "100"})).status_code == 302
    assert saved(project) == {"max_chars": 100}


def test_a_flag_may_be_set_either_way_or_left_to_the_plugin(project, owner):
    def post(value):
        return owner.post("/settings/", {"action": "plugin_defaults", "plugin": "reverse_text", "params.uppercase": value})

    assert post("false").status_code == 302 and saved(project, "reverse_text") == {"uppercase": False}
    assert post("true").status_code == 302 and saved(project, "reverse_text") == {"uppercase": True}
    assert post("").status_code == 302 and saved(project, "reverse_text") == {}
    assert post("maybe").status_code == 400 and saved(project, "reverse_text") == {}


def test_refused_fields_are_marked_beside_themselves_and_nothing_is_saved(project, owner, recommender):
    ProjectPlugin.objects.filter(project=project, plugin_id="recommender_copy").update(
        config={"params": {"brand_voice": "Kept."}})
    response = owner.post("/settings/", form(**{"params.brand_voice": "New voice", "params.max_chars": "5",
                                                "params.banned_words": '["ok", ""]'}))
    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-plugin-defaults="recommender_copy" open' in page  # the form refused is open, as typed
    assert "Input should be greater than or equal to 20" in field_block(page, "params.max_chars")
    assert 'value="5"' in field_block(page, "params.max_chars")
    assert "at least 1 character" in field_block(page, "params.banned_words")
    assert "New voice</textarea>" in field_block(page, "params.brand_voice")
    assert saved(project) == {"brand_voice": "Kept."}
    assert not AuditEvent.objects.filter(action="plugin_configured").exists()


def test_unreadable_json_is_marked_and_nothing_is_saved(project, owner, recommender):
    response = owner.post("/settings/", form(**{"params.brand_voice": "Warm", "params.banned_words": "cheap, nasty"}))
    assert response.status_code == 400 and "Not valid JSON" in field_block(response.content.decode(), "params.banned_words")
    assert saved(project) == {}


def test_the_errors_and_the_form_are_in_the_pages_language(project, owner, recommender):
    in_chinese(owner)
    page = owner.get("/settings/").content.decode()
    assert "默认参数" in page and "品牌语调" in field_block(page, "params.brand_voice")
    response = owner.post("/settings/", form(**{"params.max_chars": "5"}))
    block = field_block(response.content.decode(), "params.max_chars")
    assert response.status_code == 400 and "20" in block and "Input should be" not in block
    assert re.search(r"[\u4e00-\u9fff]", block.split("field-error")[1])


def test_saved_defaults_the_plugin_does_not_take_are_named_and_go_on_saving(project, owner):
    ProjectPlugin.objects.filter(project=project, plugin_id="reverse_text").update(
        config={"params": {"colour": "red", "uppercase": True}})
    page = owner.get("/settings/").content.decode()
    assert "Saved defaults this plugin does not take: colour." in page
    owner.post("/settings/", {"action": "plugin_defaults", "plugin": "reverse_text", "params.uppercase": "true"})
    assert saved(project, "reverse_text") == {"uppercase": True}


def test_saved_defaults_above_a_cap_lowered_since_are_named_in_the_pages_language(project, owner, recommender,
                                                                                   atelier_config):
    """An operator lowered a cap after an owner saved a default above it: each job left to that default is refused,
    so the page says which default and which cap, as it does for defaults the plugin no longer takes."""
    ProjectPlugin.objects.filter(project=project, plugin_id="recommender_copy").update(
        config={"params": {"max_chars": 200, "brand_voice": "Warm."}})
    page = owner.get("/settings/").content.decode()
    assert "over-caps" not in page  # no cap yet: nothing to say
    atelier_config(plugin_limits='{"recommender_copy": {"params.max_chars": 120}}')
    page = owner.get("/settings/").content.decode()
    block = page[page.index('data-plugin-defaults="recommender_copy"'):]
    assert ("Saved defaults above this server's caps: max_chars (at most 120 on this server, ATELIER_PLUGIN_LIMITS). "
            "Each job that leaves them to these defaults is refused while they stay") in block.replace("&#x27;", "'")
    in_chinese(owner)
    page = owner.get("/settings/").content.decode()
    assert "已保存的默认值超出本服务器的上限：max_chars（本服务器上限为 120，ATELIER_PLUGIN_LIMITS）" in page
    # lowered and saved, the warning goes
    owner.post("/settings/", form(**{"params.max_chars": "100", "params.brand_voice": "Warm."}))
    assert saved(project)["max_chars"] == 100 and "over-caps" not in owner.get("/settings/").content.decode()


def test_a_plugin_not_installed_is_refused(project, owner):
    response = owner.post("/settings/", {"action": "plugin_defaults", "plugin": "nope", "params.x": "1"})
    assert response.status_code == 400 and "No such plugin is installed." in response.content.decode()


def test_only_owners_set_defaults(project, signed_in):
    editor = signed_in(project, "editor")
    response = editor.post("/settings/", {"action": "plugin_defaults", "plugin": "reverse_text", "params.uppercase": "true"})
    assert response.status_code == 403 and saved(project, "reverse_text") == {}
