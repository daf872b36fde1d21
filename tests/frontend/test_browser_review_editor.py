"""In a real browser: the review queue's "edit, then approve" dialog saves from a button as well as with
Ctrl+Enter (or Cmd+Enter, on a Mac), for a reviewer with a mouse or a touch screen; its hint names the key of
the reviewer's platform (⌘ ↵ on Apple's, Ctrl ↵ elsewhere and before any script runs); it is left without a
decision from its Cancel button or a click (a tap) beside it, as Esc does; its buttons are labelled in the
page's language and are inside the dialog's focus trap; a "Not valid JSON" error goes once the text changes."""

from __future__ import annotations

import json

from atelier_platform.moderation.models import ReviewDecision
from atelier_platform.jobs.models import Output, ReviewState
from tests.frontend.browsing import (BROWSER_TESTS, LINUX, MAC, WINDOWS, chinese_review_queue_on_a_tablet, decisions_sent,
                                     drag_out_to_the_corner, shot, shown_item, sign_in, tab_goes_through)

pytestmark = BROWSER_TESTS

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
    expect(save).to_have_attribute("aria-keyshortcuts", "Control+Enter Meta+Enter")
    # inside the focus trap: Tab goes from the text to the button, Cancel, the lease's Extend and round, Shift+Tab back
    expect(page.locator("#edit-content")).to_be_focused()
    tab_goes_through(page, expect, save, page.locator("#edit-cancel"), page.locator("#edit-extend"), page.locator("#edit-content"))
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
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
    page = chinese_review_queue_on_a_tablet(live_server, browser, expect, member(project, "reviewer"))
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


def test_the_editor_is_left_without_a_decision_from_a_click_beside_it_or_its_cancel_button(
        live_server, browser, expect, project, member, submit, run_job):
    run_job(submit(project, text="first draft", user=member(project, "editor")))
    page = sign_in(browser, live_server.url, member(project, "reviewer").username)
    item = shown_item(page, expect)
    decisions = decisions_sent(page)
    opener = page.locator("#shortcut-legend button[data-key=e]")

    # a click beside the dialog (on the shade round it) leaves it, as it leaves the reject and regenerate ones
    opener.click()
    dialog = page.get_by_role("dialog", name="Edit, then approve")
    expect(page.locator("#edit-content")).to_be_focused()
    edit_text(page, "never saved")
    dialog.locator("h2").click()  # not a click on the dialog itself, off its controls
    expect(page.locator("#editor")).to_be_visible()
    # nor a selection of the text that ends beside the dialog (the click goes to what holds both ends: the shade)
    drag_out_to_the_corner(page, page.locator("#edit-content"))
    expect(page.locator("#editor")).to_be_visible()
    assert "never saved" in page.locator("#edit-content").input_value()
    page.mouse.click(5, 5)
    expect(page.locator("#editor")).to_be_hidden()
    expect(opener).to_be_focused()  # back where it was, as after Esc

    # its Cancel button
    opener.click()
    save = dialog.get_by_role("button", name="Save and approve")
    cancel = dialog.get_by_role("button", name="Cancel", exact=True)
    expect(cancel).to_be_visible()
    # inside the focus trap: the text, the save button, Cancel, the lease's Extend, and round; Shift+Tab backwards
    expect(page.locator("#edit-content")).to_be_focused()
    for control in (save, cancel, page.locator("#edit-extend"), page.locator("#edit-content")):
        page.keyboard.press("Tab")
        expect(control).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(cancel).to_be_focused()
    edit_text(page, "never saved either")
    shot(page, "54-review-editor-cancel")
    cancel.click()
    expect(page.locator("#editor")).to_be_hidden()
    expect(opener).to_be_focused()

    # opened from the keyboard (the focus on the page): cancelled, the focus is on the page again
    page.locator("#edit-content").evaluate("() => document.activeElement.blur()")
    page.keyboard.press("e")
    expect(page.locator("#edit-content")).to_be_focused()
    page.keyboard.press("Shift+Tab")  # the lease's Extend
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # the focused Cancel, from the keyboard
    expect(page.locator("#editor")).to_be_hidden()
    assert page.evaluate("() => document.activeElement === document.body")

    assert decisions == []
    expect(page.locator("#review-item")).to_have_attribute("data-item", item)  # still this item, still held
    assert Output.objects.get(review__pk=item).review_state == ReviewState.PENDING
    assert not ReviewDecision.objects.filter(item_id=item).exists()
    page.keyboard.press("e")  # and the editor opens again on the output as it was
    assert json.loads(page.locator("#edit-content").input_value())["text"] == "tfard tsrif"


