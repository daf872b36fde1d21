"""An owner sets the recommender's brand voice on the settings page, in a real browser."""

from __future__ import annotations

from atelier_platform.catalog.models import ProjectPlugin
from tests.frontend.browsing import BROWSER_TESTS, SHOTS

pytestmark = BROWSER_TESTS


def test_in_a_browser_an_owner_sets_the_brand_voice_and_is_shown_a_refused_field(live_server, browser, expect, project,
                                                                                 member, empty_plugin_registry):
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin
    from tests.frontend.browsing import PASSWORD, sign_in

    empty_plugin_registry.register(RecommenderCopyPlugin)
    ProjectPlugin.objects.create(project=project, plugin_id="recommender_copy", enabled=True)
    owner = member(project, "owner")
    owner.set_password(PASSWORD)
    owner.save()
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/#plugins")  # (a fragment: the refused page comes back with it)
    defaults = page.locator("#defaults-recommender_copy")
    defaults.locator("summary").click()
    defaults.get_by_label("Brand Voice").fill("Warm, plain, never pushy.")
    defaults.get_by_label("Banned Words").fill('["cheap", "guarantee"]')
    defaults.get_by_label("Max Chars").fill("5")
    defaults.get_by_role("button", name="Save defaults").click()
    # refused: the form comes back open, as typed, the error beside its field, the focus on it; nothing saved
    field = page.locator("#defaults-recommender_copy [data-field='params.max_chars']")
    expect(field.locator(".field-error")).to_contain_text("greater than or equal to 20")
    expect(page.locator("#d-recommender_copy-f-params-max_chars")).to_be_focused()
    expect(page.locator("#d-recommender_copy-f-params-brand_voice")).to_have_value("Warm, plain, never pushy.")
    assert ProjectPlugin.objects.get(project=project, plugin_id="recommender_copy").config == {}
    page.locator("#defaults-recommender_copy").screenshot(path=str(SHOTS / "62-settings-plugin-defaults-refused.png"))

    page.locator("#d-recommender_copy-f-params-max_chars").fill("160")
    page.locator("#defaults-recommender_copy").get_by_role("button", name="Save defaults").click()
    expect(page.locator("#defaults-recommender_copy summary")).to_contain_text("3 defaults set")
    assert page.url.endswith("#defaults-recommender_copy")  # back at the plugin saved, not at the top of the page
    assert ProjectPlugin.objects.get(project=project, plugin_id="recommender_copy").config["params"] == {
        "brand_voice": "Warm, plain, never pushy.", "banned_words": ["cheap", "guarantee"], "max_chars": 160}
    page.locator("#defaults-recommender_copy summary").click()
    expect(page.locator("#d-recommender_copy-f-params-max_chars")).to_have_value("160")
    page.locator("#plugins").screenshot(path=str(SHOTS / "62-settings-plugin-defaults.png"))
