"""A reviewer's day in a real browser, where the queue decided what nobody had seen or lost what was typed: a panel
that did not load left the item before it on the screen while "a" approved the next one, a rejection the server
never got threw its comment away, the review service's refusals came in English written for programs ("claim it
with POST .../claim/") on Chinese pages, and "n" (next) did nothing while an item was shown. And its rough edges: a
skipped item came first again after a reload, the bulk button kept counting items decided one by one, the reject
picker could be closed on a phone only by tapping beside it, and the header named the item's database id
("Item 62") rather than where the reviewer was in the queue."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from atelier_platform.moderation.models import ReviewDecision, ReviewItem
from tests.frontend.browsing import BROWSER_TESTS, chinese_review_queue_on_a_tablet, given_back, shot, shown_item, sign_in

pytestmark = BROWSER_TESTS


def reviewing(browser, live_server, project, member, submit, run_job, texts):
    editor = member(project, "editor")
    for text in texts:
        run_job(submit(project, text=text, user=editor))
    return sign_in(browser, live_server.url, member(project, "reviewer").username)


def test_a_panel_that_does_not_load_leaves_nothing_to_decide_on_the_screen(
        live_server, browser, expect, project, member, submit, run_job):
    page = reviewing(browser, live_server, project, member, submit, run_job, ("first", "second"))
    first = shown_item(page, expect)
    page.route("**/review/items/**", lambda route: route.abort("internetdisconnected"))
    page.keyboard.press("a")
    expect(page.locator("#flash")).to_have_text("Could not load the next item: The server could not be reached: "
                                                "check the connection and try again.")
    # the first item (approved) is not left on the screen as if it were the second, which nobody has seen
    expect(page.locator("#review-item .output-content")).to_have_count(0)
    expect(page.locator("#queue-retry")).to_have_text("Press n to try again.")
    page.keyboard.press("a")
    page.wait_for_timeout(500)
    assert list(ReviewDecision.objects.values_list("item_id", flat=True)) == [int(first)]
    second = ReviewItem.objects.exclude(pk=first).get()
    assert second.lease_holder == ""  # handed back for whoever is next

    page.unroute("**/review/items/**")
    page.keyboard.press("n")
    assert shown_item(page, expect) == str(second.pk)
    expect(page.locator("#review-item .output-content")).to_contain_text("dnoces")


def test_a_page_gives_back_only_the_lease_it_holds_not_the_one_the_reviewers_next_page_took(
        live_server, browser, expect, project, member, submit, run_job):
    """A page whose panel fetch was cut off (as when it goes away: a reload, another language) gives its item back. By
    then the reviewer's next page may have claimed that item again, with a later lease: that one stays. (It was given
    back with the page's, and the next page's "a" was refused as if its lease had run out.)"""
    page = reviewing(browser, live_server, project, member, submit, run_job, ("first",))
    item = shown_item(page, expect)
    held = []
    page.route("**/review/items/**", lambda route: held.append(route))  # the panel's answer waits
    page.reload()
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(25)
    claimed = ReviewItem.objects.get(pk=item)
    assert claimed.lease_holder and held, "the reloaded page claimed the item and asked for its panel"
    # meanwhile the reviewer's next page claims the item again: the same reviewer, a later lease
    later = claimed.lease_expires_at + timedelta(seconds=30)
    ReviewItem.objects.filter(pk=item).update(lease_expires_at=later)

    with page.expect_response("**/release/**") as released:
        held[0].abort("internetdisconnected")
    assert released.value.status == 409  # not the lease this page held
    kept = ReviewItem.objects.get(pk=item)
    assert (kept.lease_holder, kept.lease_expires_at) == (claimed.lease_holder, later)


def test_a_rejection_the_server_never_got_keeps_its_comment_to_send_again(
        live_server, browser, expect, project, member, submit, run_job):
    page = reviewing(browser, live_server, project, member, submit, run_job, ("first",))
    shown_item(page, expect)
    page.keyboard.press("r")
    page.fill("#reject-comment", "claims a discount the shop does not offer")
    page.keyboard.press("Escape")  # a second thought, then back to it
    page.keyboard.press("r")
    expect(page.locator("#reject-comment")).to_have_value("claims a discount the shop does not offer")

    page.route("**/decision/", lambda route: route.abort("internetdisconnected"))
    page.locator("#reject-picker button[data-reason]").first.click()
    unreachable = "The server could not be reached: check the connection and try again."
    expect(page.locator("#reject-error")).to_have_text(unreachable)
    expect(page.locator("#reject-picker")).to_be_visible()
    expect(page.locator("#reject-comment")).to_have_value("claims a discount the shop does not offer")

    page.unroute("**/decision/")
    page.locator("#reject-picker button[data-reason]").first.click()
    expect(page.locator("#flash")).to_contain_text("Rejected")
    expect(page.locator("#reject-picker")).to_be_hidden()
    decision = ReviewDecision.objects.get()
    assert (decision.action, decision.comment) == ("reject", "claims a discount the shop does not offer")


def test_refusals_are_said_in_the_pages_language_in_a_reviewers_terms(
        live_server, browser, expect, project, member, submit, run_job):
    own = member(project, "owner")
    run_job(submit(project, text="the owner's own", user=own))
    run_job(submit(project, text="an editor's", user=member(project, "editor")))
    page = sign_in(browser, live_server.url, own.username)
    page.goto(f"{live_server.url}/review/")
    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("h1")).to_have_text("审核队列")
    shown = shown_item(page, expect)
    assert ReviewItem.objects.get(pk=shown).output.job.submitted_by == own

    page.keyboard.press("a")
    expect(page.locator("#flash")).to_have_text("此任务是你提交的：必须由另一位审核员批准。你可以拒绝它或让它重新生成。")

    ReviewItem.objects.filter(pk=shown).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    page.keyboard.press("a")
    expect(page.locator("#flash")).to_have_text("未保存：你对此条目的占用已到期。延长占用可保留它，或按 n 领取下一条。")
    ReviewItem.objects.filter(pk=shown).update(lease_holder="user:0")  # another reviewer took it meanwhile
    page.click("#lease-extend")
    expect(page.locator("#flash")).to_have_text("你的占用到期后，另一位审核员领取了此条目：按 n 领取下一条。")
    assert "POST" not in page.locator("#flash").inner_text()


def test_n_moves_on_from_an_item_and_the_items_passed_over_come_back_once_nothing_else_is_left(
        live_server, browser, expect, project, member, submit, run_job):
    page = reviewing(browser, live_server, project, member, submit, run_job, ("first", "second"))
    first = shown_item(page, expect)
    page.keyboard.press("n")
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", first)
    second = shown_item(page, expect)
    assert ReviewItem.objects.get(pk=first).lease_holder == ""  # left for later, for anyone
    page.keyboard.press("n")  # nothing else is left: the one passed over first, not "nothing to review"
    expect(page.locator("#review-item")).to_have_attribute("data-item", first)
    expect(page.locator("#flash")).to_have_text("Nothing else is left: back to the items you skipped.")
    expect(page.locator("#queue-empty")).to_have_count(0)
    page.keyboard.press("n")
    expect(page.locator("#review-item")).to_have_attribute("data-item", second)


def test_the_chinese_tablet_queue_says_a_lapsed_lease_in_chinese(live_server, browser, expect, project, member, submit,
                                                                  run_job):
    run_job(submit(project, text="first", user=member(project, "editor")))
    page = chinese_review_queue_on_a_tablet(live_server, browser, expect, member(project, "reviewer"))
    shown = shown_item(page, expect)
    ReviewItem.objects.filter(pk=shown).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    page.locator("#shortcut-legend button[data-key=r]").tap()
    page.locator("#reject-picker button[data-reason]").first.tap()
    expect(page.locator("#reject-error")).to_have_text("未保存：你对此条目的占用已到期。延长占用可保留它，或按 n 领取下一条。")


def test_a_double_click_or_a_held_key_decides_only_the_item_on_the_screen(
        live_server, browser, expect, project, member, submit, run_job):
    page = reviewing(browser, live_server, project, member, submit, run_job, [f"item {n}" for n in range(4)])
    first = shown_item(page, expect)
    box = page.locator("#shortcut-legend button[data-key=a]").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # a person's double click: its second click comes a moment later, once the next item is on the screen
    page.mouse.move(x, y)
    page.mouse.down(click_count=1)
    page.mouse.up(click_count=1)
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", first)
    second = shown_item(page, expect)
    page.mouse.down(click_count=2)
    page.mouse.up(click_count=2)
    page.wait_for_timeout(500)
    assert list(ReviewDecision.objects.values_list("item_id", flat=True)) == [int(first)]
    assert shown_item(page, expect) == second

    # "a" held down: the keyboard repeats it, and only the first press decides
    page.keyboard.down("a")
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", second)
    for _ in range(10):
        page.keyboard.down("a")  # Playwright sends these as repeats, as a held key does
        page.wait_for_timeout(30)
    page.keyboard.up("a")
    page.wait_for_timeout(500)
    assert sorted(ReviewDecision.objects.values_list("item_id", flat=True)) == sorted([int(first), int(second)])


def test_the_queue_filtered_on_a_plugin_shows_and_bulk_approves_that_plugins_items_only(
        live_server, browser, expect, chat_project, member, submit, run_job):
    from atelier_platform.jobs.submission import JobRequest, submit_job

    editor = member(chat_project, "editor")
    for text in ("first", "second"):
        run_job(submit(chat_project, text=text, user=editor))
    for question in ("Can I return shoes?", "Do you ship to Lyon?"):
        request = JobRequest(plugin_id="turn_counter", input={"messages": [{"role": "user", "content": question}]}, params={})
        run_job(submit_job(chat_project, request, submitted_by=editor).job)
    page = sign_in(browser, live_server.url, member(chat_project, "reviewer").username)
    expect(page.locator("#bulk-approve")).to_have_text("Approve all 4 unflagged items")
    page.select_option("#review-filters select[name=plugin]", "turn_counter")
    page.click("#review-filters button")
    expect(page.locator("#review-filters select[name=plugin]")).to_have_value("turn_counter")
    shown = shown_item(page, expect)
    assert ReviewItem.objects.get(pk=shown).output.job.plugin_id == "turn_counter"
    expect(page.locator("#bulk-approve")).to_have_text("Approve all 2 unflagged items")
    page.keyboard.press("s")
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", shown)
    other = shown_item(page, expect)
    assert other != shown and ReviewItem.objects.get(pk=other).output.job.plugin_id == "turn_counter"

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-approve")
    expect(page.locator("#flash")).to_contain_text("Approved without review: 2")
    expect(page.locator("#queue-empty")).to_have_text("Nothing to review with these filters. Checking again every few seconds.")
    states = dict(ReviewItem.objects.values_list("output__job__plugin_id", "output__review_state").distinct())
    assert sorted(ReviewItem.objects.filter(output__review_state="approved").values_list("output__job__plugin_id", flat=True)) == [
        "turn_counter", "turn_counter"]
    assert states["reverse_text"] == "pending"

    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("#review-filters select[name=flagged] option")).to_have_text(["标记与否均可", "仅被标记的", "仅未标记的"])
    expect(page.locator("#queue-empty")).to_have_text("没有符合这些筛选条件的待审核内容。每隔几秒会再次检查。")


def test_leaving_the_queue_gives_the_item_on_the_screen_back_at_once(
        live_server, browser, expect, project, member, submit, run_job):
    """The item shown stayed leased to a reviewer who had gone to another page (or closed the tab): nobody else
    was given it for the lease's 600 s."""
    page = reviewing(browser, live_server, project, member, submit, run_job, ("only one",))
    shown = shown_item(page, expect)
    assert ReviewItem.objects.get(pk=shown).lease_holder != ""
    page.click("nav a[href='/jobs/']")
    page.wait_for_url("**/jobs/")
    deadline = timezone.now() + timedelta(seconds=5)
    while ReviewItem.objects.get(pk=shown).lease_holder and timezone.now() < deadline:
        page.wait_for_timeout(50)
    item = ReviewItem.objects.get(pk=shown)
    assert (item.lease_holder, item.state) == ("", "open")

    # a second reviewer opening the queue now gets it
    other = sign_in(browser, live_server.url, member(project, "reviewer").username)
    other.goto(f"{live_server.url}/review/")
    assert shown_item(other, expect) == shown