def test_the_editors_cancel_is_chinese_on_a_chinese_page_and_a_tap_beside_it_leaves_it(
        live_server, browser, expect, project, member, submit, run_job):
    run_job(submit(project, text="a calm product description", user=member(project, "editor")))
    page = chinese_review_queue_on_a_tablet(live_server, browser, expect, member(project, "reviewer"))
    item = shown_item(page, expect)
    decisions = decisions_sent(page)
    opener = page.locator("#shortcut-legend button[data-key=e]")

    opener.click()  # (a click: a tap would leave Chromium's tap highlight in the screenshot)
    dialog = page.get_by_role("dialog", name="编辑后批准")
    cancel = dialog.get_by_role("button", name="取消", exact=True)
    expect(cancel).to_be_visible()
    expect(dialog.get_by_role("button", name="保存并批准")).to_be_visible()
    page.locator("#edit-content").blur()
    shot(page, "55-review-editor-cancel-zh-hans")
    cancel.tap()  # a touch screen: no Esc key to press
    expect(page.locator("#editor")).to_be_hidden()
    expect(opener).to_be_focused()

    opener.tap()
    expect(page.locator("#editor")).to_be_visible()
    page.touchscreen.tap(10, 10)  # beside the dialog, on the shade
    expect(page.locator("#editor")).to_be_hidden()
    expect(opener).to_be_focused()
    assert decisions == []
    assert Output.objects.get(review__pk=item).review_state == ReviewState.PENDING


def test_the_editor_saves_with_cmd_enter_as_with_ctrl_enter(live_server, browser, expect, project, member, submit,
                                                            run_job):
    editor = member(project, "editor")
    for text in ("first draft", "second draft"):
        run_job(submit(project, text=text, user=editor))
    page = sign_in(browser, live_server.url, member(project, "reviewer").username)
    decisions = decisions_sent(page)

    for keys, text in (("Meta+Enter", "saved with Cmd+Enter"), ("Control+Enter", "saved with Ctrl+Enter")):
        item = shown_item(page, expect)
        page.keyboard.press("e")
        expect(page.locator("#edit-content")).to_be_focused()
        edit_text(page, text)
        page.keyboard.press(keys)
        expect(page.locator("#flash")).to_have_text("Edited and approved.")
        expect(page.locator("#editor")).to_be_hidden()
        assert Output.objects.get(review__pk=item).content["text"] == text
        expect(page.locator("#review-item")).not_to_have_attribute("data-item", item)
    expect(page.locator("#queue-empty")).to_be_visible()
    assert len(decisions) == 2

    # what the button says is what the keys do; the hint names this platform's (Linux: Ctrl), the test below
    save = page.locator("#edit-save")
    expect(save).to_have_attribute("aria-keyshortcuts", "Control+Enter Meta+Enter")
    expect(page.locator("#editor kbd")).to_have_text(["Ctrl ↵", "Esc"])


def without_user_agent_data(platform: str) -> str:
    """A page script making the browser look like Safari or Firefox to the page: no navigator.userAgentData
    (Chromium's: Playwright's user_agent sets its platform, "macOS" for MAC, and leaves navigator.platform
    at "Linux x86_64"), and ``platform`` as navigator.platform."""
    return ("Object.defineProperty(Navigator.prototype, 'userAgentData', {get: () => undefined});"
            f"Object.defineProperty(Navigator.prototype, 'platform', {{get: () => {json.dumps(platform)}}});")


def review_queue_on(browser, live_server, reviewer, user_agent=None, platform=None):
    """The review queue on a browser that says it runs on a platform: by its ``user_agent`` (Chromium's
    userAgentData follows it), or by ``platform`` alone (navigator.platform, with no userAgentData)."""
    page = sign_in(browser, live_server.url, reviewer.username, **({"user_agent": user_agent} if user_agent else {}))
    if platform:
        page.context.add_init_script(without_user_agent_data(platform))
        page.reload()
    return page


