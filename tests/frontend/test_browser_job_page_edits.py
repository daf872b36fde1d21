"""What a reviewer's edit changed, opened under the decision on the job page in a real browser."""

from __future__ import annotations

from atelier_platform.moderation import review
from atelier_platform.moderation.models import ReviewItem
from tests.frontend.browsing import BROWSER_TESTS, shot, sign_in

pytestmark = BROWSER_TESTS


def test_the_changes_open_under_the_decision_in_a_browser(live_server, browser, expect, project, member, submit, run_job):
    editor, reviewer = member(project, "editor"), member(project, "reviewer")
    job = submit(project, text="call me on 555 0100", user=editor)
    run_job(job)
    item = ReviewItem.objects.get(output__job=job)
    acting = review.Reviewer(actor=f"user:{reviewer.pk}", user_id=reviewer.pk)
    review.decide(review.claim(item, acting), acting, action="edit",
                  content=dict(item.output.content, text="call us at the shop"))
    page = sign_in(browser, live_server.url, reviewer.username)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    changes = page.locator("details.edit-changes")
    expect(changes.locator(".added")).to_be_hidden()
    changes.locator("summary").click()
    expect(changes.locator(".removed")).to_contain_text("0010 555 no em llac")
    expect(changes.locator(".added")).to_contain_text("call us at the shop")
    shot(page, "99-job-page-what-the-reviewer-changed")