# --- the queue's rough edges ------------------------------------------------------------------------

def test_a_skipped_item_stays_at_the_back_for_the_session_and_comes_back_once_nothing_else_is_left(
        live_server, browser, expect, project, member, submit, run_job):
    """A reload, or a visit to another page and back, showed the skipped item first again; and once every other
    item was decided, the queue said there was nothing to review while the skipped one still waited."""
    page = reviewing(browser, live_server, project, member, submit, run_job, ("first", "second", "third"))
    first = shown_item(page, expect)
    page.keyboard.press("s")
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", first)
    second = shown_item(page, expect)

    page.reload()
    assert shown_item(page, expect) == second
    page.click("nav a[href='/jobs/']")
    page.wait_for_url("**/jobs/")
    page.click("nav a[href='/review/']")
    assert shown_item(page, expect) == second

    # the skip is this reviewer's: another reviewer is given the skipped item first, as the queue orders it
    other = sign_in(browser, live_server.url, member(project, "reviewer").username)
    assert shown_item(other, expect) == first
    other.click("nav a[href='/jobs/']")  # and leaves it: given back
    other.wait_for_url("**/jobs/")
    expect(page.locator("#review-item")).to_have_attribute("data-item", second)
    assert given_back(other, first)

    page.keyboard.press("a")
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", second)
    third = shown_item(page, expect)
    assert third not in (first, second)
    page.keyboard.press("a")
    # nothing else left: the skipped item, not "nothing to review"
    expect(page.locator("#review-item")).to_have_attribute("data-item", first)
    expect(page.locator("#flash")).to_have_text("Nothing else is left: back to the items you skipped.")
    expect(page.locator("#queue-empty")).to_have_count(0)
    shot(page, "100-review-skipped-item-back")
    page.keyboard.press("a")
    expect(page.locator("#queue-empty")).to_be_visible()
    assert sorted(ReviewDecision.objects.values_list("item_id", flat=True)) == sorted(int(i) for i in (first, second, third))


