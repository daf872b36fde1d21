"""In a real browser: the jobs list repaints a finished job with its review state and a running one with its
progress in words; a reviewer extends the lease from the editor; a refused settings form far down the page is
brought into view with its first invalid field focused; a JSON field shows the shape it expects."""

from __future__ import annotations

import datetime
import re
import threading

from django.db import connection
from django.utils import timezone

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job, JobStatus, Output, ReviewState
from atelier_platform.moderation.models import ReviewItem, SafetyPolicy
from atelier_platform.moderation.screening import policy_for
from tests.frontend.browsing import BROWSER_TESTS, SHOTS, shot, shown_item, sign_in

pytestmark = BROWSER_TESTS


def sign_in_on_a_phone(browser, base_url: str, username: str):
    return sign_in(browser, base_url, username, viewport={"width": 390, "height": 844}, device_scale_factor=2,
                   is_mobile=True, has_touch=True)


def in_view(page, selector: str) -> bool:
    """Whether the element is inside the window as it is scrolled now."""
    return page.evaluate("""(selector) => { const box = document.querySelector(selector).getBoundingClientRect();
                                            return box.top >= 0 && box.bottom <= window.innerHeight; }""", selector)


def shot_of_the_window(page, name: str) -> None:
    """What the person sees, not the whole page: a refused form is only visible if it is in the window."""
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def in_chinese(page, expect) -> None:
    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")


def test_the_jobs_list_says_what_a_job_came_to_and_how_far_a_running_one_got(
        live_server, browser, expect, project, member, submit, run_job):
    editor = member(project, "editor")
    done = submit(project, text="two takes, one approved", user=editor, copies=2)
    run_job(done)
    Output.objects.filter(job=done, index=0).update(review_state=ReviewState.APPROVED)
    chat_like = submit(project, text="a long reply", user=editor)
    Job.objects.filter(pk=chat_like.pk).update(status=JobStatus.RUNNING, progress=37 / 64,
                                               progress_detail={"tokens": 37, "max_new_tokens": 64})
    watched = submit(project, text="watched until it finishes", user=editor, sleep_s=1.5)

    page = sign_in(browser, live_server.url, editor.username)
    page.goto(f"{live_server.url}/jobs/")
    row = page.locator(f"tr[data-job='{chat_like.pk}']")
    expect(row.locator(".progress-words")).to_have_text("58% · 37 of 64 tokens")
    expect(page.locator(f"tr[data-job='{done.pk}'] .status")).to_have_text(["Awaiting review 1", "Approved 1"])

    worker = threading.Thread(target=lambda: (run_job(watched), connection.close()))
    worker.start()
    try:
        # the list polls every second: the running job's words follow what its plugin reports
        Job.objects.filter(pk=chat_like.pk).update(progress=0.4, progress_detail={"step": 12, "steps": 30})
        expect(row.locator(".progress-words")).to_have_text("40% · 12 of 30 steps")
    finally:
        worker.join(30)
    # finished while the list was open: repainted with its review state, never "Succeeded"
    expect(page.locator(f"tr[data-job='{watched.pk}'] .status")).to_have_text("Awaiting review")
    expect(page.locator(f"tr[data-job='{watched.pk}'] .status")).to_have_attribute("data-review", "pending")
    shot(page, "60-jobs-review-states-and-progress")

    page.goto(f"{live_server.url}/jobs/{watched.pk}/")
    expect(page.locator("#job-status .status")).to_have_text("Awaiting review")
    shot(page, "61-job-awaiting-review")

    phone = sign_in_on_a_phone(browser, live_server.url, editor.username)
    phone.goto(f"{live_server.url}/jobs/")
    in_chinese(phone, expect)
    expect(phone.locator(f"tr[data-job='{watched.pk}'] .status")).to_have_text("等待审核")
    expect(phone.locator(f"tr[data-job='{chat_like.pk}'] .progress-words")).to_have_text("40% · 第 12 / 30 步")
    shot(phone, "62-jobs-review-states-phone-zh")


