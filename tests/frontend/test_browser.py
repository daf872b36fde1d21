"""The dashboard in a real browser: headless Debian chromium driven by Playwright.

An editor signs in, fills the form generated from a plugin's schema, watches the job run and
finish; a reviewer approves it from the keyboard and the API then delivers it as approved.
Two reviewers at once are never shown the same item. Screenshots of each main page go to
``artifacts/screenshots/`` (ignored by git) for people to look at.
"""

from __future__ import annotations

import json
import re
import threading

import requests
from django.db import connection

from atelier_platform.accounts.services import issue_api_key
from atelier_platform.jobs.models import Job, Output
from atelier_platform.moderation.models import ReviewDecision, ReviewItem
from tests.frontend.browsing import BROWSER_TESTS, given_back, shot, sign_in

pytestmark = BROWSER_TESTS


def test_submit_watch_finish_review_with_keyboard_and_see_it_approved(
        live_server, browser, expect, project, member, run_job, submit):
    editor = member(project, "editor")
    reviewer = member(project, "reviewer")

    login = browser.new_page(viewport={"width": 1280, "height": 860})
    login.goto(f"{live_server.url}/login/")
    shot(login, "01-login")
    login.close()

    page = sign_in(browser, live_server.url, editor.username)
    expect(page).to_have_url(f"{live_server.url}/create/")
    expect(page.locator(".mainnav a")).to_have_text(["Create", "Chat", "Jobs", "Library", "Usage"])  # an editor does not review
    shot(page, "02-create")

    page.click("a[data-plugin=reverse_text]")
    expect(page.locator("#f-input-text")).to_be_visible()
    page.fill("#f-input-copies", "9")
    page.click("#submit-job")
    # server-side validation by the plugin's own schema, shown next to each field
    expect(page.locator("[data-field='input.text'] .field-error")).to_contain_text("at least 1 character")
    expect(page.locator("[data-field='input.copies'] .field-error")).to_contain_text("less than or equal to 5")
    shot(page, "03-create-form-errors")

    page.fill("#f-input-text", "hello from the browser")
    page.fill("#f-input-copies", "1")
    page.fill("#f-input-sleep_s", "1.5")
    page.click("#submit-job")
    page.wait_for_url("**/jobs/*/")
    job = Job.objects.get()
    assert page.url.endswith(f"/jobs/{job.pk}/")
    expect(page.locator("#job-status .status")).to_have_text("Queued")

    worker = threading.Thread(target=lambda: (run_job(job), connection.close()))
    worker.start()
    try:
        expect(page.locator("#job-status .status")).to_have_text("Running")  # the page polls every second
        expect(page.locator("#job-status progress")).to_be_visible()
        shot(page, "04-job-running")
    finally:
        worker.join(30)
    expect(page.locator("#job-status .status")).to_have_text("Awaiting review")  # ran, but not yet content to use
    expect(page.locator("article.output .v-text[data-path='content.text']")).to_have_text("resworb eht morf olleh")
    expect(page.locator("article.output .review")).to_have_text("Pending review")
    shot(page, "05-job-done")

    page.click(".mainnav a[data-nav=jobs]")
    expect(page.locator(f"tr[data-job='{job.pk}'] .status")).to_have_text("Awaiting review")
    later = submit(project, text="submitted after the list loaded", user=editor)
    expect(page.locator("#jobs-table tbody tr").first).to_have_attribute("data-job", str(later.pk))  # prepended live
    expect(page.locator(f"tr[data-job='{later.pk}'] .status")).to_have_text("Queued")
    shot(page, "06-jobs")
    later.delete()
    page.fill("input[name=q]", "no such words")
    page.press("input[name=q]", "Enter")
    expect(page.locator("#jobs-table .empty")).to_be_visible()

    page.click("#logout")
    expect(page).to_have_url(f"{live_server.url}/login/")

    page = sign_in(browser, live_server.url, reviewer.username)
    expect(page).to_have_url(f"{live_server.url}/review/")
    expect(page.locator(".mainnav a")).to_have_text(["Jobs", "Library", "Review", "Usage"])
    expect(page.locator("#review-item .output-content")).to_contain_text("resworb eht morf olleh")
    expect(page.locator("#lease-left")).to_have_text(re.compile(r"^(09|10):\d\d$"))
    shot(page, "07-review")
    page.keyboard.press("a")
    expect(page.locator("#flash")).to_have_text("Approved.")
    expect(page.locator("#queue-empty")).to_be_visible()
    shot(page, "08-review-empty")

    key = issue_api_key(project, scopes=["jobs:read"])
    answer = requests.get(f"{live_server.url}/api/v1/jobs/{job.pk}/", headers={"Authorization": f"Bearer {key.raw}"}, timeout=10)
    assert answer.status_code == 200
    [output] = answer.json()["outputs"]
    assert (output["review_state"], output["final"]) == ("approved", True)
    assert ReviewDecision.objects.get().decided_by == f"user:{reviewer.pk}"

    page.click(".mainnav a[data-nav=usage]")
    expect(page.locator("[data-series=jobs_per_plugin] svg rect")).to_have_count(1)  # today's one job
    expect(page.locator("[data-series=approval_rate] svg circle")).to_have_count(1)
    shot(page, "12-usage")