def test_the_bulk_button_counts_only_the_items_left_after_decisions_one_by_one(
        live_server, browser, expect, project, member, submit, run_job):
    """It said "Approve all 3" after two of the three were decided one by one, and approved the one left."""
    page = reviewing(browser, live_server, project, member, submit, run_job, ("first", "second", "third"))
    bulk = page.locator("#bulk-approve")
    expect(bulk).to_have_text("Approve all 3 unflagged items")
    first = shown_item(page, expect)
    page.keyboard.press("a")
    expect(bulk).to_have_text("Approve all 2 unflagged items")
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", first)
    shown_item(page, expect)
    page.keyboard.press("r")
    page.locator("#reject-picker button[data-reason]").first.click()
    expect(bulk).to_have_text("Approve 1 unflagged item")  # the English singular
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    bulk.click()
    expect(bulk).to_be_enabled()  # the question answered "no": nothing sent
    assert asked == ["Approve 1 unflagged item without looking at it?"]
    shot(page, "101-review-bulk-count-follows-decisions")

    page.select_option("#language-switcher", "zh-hans")
    expect(bulk).to_have_text("批准全部 1 条未标记条目")
    shown_item(page, expect)
    page.keyboard.press("a")  # the last one, decided by itself: nothing is left for the button
    expect(page.locator("#queue-empty")).to_be_visible()
    expect(bulk).to_be_hidden()
    assert ReviewDecision.objects.count() == 3


