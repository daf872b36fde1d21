"""Gaps owners and reviewers met, in a real browser: a mistaken blocklist term or allow-list entry could only be
undone by retyping the whole list, and the review queue's bulk button said "Approve all 150" while one click
approved 100."""

from __future__ import annotations

from atelier_platform.moderation.models import AllowlistEntry, BlocklistEntry, ReviewItem
from tests.frontend.browsing import BROWSER_TESTS, SHOTS, shot, shown_item, sign_in

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


def test_the_bulk_button_past_its_limit_says_how_many_one_click_approves_and_what_is_left(
        live_server, browser, expect, project, member, submit, run_job, monkeypatch):
    from atelier_frontend import views

    monkeypatch.setattr(views, "BULK_LIMIT", 2)  # 100 in use: the same words with 2 of 3
    editor = member(project, "editor")
    for text in ("first", "second", "third"):
        run_job(submit(project, text=text, user=editor))
    page = sign_in(browser, live_server.url, member(project, "reviewer").username)
    shown_item(page, expect)
    bulk = page.locator("#bulk-approve")
    expect(bulk).to_have_text("Approve 2 of 3 unflagged items")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    bulk.click()
    expect(page.locator("#flash")).to_have_text(
        "Approved without review: 2 items. 1 more unflagged item is left: press the button again to approve it.")
    assert asked == ["Approve the first 2 of 3 unflagged items without looking at them? The other 1 wait for the next "
                     "click."]
    assert ReviewItem.objects.filter(state="open").count() == 1
    expect(bulk).to_have_text("Approve 1 unflagged item")  # what is left, for the next click
    expect(bulk).to_be_visible()
    shot(page, "123-review-bulk-limit-said")


def test_an_owner_reads_one_endpoints_deliveries_and_rotates_its_secret(live_server, browser, expect, project, member):
    from datetime import timedelta

    from django.utils import timezone

    from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint

    quiet = WebhookEndpoint.objects.create(project=project, url="https://quiet.example.com/hook", secret="whsec_old")
    busy = WebhookEndpoint.objects.create(project=project, url="https://busy.example.com/hook", secret="whsec_b")
    for endpoint, count, age in ((quiet, 3, timedelta(days=2)), (busy, 40, timedelta(0))):
        for number in range(count):
            delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", payload={},
                                                      event_id=f"{endpoint.url}-{number}", status="succeeded",
                                                      attempts=1, max_attempts=3)
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                created_at=timezone.now() - age - timedelta(minutes=number))
    page = sign_in(browser, live_server.url, member(project, "owner").username)
    page.goto(f"{live_server.url}/settings/#webhooks")
    log = page.locator("#delivery-log tbody tr")
    expect(log).to_have_count(30)
    expect(page.locator("#delivery-log")).not_to_contain_text("quiet.example.com")  # behind the busy one's
    page.locator(f"tr[data-endpoint='{quiet.pk}'] a.endpoint-deliveries").click()
    expect(log).to_have_count(3)
    expect(page.locator("#delivery-filters select")).to_have_value(str(quiet.pk))
    shot(page, "124-settings-deliveries-of-one-endpoint")
    page.select_option("#delivery-filters select", "")
    page.click("#delivery-filters button")
    page.click("#deliveries-older")
    expect(log).to_have_count(13)  # the busy endpoint's 10 oldest and the quiet one's 3
    expect(page.locator("#deliveries-newest")).to_be_visible()

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.locator(f"tr[data-endpoint='{quiet.pk}'] button.rotate-secret").click()
    expect(page.locator("#new-webhook")).to_contain_text("New signing secret of https://quiet.example.com/hook")
    quiet.refresh_from_db()
    expect(page.locator("#new-webhook-secret")).to_have_text(quiet.secret)
    assert quiet.secret != "whsec_old" and asked == [
        "Replace the signing secret of https://quiet.example.com/hook? The current secret still signs every delivery "
        "for 24 hours, for your receiver to switch over."]
    shot(page, "125-settings-webhook-secret-rotated")
    page.reload()
    expect(page.locator("#new-webhook")).to_have_count(0)  # shown once
    page.locator(f"tr[data-endpoint-edit='{quiet.pk}'] summary").click()
    expect(page.locator(f"tr[data-endpoint-edit='{quiet.pk}'] .previous-secrets")).to_contain_text(
        "Secrets rotated away that still sign its deliveries:")
    page.locator(f"tr[data-endpoint-edit='{quiet.pk}'] .previous-secrets").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "126-settings-webhook-previous-secrets.png"))
