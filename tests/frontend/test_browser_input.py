"""The dashboard's forms and keys in a real browser, where they used to lose or repeat what a person did:
a digit typed in the reject comment rejected the item, a second Enter sent a job or a chat message twice,
a draft typed while a reply was pending vanished when the reply came, an input method's Enter sent a
half-typed word, a dropped connection left the review keys dead, Enter in a template's name submitted a job,
and the language could not be switched without JavaScript."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from atelier_frontend.models import PromptTemplate
from atelier_platform.jobs.models import Job
from atelier_platform.moderation.models import ReviewDecision
from tests.frontend.browsing import BROWSER_TESTS, LINUX, MAC, sign_in

pytestmark = BROWSER_TESTS

SHOWN = "#review-item[data-item]:not([data-item=''])"


@pytest.fixture
def slow_submissions(monkeypatch):
    """The dashboard takes a moment to submit a job, as a busy server does: a second Enter lands while the
    first request is on its way."""
    from atelier_frontend import views

    def slowly(*args, **kwargs):
        time.sleep(0.5)
        return submit_job(*args, **kwargs)

    submit_job = views.submit_job
    monkeypatch.setattr(views, "submit_job", slowly)


def review_page(browser, live_server, project, member, submit, run_job, texts=("first",)):
    editor = member(project, "editor")
    for text in texts:
        run_job(submit(project, text=text, user=editor))
    page = sign_in(browser, live_server.url, member(project, "reviewer").username)
    return page


def press_enter_composing(page, selector: str) -> None:
    """The keydown of an Enter that picks a candidate in an input method (pinyin): Chromium sends it with
    isComposing and keyCode 229, which Playwright's keyboard cannot type."""
    page.locator(selector).evaluate("""(box) => box.dispatchEvent(new KeyboardEvent("keydown",
        {key: "Enter", code: "Enter", keyCode: 229, isComposing: true, bubbles: true, cancelable: true}))""")


def test_a_digit_typed_in_the_reject_comment_stays_in_the_comment(live_server, browser, expect, project, member, submit, run_job):
    page = review_page(browser, live_server, project, member, submit, run_job)
    expect(page.locator(SHOWN)).to_be_visible()
    page.keyboard.press("r")
    page.click("#reject-comment")
    page.keyboard.type("see line 2 of the reply")
    expect(page.locator("#reject-comment")).to_have_value("see line 2 of the reply")
    expect(page.locator("#reject-picker")).to_be_visible()
    assert not ReviewDecision.objects.exists()
    page.click("#reject-picker button[data-reason=off_brand]")  # the reason chosen, with the whole comment
    expect(page.locator("#flash")).to_contain_text("Rejected (Off brand)")
    decision = ReviewDecision.objects.get()
    assert (decision.reason, decision.comment) == ("off_brand", "see line 2 of the reply")


def test_the_reject_picker_takes_the_keyboards_focus_so_a_comment_is_a_tab_away(
        live_server, browser, expect, project, member, submit, run_job):
    """The picker opened with the focus left behind it: Tab walked the page under the overlay, out of sight,
    before it reached the comment."""
    page = review_page(browser, live_server, project, member, submit, run_job, texts=("first", "second"))
    expect(page.locator(SHOWN)).to_be_visible()
    page.keyboard.press("r")
    reasons = page.locator("#reject-picker button[data-reason]")
    expect(reasons.first).to_be_focused()
    for _ in range(reasons.count()):
        page.keyboard.press("Tab")
    expect(page.locator("#reject-comment")).to_be_focused()
    page.keyboard.type("no source for the claim")
    page.keyboard.press("Shift+Tab")  # back to the last reason, chosen with Enter
    page.keyboard.press("Enter")
    expect(page.locator("#flash")).to_contain_text("Rejected (Other reason)")
    decision = ReviewDecision.objects.get()
    assert (decision.reason, decision.comment) == ("other", "no source for the claim")
    expect(page.locator("#reject-picker")).to_be_hidden()
    expect(page.locator(SHOWN)).not_to_have_attribute("data-item", str(decision.item_id))
    page.keyboard.press("r")  # the next item: its picker focused afresh, the comment empty
    expect(reasons.first).to_be_focused()
    expect(page.locator("#reject-comment")).to_have_value("")