def sign_in_on_a_phone(browser, base_url: str, username: str):
    return sign_in(browser, base_url, username, viewport={"width": 390, "height": 844}, device_scale_factor=2,
                   is_mobile=True, has_touch=True)


def test_on_a_phone_the_queues_standing_arriving_moves_no_button(live_server, browser, expect, project, member, submit,
                                                                  run_job):
    """The header's "1 of 1 pending item" comes a moment after the item (a request of its own): on a phone its text
    wrapped the bar onto another line and pushed the item and the legend down, under a finger on its way to "r reject"
    (a tap was lost so in CI; on "a approve" it would approve). The standing keeps a line of its own there."""
    run_job(submit(project, text="first", user=member(project, "editor")))
    for language in ("en", "zh-hans"):
        page = sign_in_on_a_phone(browser, live_server.url, member(project, "reviewer").username)
        if language != "en":
            page.select_option("#language-switcher", language)
        shown_item(page, expect)
        legend = page.locator("#shortcut-legend")
        top = None
        for standing in ("Loading…", "1 of 1 pending item", "Queue empty", "123,456 of 7,890,123 pending items",
                         "第 123,456 条，共 7,890,123 条待审条目"):
            page.locator("#queue-state").evaluate("(element, text) => { element.textContent = text; }", standing)
            top = legend.bounding_box()["y"] if top is None else top
            assert legend.bounding_box()["y"] == top, f"{standing!r} moved the legend ({language})"
        shot(page, f"129-review-standing-own-line-phone-{language}")
        page.context.close()


