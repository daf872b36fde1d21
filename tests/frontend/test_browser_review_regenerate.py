"""In a real browser: the review queue's regenerate dialog is left without sending anything from its Cancel
button, as Esc and a click (a tap) beside it leave it: no decision, no new job, the item still the reviewer's,
the focus back where it was. Cancel is labelled in the page's language and is inside the dialog's focus trap;
Enter on it cancels (Enter in the note still sends the item back, and Enter on the Regenerate button too)."""

from __future__ import annotations

from atelier_platform.jobs.models import Job, Output, ReviewState
from atelier_platform.moderation.models import ReviewDecision, ReviewItem
from tests.frontend.browsing import (BROWSER_TESTS, chinese_review_queue_on_a_tablet, decisions_sent, shot,
                                     shown_item, sign_in, tab_goes_through)

pytestmark = BROWSER_TESTS

TITLE = "Regenerate: reject this output and run the job again"


def nothing_was_sent_back(item: str, reviewer, jobs: int) -> None:
    """Checked in the database: ``item`` undecided and still held by ``reviewer``, no job made (``jobs`` still)."""
    assert not ReviewDecision.objects.filter(item_id=item).exists()
    assert Output.objects.get(review__pk=item).review_state == ReviewState.PENDING
    assert ReviewItem.objects.get(pk=item).lease_holder == f"user:{reviewer.pk}"
    assert Job.objects.count() == jobs and not Job.objects.filter(regenerated_from__isnull=False).exists()


def test_the_regenerate_dialogs_cancel_button_sends_nothing_and_gives_the_focus_back(
        live_server, browser, expect, project, member, submit, run_job):
    run_job(submit(project, text="first draft", user=member(project, "editor")))
    jobs = Job.objects.count()
    reviewer = member(project, "reviewer")
    page = sign_in(browser, live_server.url, reviewer.username)
    item = shown_item(page, expect)
    decisions = decisions_sent(page)
    opener = page.locator("#shortcut-legend button[data-key=g]")
    note = page.locator("#regenerate-note")

    # opened with the mouse, from the legend
    opener.click()
    dialog = page.get_by_role("dialog", name=TITLE)
    send = dialog.get_by_role("button", name="Regenerate", exact=True)
    cancel = dialog.get_by_role("button", name="Cancel", exact=True)
    expect(cancel).to_be_visible()
    # inside the focus trap: the note, Regenerate, Cancel, and round; Shift+Tab backwards
    expect(note).to_be_focused()
    tab_goes_through(page, expect, send, cancel, note)
    page.keyboard.press("Shift+Tab")
    expect(cancel).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(send).to_be_focused()
    note.fill("never sent")
    note.blur()
    shot(page, "60-review-regenerate-cancel")
    cancel.click()
    expect(page.locator("#regenerate-picker")).to_be_hidden()
    expect(opener).to_be_focused()  # back where Esc gives it back: the legend's button

    # opened from the keyboard (the focus on the page), left from the focused Cancel with Enter: not sent back
    opener.blur()
    page.keyboard.press("g")
    expect(note).to_be_focused()
    page.keyboard.type("not sent either")
    page.keyboard.press("Shift+Tab")
    expect(cancel).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#regenerate-picker")).to_be_hidden()
    assert page.evaluate("() => document.activeElement === document.body")  # where Esc leaves it too
    page.wait_for_timeout(300)  # a decision the key had sent would be on its way by now
    assert decisions == [], "Enter on the focused Cancel sent the item back"
    # and Space, as on any button
    page.keyboard.press("g")
    page.keyboard.press("Shift+Tab")
    expect(cancel).to_be_focused()
    page.keyboard.press(" ")
    expect(page.locator("#regenerate-picker")).to_be_hidden()

    page.wait_for_timeout(300)
    assert decisions == []
    expect(page.locator("#review-item")).to_have_attribute("data-item", item)  # still this item, still held
    expect(page.locator("#flash")).to_have_text("")
    nothing_was_sent_back(item, reviewer, jobs)

    # the dialog opens again with an empty note, and its Regenerate button (Enter on it) sends the item back once
    page.keyboard.press("g")
    expect(note).to_have_value("")
    page.keyboard.type("shorter, please")
    page.keyboard.press("Tab")
    expect(send).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#flash")).to_contain_text("Sent back: a new job is generating.")
    decision = ReviewDecision.objects.get(item_id=item)
    assert (decision.action, decision.comment, decision.regenerated_job.review_note) == (
        "regenerate", "shorter, please", "shorter, please")
    assert len(decisions) == 1 and Job.objects.count() == jobs + 1


def test_the_regenerate_dialogs_cancel_is_chinese_on_a_chinese_page_and_answers_a_tap(
        live_server, browser, expect, project, member, submit, run_job):
    run_job(submit(project, text="a calm product description", user=member(project, "editor")))
    jobs = Job.objects.count()
    reviewer = member(project, "reviewer")
    page = chinese_review_queue_on_a_tablet(live_server, browser, expect, reviewer)
    item = shown_item(page, expect)
    decisions = decisions_sent(page)
    opener = page.locator("#shortcut-legend button[data-key=g]")

    opener.click()  # (a click: a tap would leave Chromium's tap highlight in the screenshot)
    dialog = page.get_by_role("dialog", name="重新生成：拒绝此输出并重新运行任务")
    cancel = dialog.get_by_role("button", name="取消", exact=True)
    expect(cancel).to_be_visible()
    expect(dialog.get_by_role("button", name="重新生成", exact=True)).to_be_visible()
    page.locator("#regenerate-note").fill("再短一点")
    page.locator("#regenerate-note").blur()
    shot(page, "61-review-regenerate-cancel-zh-hans")
    cancel.tap()  # a touch screen: no Esc key to press
    expect(page.locator("#regenerate-picker")).to_be_hidden()
    expect(opener).to_be_focused()

    page.wait_for_timeout(300)
    assert decisions == []
    expect(page.locator("#review-item")).to_have_attribute("data-item", item)
    nothing_was_sent_back(item, reviewer, jobs)
