"""In a browser: an owner erases a job's content from its page, after a confirmation, and the page says so."""

from __future__ import annotations

from atelier_platform.jobs.models import Job, Output
from tests.frontend.browsing import BROWSER_TESTS, shot, sign_in

pytestmark = BROWSER_TESTS

SECRET = "Please call Jane Roe on 07700 900123"


def test_in_a_browser_an_owner_erases_a_job_after_a_confirmation(live_server, browser, expect, project, member,
                                                                  submit, run_job):
    owner = member(project, "owner")
    job = submit(project, text=SECRET, with_file=True)
    run_job(job)
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(page.locator("article.output .v-text[data-path='content.text']")).to_have_text(SECRET[::-1])
    expect(page.locator("#erase-job")).to_be_visible()
    shot(page, "126-job-erase-button")
    asked, answers = [], [False, True]

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept() if answers.pop(0) else dialog.dismiss()

    page.on("dialog", answer)
    page.locator("#erase-job").click()  # dismissed: nothing sent
    assert asked and asked[0].startswith("Erase this job’s content for good?") and "cannot be undone" in asked[0]
    expect(page.locator("#erase-job")).to_be_visible()
    assert Job.objects.get(pk=job.pk).erased_at is None

    page.locator("#erase-job").click()
    expect(page.locator("#job-notice")).to_have_text("Erased.")
    expect(page.locator("#job-status .status")).to_have_text("Content erased")
    expect(page.locator("#job-erased")).to_contain_text("Content erased on")
    expect(page.locator("#job-erased")).to_contain_text(f"by {owner.username}.")
    expect(page.locator("#input-erased")).to_have_text("Erased.")
    expect(page.locator("article.output [data-withheld='erased']")).to_have_text("Erased: its content and files are gone.")
    expect(page.locator("#erase-job")).to_have_count(0)
    assert SECRET not in page.content() and SECRET[::-1] not in page.content()
    assert len(asked) == 2 and Job.objects.get(pk=job.pk).erased_at is not None
    assert Output.objects.get(job=job).files.get().file.name == ""
    shot(page, "127-job-erased")

    page.goto(f"{live_server.url}/jobs/")
    expect(page.locator(f"tr[data-job='{job.pk}'] .summary")).to_contain_text("(content erased)")
    shot(page, "128-jobs-with-an-erased-job")