def test_the_reject_picker_has_a_cancel_for_a_touch_screen(live_server, browser, expect, project, member, submit,
                                                            run_job):
    """On a phone, where there is no Esc key, it closed only on a tap beside it."""
    run_job(submit(project, text="first", user=member(project, "editor")))
    page = sign_in_on_a_phone(browser, live_server.url, member(project, "reviewer").username)
    shown = shown_item(page, expect)
    opener, picker = page.locator("#shortcut-legend button[data-key=r]"), page.locator("#reject-picker")
    opener.tap()
    expect(picker).to_be_visible()
    page.locator("#reject-comment").fill("not sure yet")
    shot(page, "102-review-reject-picker-phone")
    page.locator("#reject-cancel").tap()
    expect(picker).to_be_hidden()
    expect(page.locator("#review-item")).to_have_attribute("data-item", shown)
    opener.tap()
    expect(page.locator("#reject-comment")).to_have_value("not sure yet")  # kept for the item, as after Esc
    page.keyboard.press("Escape")  # a keyboard's Esc still closes it
    expect(picker).to_be_hidden()

    page.select_option("#language-switcher", "zh-hans")
    assert shown_item(page, expect) == shown
    opener.tap()
    expect(picker).to_be_visible()
    expect(page.locator("#reject-cancel")).to_have_text("取消")
    shot(page, "103-review-reject-picker-phone-zh")
    page.locator("#reject-cancel").tap()
    expect(picker).to_be_hidden()
    assert not ReviewDecision.objects.exists()


def test_the_header_says_where_the_item_stands_in_the_queue_as_items_are_decided_and_arrive(
        live_server, browser, expect, project, member, submit, run_job):
    """It said "Item 62": the item's database id, which told a reviewer nothing of how far they were."""
    editor = member(project, "editor")
    page = reviewing(browser, live_server, project, member, submit, run_job, ("first", "second", "third"))
    header = page.locator("#queue-state")
    first = shown_item(page, expect)
    expect(header).to_have_text("1 of 3 pending items")
    expect(page.locator("#review-item .item-id")).to_have_text(f"item {first}")  # the id, for whoever needs it
    page.keyboard.press("s")
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", first)
    second = shown_item(page, expect)
    expect(header).to_have_text("2 of 3 pending items")
    shot(page, "104-review-queue-position")
    page.keyboard.press("a")
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", second)
    shown_item(page, expect)
    expect(header).to_have_text("2 of 2 pending items")  # the first, skipped, still waits before it

    run_job(submit(project, text="arrived", user=editor))  # while the reviewer looks at the third
    expect(header).to_have_text("2 of 3 pending items")

    page.select_option("#language-switcher", "zh-hans")
    expect(header).to_have_text("待审核 3 条中的第 2 条")
    shot(page, "105-review-queue-position-zh")
    page.select_option("#language-switcher", "en")
    for _ in range(2):  # the third, then the one that arrived
        shown = shown_item(page, expect)
        page.keyboard.press("a")
        expect(page.locator("#review-item")).not_to_have_attribute("data-item", shown)
    expect(page.locator("#review-item")).to_have_attribute("data-item", first)
    expect(header).to_have_text("1 of 1 pending item")  # the English singular