def test_a_second_ctrl_enter_in_the_editor_sends_one_decision(live_server, browser, expect, project, member, submit, run_job):
    page = review_page(browser, live_server, project, member, submit, run_job)
    expect(page.locator(SHOWN)).to_be_visible()
    decisions = []
    page.on("request", lambda request: decisions.append(request.url) if request.url.endswith("/decision/") else None)
    page.keyboard.press("e")
    expect(page.locator("#editor")).to_be_visible()
    page.keyboard.press("Control+Enter")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#flash")).to_have_text("Edited and approved.")
    expect(page.locator("#queue-empty")).to_be_visible()
    assert len(decisions) == 1


def test_a_dropped_connection_during_a_decision_is_said_and_the_keys_work_again(
        live_server, browser, expect, project, member, submit, run_job):
    page = review_page(browser, live_server, project, member, submit, run_job)
    expect(page.locator(SHOWN)).to_be_visible()
    page.route("**/decision/", lambda route: route.abort("internetdisconnected"))
    page.keyboard.press("a")
    expect(page.locator("#flash")).to_have_text("The server could not be reached: check the connection and try again.")
    page.unroute("**/decision/")
    page.keyboard.press("a")  # the queue was left busy for good: no key did anything again
    expect(page.locator("#flash")).to_have_text("Approved.")
    assert ReviewDecision.objects.get().action == "approve"


def test_an_input_methods_enter_in_the_regenerate_note_sends_nothing(
        live_server, browser, expect, project, member, submit, run_job):
    page = review_page(browser, live_server, project, member, submit, run_job)
    expect(page.locator(SHOWN)).to_be_visible()
    page.keyboard.press("g")
    expect(page.locator("#regenerate-note")).to_be_focused()
    page.keyboard.type("duan yi dian")
    press_enter_composing(page, "#regenerate-note")
    page.wait_for_timeout(500)
    expect(page.locator("#regenerate-picker")).to_be_visible()
    assert not ReviewDecision.objects.exists()
    page.keyboard.press("Enter")  # the person's own Enter, once the word is written, still sends it
    expect(page.locator("#flash")).to_contain_text("Sent back")


def test_a_second_ctrl_enter_submits_the_job_once(live_server, browser, expect, project, member, slow_submissions):
    page = sign_in(browser, live_server.url, member(project, "editor").username)
    page.goto(f"{live_server.url}/create/reverse_text/")
    page.fill("#f-input-text", "only once, please")
    page.keyboard.press("Control+Enter")
    page.wait_for_timeout(100)
    page.keyboard.press("Control+Enter")
    page.wait_for_url("**/jobs/*/")
    expect(page.locator("#job-status .status")).to_be_visible()
    assert Job.objects.count() == 1


def test_the_submit_buttons_key_is_the_platforms_and_cmd_enter_submits_on_a_mac(live_server, browser, expect, project, member):
    editor = member(project, "editor")
    page = sign_in(browser, live_server.url, editor.username, user_agent=LINUX)
    page.goto(f"{live_server.url}/create/reverse_text/")
    expect(page.locator("#submit-job kbd")).to_have_text("Ctrl ↵")
    page.context.close()

    page = sign_in(browser, live_server.url, editor.username, user_agent=MAC)
    page.goto(f"{live_server.url}/create/reverse_text/")
    expect(page.locator("#submit-job kbd")).to_have_text("⌘ ↵")
    page.fill("#f-input-text", "sent from a Mac")
    page.keyboard.press("Meta+Enter")
    page.wait_for_url("**/jobs/*/")
    assert Job.objects.get().input["text"] == "sent from a Mac"