def test_two_reviewers_at_once_never_see_the_same_item(live_server, browser, expect, project, member, submit, run_job):
    editor = member(project, "editor")
    for text in ("first", "second", "third"):
        run_job(submit(project, text=text, user=editor))
    first, second = member(project, "reviewer"), member(project, "reviewer")
    page_a = sign_in(browser, live_server.url, first.username)
    page_b = sign_in(browser, live_server.url, second.username)

    def shown(page, after: str | None = None) -> str:
        """The item the page shows (once it has moved on from ``after``)."""
        if after is not None:
            expect(page.locator("#review-item")).not_to_have_attribute("data-item", after)
        expect(page.locator("#review-item[data-item]:not([data-item=''])")).to_be_visible()
        return page.locator("#review-item").get_attribute("data-item")

    a, b = shown(page_a), shown(page_b)
    assert a != b
    assert {i.lease_holder for i in ReviewItem.objects.filter(pk__in=[a, b])} == {f"user:{first.pk}", f"user:{second.pk}"}

    # A rejects from the reason picker: r, then the reason's number
    page_a.keyboard.press("r")
    expect(page_a.locator("#reject-picker")).to_be_visible()
    shot(page_a, "09-review-reject-picker")
    page_a.keyboard.press("2")
    expect(page_a.locator("#flash")).to_contain_text("Rejected (Off brand)")
    decision = ReviewDecision.objects.get(item_id=a)
    assert (decision.action, decision.reason) == ("reject", "off_brand")
    a_next = shown(page_a, after=a)
    assert a_next not in (a, b)  # the third item: B still holds its own

    # B skips: its item goes to the back of B's queue, and with nothing else free (A holds the third), comes back
    # to B; never A's. B leaves the queue, which gives it back for anyone.
    page_b.keyboard.press("s")
    expect(page_b.locator("#flash")).to_have_text("Nothing else is left: back to the items you skipped.")
    expect(page_b.locator("#review-item")).to_have_attribute("data-item", b)
    page_b.click("nav a[href='/jobs/']")
    page_b.wait_for_url("**/jobs/")
    assert given_back(page_b, b)

    # A edits the text, then approves it with Ctrl+Enter
    page_a.keyboard.press("e")
    expect(page_a.locator("#editor")).to_be_visible()
    content = json.loads(page_a.locator("#edit-content").input_value())
    page_a.fill("#edit-content", json.dumps({**content, "text": "edited by a person"}))
    shot(page_a, "10-review-edit")
    page_a.keyboard.press("Control+Enter")
    expect(page_a.locator("#flash")).to_have_text("Edited and approved.")
    edited = Output.objects.get(review__pk=a_next)
    assert (edited.review_state, edited.content["text"]) == ("approved", "edited by a person")
    # next for A is B's skipped item, which nobody holds now
    assert shown(page_a, after=a_next) == b

    # A sends B's skipped item back to be generated again, with a note, from the legend's g
    expect(page_a.locator("#shortcut-legend button[data-key=g]")).to_contain_text("regenerate")
    page_a.keyboard.press("g")
    expect(page_a.locator("#regenerate-picker")).to_be_visible()
    expect(page_a.locator("#regenerate-note")).to_be_focused()
    page_a.keyboard.type("shorter, please")
    shot(page_a, "10b-review-regenerate")
    page_a.keyboard.press("Enter")
    expect(page_a.locator("#flash")).to_contain_text("Sent back: a new job is generating.")
    decision = ReviewDecision.objects.get(item_id=b)
    assert (decision.action, decision.comment) == ("regenerate", "shorter, please")
    again = decision.regenerated_job
    assert (again.regenerated_from_id, again.review_note, again.status) == (Output.objects.get(review__pk=b).pk, "shorter, please", "queued")
    assert Output.objects.get(review__pk=b).review_state == "rejected"
    expect(page_a.locator("#regenerated-job")).to_have_attribute("href", f"/jobs/{again.pk}/")
    expect(page_a.locator("#queue-empty")).to_be_visible()

    # the same screen in Simplified Chinese, chosen in the header
    page_b.click("nav a[href='/review/']")
    page_b.wait_for_url("**/review/")
    page_b.select_option("#language-switcher", "zh-hans")
    expect(page_b.locator("h1")).to_have_text("审核队列")
    expect(page_b.locator(".mainnav a")).to_have_text(["任务", "内容库", "审核", "用量"])
    shot(page_b, "11-review-zh-hans")