def test_the_editors_hint_names_cmd_enter_on_apples_platforms_and_ctrl_enter_elsewhere(
        live_server, browser, expect, project, member, submit, run_job):
    editor = member(project, "editor")
    for text in ("first draft", "second draft"):
        run_job(submit(project, text=text, user=editor))
    reviewer = member(project, "reviewer")
    hint = "#editor kbd"

    # as served, before any script has a say (here a Mac's browser with scripts off): Ctrl ↵, which saves on
    # every platform, a Mac included; never both keys side by side
    page = sign_in(browser, live_server.url, reviewer.username, user_agent=MAC, java_script_enabled=False)
    page.goto(f"{live_server.url}/review/")
    expect(page.locator(hint)).to_have_text(["Ctrl ↵", "Esc"])
    page.context.close()

    def editor_open_on(platform):
        page = review_queue_on(browser, live_server, reviewer, **platform)
        shown_item(page, expect)
        page.keyboard.press("e")
        expect(page.locator("#edit-content")).to_be_focused()
        return page

    for platform, shown in (({"user_agent": LINUX}, "Ctrl ↵"), ({"user_agent": WINDOWS}, "Ctrl ↵"),
                            ({"platform": "Linux x86_64"}, "Ctrl ↵"),  # Firefox on Linux
                            ({"platform": "MacIntel"}, "⌘ ↵"),  # Safari on a Mac, or on an iPad
                            ({"platform": "iPhone"}, "⌘ ↵")):
        page = editor_open_on(platform)
        expect(page.locator(hint), f"on {platform}").to_have_text([shown, "Esc"])
        if platform == {"user_agent": LINUX}:
            shot(page, "57-review-editor-hint-linux")
        page.context.close()

    # Chrome on a Mac (userAgentData says "macOS"): ⌘ ↵, and both keys still save, the one named and the other
    page = editor_open_on({"user_agent": MAC})
    expect(page.locator(hint)).to_have_text(["⌘ ↵", "Esc"])
    shot(page, "58-review-editor-hint-mac")
    page.keyboard.press("Escape")
    decisions = decisions_sent(page)
    for keys, text in (("Meta+Enter", "saved with Cmd+Enter on a Mac"),
                       ("Control+Enter", "saved with Ctrl+Enter on a Mac")):
        item = shown_item(page, expect)
        page.keyboard.press("e")
        expect(page.locator("#edit-content")).to_be_focused()
        edit_text(page, text)
        page.keyboard.press(keys)
        expect(page.locator("#editor")).to_be_hidden()  # saved (the flash says so already after the first)
        expect(page.locator("#flash")).to_have_text("Edited and approved.")
        assert Output.objects.get(review__pk=item).content["text"] == text
        expect(page.locator("#review-item")).not_to_have_attribute("data-item", item)
    assert len(decisions) == 2
    expect(page.locator("#edit-save")).to_have_attribute("aria-keyshortcuts", "Control+Enter Meta+Enter")

    # a Chinese page on the Mac: the same ⌘ ↵
    run_job(submit(project, text="third draft", user=editor))
    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("h1")).to_have_text("审核队列")
    shown_item(page, expect)
    page.keyboard.press("e")
    expect(page.get_by_role("dialog", name="编辑后批准")).to_be_visible()
    expect(page.locator(hint)).to_have_text(["⌘ ↵", "Esc"])
    page.locator("#edit-content").blur()
    shot(page, "59-review-editor-hint-mac-zh-hans")


def test_a_json_error_in_the_editor_goes_once_the_text_changes(live_server, browser, expect, project, member, submit,
                                                               run_job):
    run_job(submit(project, text="first draft", user=member(project, "editor")))
    page = sign_in(browser, live_server.url, member(project, "reviewer").username)
    item = shown_item(page, expect)
    decisions = decisions_sent(page)
    page.keyboard.press("e")
    error = page.locator("#edit-error")
    content = json.loads(page.locator("#edit-content").input_value())

    page.fill("#edit-content", '{"text": "mended"')
    page.keyboard.press("Control+Enter")
    expect(error).to_contain_text("Not valid JSON:")
    page.keyboard.press("ArrowLeft")  # moving about the text changes nothing: the error stays
    page.keyboard.press("End")
    expect(error).to_contain_text("Not valid JSON:")
    page.keyboard.type("}")  # the reviewer mends it: the error about the text before is gone
    expect(error).to_have_text("")
    shot(page, "56-review-editor-json-mended")

    page.keyboard.press("Backspace")  # broken again, and saved: said again
    page.keyboard.press("Control+Enter")
    expect(error).to_contain_text("Not valid JSON:")
    page.fill("#edit-content", json.dumps({**content, "text": "mended"}))  # pasted over, too
    expect(error).to_have_text("")
    assert decisions == []
    page.keyboard.press("Control+Enter")
    expect(page.locator("#flash")).to_have_text("Edited and approved.")
    assert Output.objects.get(review__pk=item).content["text"] == "mended"
