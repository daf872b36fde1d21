"""In a real browser: the review editor says which fields of the output a reviewer may change (those its plugin
marks editable), and an edit of the others (what the plugin recorded about the run) is refused in the dialog, in
the page's language, naming each field; nothing is decided, and the reviewer puts them back and saves."""

from __future__ import annotations

import json

from atelier_platform.jobs.models import Output, ReviewState
from atelier_platform.moderation.models import ReviewDecision
from tests.frontend.browsing import BROWSER_TESTS, chinese_review_queue_on_a_tablet, decisions_sent, shot, shown_item, sign_in

pytestmark = BROWSER_TESTS


def change(page, **fields) -> None:
    content = json.loads(page.locator("#edit-content").input_value())
    page.fill("#edit-content", json.dumps({**content, **fields}))


def test_the_editor_names_what_may_change_and_refuses_the_rest_naming_it(live_server, browser, expect, project, member,
                                                                          submit, run_job):
    run_job(submit(project, text="first draft", user=member(project, "editor")))
    page = sign_in(browser, live_server.url, member(project, "reviewer").username)
    item = shown_item(page, expect)
    decisions = decisions_sent(page)

    page.keyboard.press("e")
    expect(page.locator("#edit-fields")).to_have_text(
        "You may change text; the rest records how this output was made and stays as it is.")
    change(page, text="A better draft", characters=900_000)  # the plugin's count, which an edit must not rewrite
    page.keyboard.press("Control+Enter")
    expect(page.locator("#edit-error")).to_have_text(
        "Not saved: these fields record how the output was made and cannot be edited; put them back as they were: "
        "characters")
    expect(page.locator("#editor")).to_be_visible()
    shot(page, "56-review-editor-field-not-editable")
    assert len(decisions) == 1 and not ReviewDecision.objects.filter(item_id=item).exists()
    assert Output.objects.get(review__pk=item).content == {"text": "tfard tsrif", "characters": 11}

    change(page, characters=11)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#flash")).to_have_text("Edited and approved.")
    edited = Output.objects.get(review__pk=item)
    assert (edited.review_state, edited.content) == (ReviewState.APPROVED, {"text": "A better draft", "characters": 11})


def test_the_refusal_is_chinese_on_a_chinese_page(live_server, browser, expect, project, member, submit, run_job):
    run_job(submit(project, text="a calm product description", user=member(project, "editor")))
    page = chinese_review_queue_on_a_tablet(live_server, browser, expect, member(project, "reviewer"))
    item = shown_item(page, expect)

    page.click("#shortcut-legend button[data-key=e]")
    expect(page.locator("#edit-fields")).to_have_text("可修改：text；其余字段记录了此输出的生成过程，保持不变。")
    change(page, text="edited on a tablet", characters=1)
    page.get_by_role("dialog", name="编辑后批准").get_by_role("button", name="保存并批准").tap()
    expect(page.locator("#edit-error")).to_have_text("未保存：以下字段记录了输出的生成过程，不能编辑；请恢复原值：characters")
    page.locator("#edit-content").blur()
    shot(page, "57-review-editor-field-not-editable-zh-hans")
    assert Output.objects.get(review__pk=item).review_state == ReviewState.PENDING
