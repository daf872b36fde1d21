"""In a real browser: the error pages inside the dashboard, a failed job's explanation with its technical details
folded away, and codes in words on Chinese pages (a flagged item's categories, the reject reasons, a built-in
plugin's form), on a desktop and a phone."""

from __future__ import annotations

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job, JobStatus
from tests.factories import MembershipFactory, ProjectFactory
from tests.frontend.browsing import BROWSER_TESTS, shot, sign_in
from tests.frontend.test_browser_layout import SPILLS

pytestmark = BROWSER_TESTS

PHONE = {"width": 390, "height": 844}


def in_chinese(page, expect) -> None:
    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")


def on_a_phone(browser, base_url: str, username: str):
    return sign_in(browser, base_url, username, viewport=PHONE)


def test_a_job_of_another_project_opens_after_a_switch_from_its_not_found_page(
        live_server, browser, expect, project, member, submit):
    editor = member(project, "editor")
    spring = ProjectFactory(name="Spring campaign", slug="zz-spring")
    set_plugin_enabled(spring, "reverse_text", True)
    MembershipFactory(project=spring, user=editor, role="viewer")
    theirs = submit(spring, text="a job of the spring campaign")

    page = sign_in(browser, live_server.url, editor.username)
    response = page.goto(f"{live_server.url}/jobs/{theirs.pk}/")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Job not found")
    expect(page.locator("#project-switcher")).to_be_visible()
    shot(page, "90-not-found-job-of-another-project")
    in_chinese(page, expect)
    expect(page.locator("h1")).to_have_text("找不到该任务")
    shot(page, "91-not-found-job-of-another-project-zh")
    page.click(".switch-to button")
    expect(page.locator("#job-status")).to_be_visible()  # the job, in its own project
    expect(page.locator("#project-switcher")).to_have_value(spring.slug)

    phone = on_a_phone(browser, live_server.url, editor.username)
    phone.goto(f"{live_server.url}/project-typo/")
    in_chinese(phone, expect)
    expect(phone.locator("h1")).to_have_text("没有这个页面")
    assert phone.evaluate(SPILLS) == {"page": 0, "header": [], "cards": []}
    shot(phone, "92-not-found-phone-zh")


def test_a_page_the_role_does_not_open_says_so_in_the_layout(live_server, browser, expect, project, member):
    viewer = member(project, "viewer")
    page = sign_in(browser, live_server.url, viewer.username)
    in_chinese(page, expect)
    response = page.goto(f"{live_server.url}/settings/")
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("无权访问")
    expect(page.locator(".mainnav a[data-nav=jobs]")).to_be_visible()
    shot(page, "93-forbidden-zh")


def test_a_failed_jobs_page_explains_and_keeps_the_technical_details_folded(
        live_server, browser, expect, project, member, submit):
    editor = member(project, "editor")
    job = submit(project, text="a long request", user=editor)
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED, error_code="out_of_memory", finished_at=job.created_at,
        error_message="The device ran out of memory even for this job alone (cuda:0): ask for less (fewer tokens, a "
                      "smaller image) or run it on a larger device.")
    page = sign_in(browser, live_server.url, editor.username)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(page.locator("#job-error .what-happened")).to_have_text(
        "The job needed more memory than the worker has, even on its own.")
    expect(page.locator("#job-error details.technical code")).not_to_be_visible()
    shot(page, "94-failed-job")
    in_chinese(page, expect)
    page.click("#job-error details.technical summary")
    expect(page.locator("#job-error details.technical code")).to_have_text("out_of_memory")
    shot(page, "95-failed-job-zh-details-open")
    page.click("#try-again")
    expect(page.locator("#f-input-text")).to_have_value("a long request")

    phone = on_a_phone(browser, live_server.url, editor.username)
    phone.goto(f"{live_server.url}/jobs/{job.pk}/")
    in_chinese(phone, expect)
    expect(phone.locator("#job-error .what-happened")).to_have_text("即使单独运行，此任务所需的内存也超出了工作节点的容量。")
    assert phone.evaluate(SPILLS) == {"page": 0, "header": [], "cards": []}
    shot(phone, "96-failed-job-phone-zh")


def test_codes_read_as_words_on_chinese_pages(live_server, browser, expect, project, member, submit, run_job,
                                            empty_plugin_registry):
    from atelier_plugins.image.plugin import ImagePlugin

    from atelier_platform.moderation.checks import replace_safety_checks
    from atelier_platform.moderation.models import ReviewDecision
    from tests.support.safety import WordCheck

    replace_safety_checks([WordCheck()])
    run_job(submit(project, text="enilredrob comment about the product", user=member(project, "editor")))
    reviewer = member(project, "reviewer")
    page = sign_in(browser, live_server.url, reviewer.username)
    page.goto(f"{live_server.url}/review/")
    in_chinese(page, expect)
    expect(page.locator("#review-item .flag-chip[data-category=harassment]")).to_have_text("骚扰")
    page.keyboard.press("r")
    expect(page.locator("#reject-picker button[data-reason=off_brand]")).to_contain_text("不符合品牌调性")
    shot(page, "97-review-reject-picker-zh")
    page.keyboard.press("2")
    expect(page.locator("#flash")).to_contain_text("不符合品牌调性")
    assert ReviewDecision.objects.get().reason == "off_brand"

    empty_plugin_registry.register(ImagePlugin)
    set_plugin_enabled(project, "image", True)
    owner = member(project, "owner")
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/create/image/")
    in_chinese(page, expect)
    expect(page.locator("label[for=f-input-prompt]")).to_contain_text("提示词")
    shot(page, "98-image-form-zh")