def test_chat_shows_the_reply_with_its_sources(live_server, browser, expect, project, member, empty_plugin_registry, run_job):
    from atelier_platform.catalog.services import set_plugin_enabled
    from tests.frontend.chat_plugin import TurnCounter

    empty_plugin_registry.register(TurnCounter)
    set_plugin_enabled(project, "turn_counter", True)
    editor = member(project, "editor")
    page = sign_in(browser, live_server.url, editor.username)
    page.click(".mainnav a[data-nav=chat]")
    page.fill("#chat-message", "Can I return shoes after a month?")
    page.press("#chat-message", "Enter")
    expect(page.locator(".msg.user .bubble")).to_have_text("Can I return shoes after a month?")
    expect(page.locator("#job-status .status")).to_have_text("Queued")
    job = Job.objects.get()
    worker = threading.Thread(target=lambda: (run_job(job), connection.close()))
    worker.start()
    worker.join(30)
    # the page polls the job and shows the reply when it is done
    expect(page.locator(".msg.assistant .bubble")).to_have_text("Turn 1: you said 'Can I return shoes after a month?'.")
    expect(page.locator(".msg.assistant .sources li")).to_contain_text("Returns policy")
    expect(page.locator(".msg.assistant .review")).to_have_text("Pending review")
    shot(page, "13-chat")


def test_owner_settings_show_a_new_key_once(live_server, browser, expect, project, member):
    owner = member(project, "owner")
    page = sign_in(browser, live_server.url, owner.username)
    expect(page.locator(".mainnav a")).to_have_text(["Create", "Chat", "Jobs", "Library", "Review", "Usage", "Workers", "Settings"])
    page.click(".mainnav a[data-nav=settings]")
    page.fill("#key input[name=name]", "storefront")
    page.click("#key button:has-text('Create key')")
    expect(page.locator("#new-key")).to_contain_text("atl_")
    shot(page, "14-settings")
    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)

    # a webhook endpoint: created (its secret shown once), then a private address refused on its field
    page.fill("#wh-url-new", "https://93.184.216.34/hooks/atelier")
    page.fill("#wh-description-new", "storefront receiver")
    page.check("#webhook-form-new input[value='job.succeeded']")
    page.click("#webhook-form-new button.primary")
    expect(page.locator("#new-webhook-secret")).to_have_text(re.compile(r".{16,}"))
    expect(page.locator("#webhook-endpoints tr[data-endpoint]")).to_contain_text("storefront receiver")
    page.locator("#webhooks").scroll_into_view_if_needed()
    shot(page, "17-settings-webhook-created")
    page.click("#webhook-endpoints .edit-row summary")
    page.fill("#wh-url-1", "http://169.254.169.254/latest")
    page.click("#webhook-form-1 button.primary")
    expect(page.locator("#webhook-form-1 [data-field=url] .field-error")).to_contain_text("link-local")
    page.locator("#webhook-form-1").scroll_into_view_if_needed()
    shot(page, "18-settings-webhook-refused")