def test_a_reviewer_extends_the_lease_from_the_editor_before_it_runs_out(live_server, browser, expect, project, member,
                                                                        submit, run_job):
    run_job(submit(project, text="a draft to polish", user=member(project, "editor")))
    SafetyPolicy.objects.filter(pk=policy_for(project).pk).update(lease_seconds=30)  # about to run out when shown
    reviewer = member(project, "reviewer")
    page = sign_in(browser, live_server.url, reviewer.username)
    item = shown_item(page, expect)
    held = ReviewItem.objects.get(pk=item).lease_expires_at
    clock = "(iso) => new Date(iso).toLocaleTimeString(document.documentElement.lang, {hour: '2-digit', minute: '2-digit'})"
    until = page.evaluate(clock, held.isoformat())
    expect(page.locator("#lease")).to_have_class(re.compile(r"\bwarn\b"))  # under a minute left
    expect(page.locator("#lease .lease-end")).to_have_text(f"until {until}")
    expect(page.locator("#lease-extend")).to_be_visible()

    page.keyboard.press("e")
    expect(page.locator("#edit-lease .lease-end")).to_have_text(until)
    expect(page.locator("#edit-lease")).to_have_class(re.compile(r"\bwarn\b"))  # counting down where they edit
    expect(page.locator("#edit-lease-left")).to_have_text(re.compile(r"^00:[0-3]\d$"))
    page.keyboard.type(" ")  # editing
    shot(page, "63-review-editor-lease-running-out")
    SafetyPolicy.objects.filter(pk=policy_for(project).pk).update(lease_seconds=600)
    page.click("#edit-extend")
    expect(page.locator("#lease-left")).to_have_text(re.compile(r"^(09:5\d|10:00)$"))
    expect(page.locator("#lease")).not_to_have_class(re.compile(r"\bwarn\b"))
    expect(page.locator("#edit-lease-left")).to_have_text(re.compile(r"^(09:5\d|10:00)$"))
    extended = ReviewItem.objects.get(pk=item)
    assert extended.lease_holder == f"user:{reviewer.pk}" and extended.lease_expires_at > held + datetime.timedelta(seconds=500)
    expect(page.locator("#edit-lease .lease-end")).to_have_text(page.evaluate(clock, extended.lease_expires_at.isoformat()))
    expect(page.locator("#editor")).to_be_visible()  # still editing, nothing lost
    shot(page, "64-review-editor-lease-extended")

    # lapsed and taken by someone else meanwhile: the editor says so instead of the reviewer losing work unawares
    ReviewItem.objects.filter(pk=item).update(lease_holder="user:999999", lease_expires_at=timezone.now() + datetime.timedelta(minutes=5))
    page.click("#edit-extend")
    expect(page.locator("#edit-error")).to_contain_text("Another reviewer took this item after your lease ran out")
    page.keyboard.press("Escape")

    in_chinese(page, expect)
    ReviewItem.objects.filter(pk=item).update(lease_holder=f"user:{reviewer.pk}")
    page.reload()
    shown_item(page, expect)
    expect(page.locator("#lease-extend")).to_have_text("延长占用")
    page.click("#lease-extend")
    expect(page.locator("#flash")).to_contain_text("占用已延长")
    shot(page, "65-review-lease-extended-zh")

    phone = sign_in_on_a_phone(browser, live_server.url, reviewer.username)  # the same reviewer: the item is theirs
    phone.goto(f"{live_server.url}/review/")
    in_chinese(phone, expect)
    shown_item(phone, expect)
    phone.click("#shortcut-legend button[data-key=e]")
    expect(phone.locator("#edit-extend")).to_be_visible()
    expect(phone.locator("#edit-lease .lease-end")).not_to_be_empty()
    shot_of_the_window(phone, "65b-review-editor-lease-phone-zh")


def test_a_refused_form_far_down_the_settings_is_brought_into_view(live_server, browser, expect, project, member,
                                                                   monkeypatch):
    from atelier_platform.config import get_config

    monkeypatch.setenv("ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "false")
    get_config.cache_clear()
    owner = member(project, "owner")
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/")
    page.fill("#reject_reasons", "off_brand, Too Long")
    page.click("#policy button.primary")
    expect(page.locator("#reject_reasons")).to_be_focused()
    assert in_view(page, "#reject_reasons") and in_view(page, "#policy [role=alert]")
    expect(page.locator("#policy [role=alert]")).to_contain_text("Reject reasons (comma-separated): Give reasons")
    expect(page.locator("#reject_reasons")).to_have_value("off_brand, Too Long")
    shot_of_the_window(page, "66-settings-policy-refused")

    page.goto(f"{live_server.url}/settings/")
    page.fill("#wh-url-new", "http://127.0.0.1:9000/hook")
    page.click("#webhook-form-new button.primary")
    expect(page.locator("#wh-url-new")).to_be_focused()
    assert in_view(page, "#wh-url-new")
    expect(page.locator("[data-field=url] .field-error").last).to_contain_text("loopback")
    shot_of_the_window(page, "67-settings-webhook-refused")
    get_config.cache_clear()

    phone = sign_in_on_a_phone(browser, live_server.url, owner.username)
    phone.goto(f"{live_server.url}/settings/")
    in_chinese(phone, expect)
    phone.fill("input[name='review:violence']", "0.9")
    phone.fill("input[name='block:violence']", "0.2")
    phone.click("#policy button.primary")
    expect(phone.locator("input[name='review:violence']")).to_be_focused()
    assert in_view(phone, "input[name='review:violence']")
    expect(phone.locator("#policy [role=alert]")).to_contain_text("未保存")
    shot_of_the_window(phone, "68-settings-threshold-refused-phone-zh")


def test_json_fields_show_an_example_of_what_they_take(live_server, browser, expect, project, member, empty_plugin_registry):
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    empty_plugin_registry.register(RecommenderCopyPlugin)
    set_plugin_enabled(project, "recommender_copy", True)
    page = sign_in(browser, live_server.url, member(project, "editor").username)
    page.goto(f"{live_server.url}/create/recommender_copy/")
    expect(page.locator("#f-input-items-hint")).to_have_text('JSON, for example: [{"id": "…", "title": "…"}]')
    expect(page.locator("#f-input-items")).to_have_attribute("aria-describedby", "f-input-items-hint")
    shot(page, "69-create-json-hints")
    in_chinese(page, expect)
    expect(page.locator("#f-input-items-hint")).to_have_text('JSON 格式，例如： [{"id": "…", "title": "…"}]')
    shot(page, "70-create-json-hints-zh")
