"""In a real browser: the review queue's "edit, then approve" dialog saves from a button as well as with
Ctrl+Enter, for a reviewer with a mouse or a touch screen; the button is labelled in the page's language and
is inside the dialog's focus trap."""

from __future__ import annotations

import json

from atelier_platform.moderation.models import ReviewDecision
from atelier_platform.jobs.models import Output
from tests.frontend.browsing import BROWSER_TESTS, PASSWORD, shot, sign_in

pytestmark = BROWSER_TESTS

SHOWN = "#review-item[data-item]:not([data-item=''])"


def shown_item(page, expect) -> str:
    expect(page.locator(SHOWN)).to_be_visible()
    return page.locator("#review-item").get_attribute("data-item")


def edit_text(page, text: str) -> None:
    content = json.loads(page.locator("#edit-content").input_value())
    page.fill("#edit-content", json.dumps({**content, "text": text}))


def test_the_editor_saves_and_approves_from_its_button_with_a_mouse(live_server, browser, expect, project, member,
                                                                     submit, run_job):
    editor = member(project, "editor")
    for text in ("first draft", "second draft"):
        run_job(submit(project, text=text, user=editor))
    page = sign_in(browser, live_server.url, member(project, "reviewer").username)
    item = shown_item(page, expect)
    decisions = []
    page.on("request", lambda request: decisions.append(request.url) if request.url.endswith("/decision/") else None)

    page.click("#shortcut-legend button[data-key=e]")  # the mouse all the way: the legend opens the dialog
    dialog = page.get_by_role("dialog", name="Edit, then approve")
    save = dialog.get_by_role("button", name="Save and approve")
    expect(save).to_be_visible()
    expect(save).to_have_attribute("aria-keyshortcuts", "Control+Enter")
    # inside the focus trap: Tab goes from the text to the button and round, Shift+Tab back
    expect(page.locator("#edit-content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(save).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#edit-content")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(save).to_be_focused()
    shot(page, "52-review-editor-save-button")

    # what is not JSON is said in the dialog, which stays open, as with Ctrl+Enter
    content = json.loads(page.locator("#edit-content").input_value())
    page.fill("#edit-content", "{not json")
    save.click()
    expect(page.locator("#edit-error")).to_contain_text("Not valid JSON:")
    expect(page.locator("#editor")).to_be_visible()
    assert decisions == []

    page.fill("#edit-content", json.dumps({**content, "text": "edited with the mouse"}))
    save.dblclick()  # a double click sends one decision, as a second Ctrl+Enter does
    expect(page.locator("#flash")).to_have_text("Edited and approved.")
    expect(page.locator("#editor")).to_be_hidden()
    edited = Output.objects.get(review__pk=item)
    assert (edited.review_state, edited.content["text"]) == ("approved", "edited with the mouse")
    assert ReviewDecision.objects.get(item_id=item).action == "edit"
    assert len(decisions) == 1

    # from the keyboard, the focused button saves with Enter (or Space), like any button
    expect(page.locator("#review-item")).not_to_have_attribute("data-item", item)
    following = shown_item(page, expect)
    page.keyboard.press("e")
    expect(page.locator("#edit-content")).to_be_focused()
    edit_text(page, "edited from the button with Enter")
    page.keyboard.press("Tab")
    expect(save).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#queue-empty")).to_be_visible()  # decided: the queue moved on, and is empty now
    expect(page.locator("#flash")).to_have_text("Edited and approved.")
    assert Output.objects.get(review__pk=following).content["text"] == "edited from the button with Enter"
    assert len(decisions) == 2


def test_the_editors_button_is_chinese_on_a_chinese_page_and_answers_a_tap(live_server, browser, expect, project,
                                                                             member, submit, run_job):
    run_job(submit(project, text="a calm product description", user=member(project, "editor")))
    reviewer = member(project, "reviewer")
    page = browser.new_context(viewport={"width": 820, "height": 1180}, has_touch=True).new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", reviewer.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    page.goto(f"{live_server.url}/review/")
    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("h1")).to_have_text("审核队列")
    item = shown_item(page, expect)

    # (a click: a tap here would leave Chromium's tap highlight, painted above the dialog, in the screenshot)
    page.click("#shortcut-legend button[data-key=e]")
    dialog = page.get_by_role("dialog", name="编辑后批准")
    save = dialog.get_by_role("button", name="保存并批准")
    expect(save).to_be_visible()
    edit_text(page, "edited on a tablet")
    page.locator("#edit-content").blur()
    shot(page, "53-review-editor-save-button-zh-hans")
    save.tap()  # a touch screen: no keyboard at all
    expect(page.locator("#flash")).to_have_text("已编辑并批准。")
    edited = Output.objects.get(review__pk=item)
    assert (edited.review_state, edited.content["text"]) == ("approved", "edited on a tablet")