def test_flagged_words_are_marked_and_a_flagged_item_needs_two_reviewers(
        live_server, browser, expect, project, member, submit, run_job):
    from atelier_platform.moderation.checks import replace_safety_checks
    from atelier_platform.moderation.screening import policy_for
    from tests.support.safety import WordCheck

    replace_safety_checks([WordCheck()])
    policy = policy_for(project)
    policy.second_review_for_flagged = True
    policy.save()
    job = submit(project, text="enilredrob comment about the product", user=member(project, "editor"))
    run_job(job)
    first, second = member(project, "reviewer"), member(project, "reviewer")

    page = sign_in(browser, live_server.url, first.username)
    expect(page.locator("#review-item mark.flag[data-category=harassment]")).to_have_text("borderline")
    expect(page.locator("#second-review")).to_contain_text("0 of 2 approvals")
    shot(page, "15-review-flagged")
    page.keyboard.press("a")
    expect(page.locator("#flash")).to_contain_text("a second reviewer must confirm")
    expect(page.locator("#queue-empty")).to_be_visible()  # one reviewer cannot approve it twice

    page = sign_in(browser, live_server.url, second.username)
    expect(page.locator("#second-review")).to_contain_text(f"1 of 2 approvals so far. ({first.username})")  # a username, not the actor id
    page.keyboard.press("a")
    expect(page.locator("#flash")).to_have_text("Approved.")
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(page.locator("article.output mark.flag")).to_have_text("borderline")
    expect(page.locator("article.output .review")).to_have_text("Approved")
    shot(page, "16-job-flagged-approved")


def test_chatbot_create_page_has_a_messages_editor(live_server, browser, expect, project, member, empty_plugin_registry):
    from atelier_platform.catalog.services import set_plugin_enabled
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    page = sign_in(browser, live_server.url, member(project, "editor").username)
    page.goto(f"{live_server.url}/create/chatbot/")
    page.fill("#f-input-messages-system", "Answer in one sentence.")
    page.fill("#f-input-messages", "Can I return shoes after a month?")
    shot(page, "19-create-chatbot")
    page.keyboard.press("Control+Enter")
    page.wait_for_url("**/jobs/*/")
    assert Job.objects.get().input["messages"] == [{"role": "system", "content": "Answer in one sentence."},
                                                   {"role": "user", "content": "Can I return shoes after a month?"}]


def test_a_reviewer_is_told_which_safety_checks_did_not_screen_the_item(
        live_server, browser, expect, project, member, submit, run_job, monkeypatch):
    from atelier_platform.moderation.models import ReviewMode
    from atelier_platform.moderation.screening import policy_for
    from tests.support.safety import words_and_a_check_not_running

    words_and_a_check_not_running(monkeypatch, "profanity", "OSError: profanity_model.joblib: No such file")
    policy = policy_for(project)
    policy.review_mode = ReviewMode.RELEASE_AFTER_SCREENING  # would release it, were every check running
    policy.save()
    run_job(submit(project, text="a calm product description", user=member(project, "editor")))

    page = sign_in(browser, live_server.url, member(project, "reviewer").username)
    expect(page.locator("#not-screened")).to_have_text(
        "Not screened by these safety checks, which were not running: profanity.")
    expect(page.locator("#bulk-approve")).to_have_count(0)  # flagged: it needs a look, never a bulk approval
    shot(page, "20-review-not-screened")


def test_the_workers_page_shows_a_worker_that_reports_while_it_is_open(live_server, browser, expect, project, member):
    from tests.frontend.test_workers_page import a_worker

    operator = member(project, "owner")
    operator.is_staff = True  # who sees a worker's own name and every warm model (an owner sees a label, its own models)
    operator.save(update_fields=["is_staff"])
    page = sign_in(browser, live_server.url, operator.username)
    page.click("a[data-nav=workers]")
    expect(page.locator("#workers-live .empty")).to_be_visible()
    a_worker("late-host:5", loaded_models=[{"plugin": "image", "plugin_version": "1.0.0", "model_dir": None,
                                            "bytes": 5 * 2**20, "load_seconds": 0.8}])
    expect(page.locator('tr[data-worker="late-host:5"] .status')).to_have_text("ready", timeout=15_000)
    expect(page.locator('tr[data-worker="late-host:5"]')).to_contain_text("5.0 MB")
    shot(page, "30-workers")