def test_enter_in_the_template_name_saves_the_template_and_submits_no_job(live_server, browser, expect, project, member):
    page = sign_in(browser, live_server.url, member(project, "editor").username)
    page.goto(f"{live_server.url}/create/reverse_text/")
    page.fill("#f-input-text", "a greeting to reuse")
    page.fill("#template-name", "greeting")
    page.press("#template-name", "Enter")
    expect(page.locator(".notice")).to_contain_text("greeting")
    assert PromptTemplate.objects.get().name == "greeting"
    assert not Job.objects.exists()


def test_a_second_enter_sends_a_chat_message_once(live_server, browser, expect, chat_project, member, slow_submissions):
    page = sign_in(browser, live_server.url, member(chat_project, "editor").username)
    page.click(".mainnav a[data-nav=chat]")
    page.fill("#chat-message", "hello once")
    page.keyboard.press("Enter")
    page.wait_for_timeout(100)
    page.keyboard.press("Enter")
    page.wait_for_url("**/chat/*/")
    expect(page.locator(".msg.user .bubble")).to_have_text(["hello once"])
    assert Job.objects.count() == 1


def test_an_input_methods_enter_in_the_chat_box_sends_nothing(live_server, browser, expect, chat_project, member):
    page = sign_in(browser, live_server.url, member(chat_project, "editor").username)
    page.click(".mainnav a[data-nav=chat]")
    page.fill("#chat-message", "tui huo")
    press_enter_composing(page, "#chat-message")
    page.wait_for_timeout(500)
    expect(page.locator("#chat-message")).to_have_value("tui huo")
    assert not Job.objects.exists()


def test_what_is_typed_while_a_reply_is_pending_survives_the_reply(live_server, browser, expect, chat_project, member, run_job):
    page = sign_in(browser, live_server.url, member(chat_project, "editor").username)
    page.click(".mainnav a[data-nav=chat]")
    page.fill("#chat-message", "first question")
    page.press("#chat-message", "Enter")
    expect(page.locator("#job-status .status")).to_have_text("Queued")
    expect(page.locator("#chat-message")).to_have_value("")
    page.fill("#chat-message", "and a second question, half typed")
    worker = threading.Thread(target=lambda: (run_job(Job.objects.get()), connection.close()))
    worker.start()
    worker.join(30)
    expect(page.locator(".msg.assistant .bubble")).to_have_text("Turn 1: you said 'first question'.")  # the page reloaded
    expect(page.locator("#chat-message")).to_have_value("and a second question, half typed")
    page.press("#chat-message", "Enter")  # sent, it is no draft any more
    expect(page.locator(".msg.user .bubble")).to_have_count(2)
    expect(page.locator("#chat-message")).to_have_value("")
    page.reload()
    expect(page.locator("#chat-message")).to_have_value("")


def test_the_language_switches_without_javascript(live_server, browser, expect, project):
    page = browser.new_context(java_script_enabled=False).new_page()
    page.goto(f"{live_server.url}/login/")
    page.select_option("#language-switcher", "zh-hans")
    page.click("form.language button")
    expect(page.locator("h1")).to_have_text("登录 Atelier")


def test_a_bulk_approval_that_gets_no_answer_is_said_and_can_be_tried_again(
        live_server, browser, expect, project, member, submit, run_job):
    page = review_page(browser, live_server, project, member, submit, run_job, texts=("first", "second"))
    expect(page.locator(SHOWN)).to_be_visible()
    page.on("dialog", lambda dialog: dialog.accept())
    page.route("**/review/bulk-approve/", lambda route: route.abort("internetdisconnected"))
    page.click("#bulk-approve")
    expect(page.locator("#flash")).to_have_text("The server could not be reached: check the connection and try again.")
    page.unroute("**/review/bulk-approve/")
    expect(page.locator("#bulk-approve")).to_be_enabled()
    page.click("#bulk-approve")
    expect(page.locator("#flash")).to_contain_text("Approved without review: 2")
    assert ReviewDecision.objects.filter(action="approve").count() == 2
