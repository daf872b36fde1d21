"""Gaps owners and reviewers met, in a real browser: a mistaken blocklist term or allow-list entry could only be
undone by retyping the whole list."""

from __future__ import annotations

from atelier_platform.moderation.models import AllowlistEntry, BlocklistEntry
from tests.frontend.browsing import BROWSER_TESTS, shot, sign_in

pytestmark = BROWSER_TESTS


def test_an_owner_removes_a_blocklist_term_and_an_allow_list_entry_from_the_settings_page(
        live_server, browser, expect, project, member):
    for pattern in ("cheap knock-off", "wool", "free money"):
        BlocklistEntry.objects.create(project=project, pattern=pattern, category="spam")
    for value in ("wool", "linen", "cotton"):
        AllowlistEntry.objects.create(project=project, kind="term", value=value, normalised=value)
    page = sign_in(browser, live_server.url, member(project, "owner").username)
    page.goto(f"{live_server.url}/settings/#blocklist")
    page.on("dialog", lambda dialog: dialog.accept())

    page.fill("#remove_terms", "wool\nwoll")  # one typo: nothing is removed, the line is named
    page.click("#blocklist-remove button")
    expect(page.locator("#blocklist .field-error")).to_contain_text("Line 2: Not in the blocklist")
    expect(page.locator("#remove_terms")).to_have_value("wool\nwoll")
    assert BlocklistEntry.objects.count() == 3
    shot(page, "120-settings-blocklist-remove-refused")
    page.fill("#remove_terms", "wool")
    page.click("#blocklist-remove button")
    expect(page.locator("p.notice")).to_contain_text("Blocklist: 1 term removed, 2 left.")
    assert sorted(BlocklistEntry.objects.values_list("pattern", flat=True)) == ["cheap knock-off", "free money"]

    page.goto(f"{live_server.url}/settings/#allowlist")
    page.get_by_label("Remove linen").check()
    page.get_by_label("Remove cotton").check()
    shot(page, "121-settings-allowlist-ticked")
    page.click("#allowlist-remove button")
    expect(page.locator("p.notice")).to_contain_text("Allow list: 2 entries removed, 1 left.")
    assert list(AllowlistEntry.objects.values_list("value", flat=True)) == ["wool"]
    expect(page.locator("#allowlist label.allow-entry")).to_have_count(1)

    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    page.goto(f"{live_server.url}/settings/#blocklist")
    expect(page.locator("label[for=remove_terms]")).to_have_text("移除屏蔽词，每行一个，与导入时一致")
    shot(page, "122-settings-list-removal-zh")

