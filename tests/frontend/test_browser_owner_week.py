"""In a real browser, an owner's week: the quotas on the usage page, and the audit log searched for who approved a
job's output."""

from __future__ import annotations

from atelier_platform.moderation import review
from atelier_platform.moderation.models import ReviewItem
from atelier_platform.usage.models import ProjectQuota
from tests.frontend.browsing import BROWSER_TESTS, shot, sign_in

pytestmark = BROWSER_TESTS


def test_an_owner_reads_the_quotas_and_finds_who_approved_a_job(live_server, browser, expect, project, member, submit,
                                                                run_job):
    ProjectQuota.objects.create(project=project, jobs_per_day=2)
    editor, reviewer = member(project, "editor"), member(project, "reviewer")
    wanted, other = submit(project, text="the one asked about", user=editor), submit(project, user=editor)
    for job in (wanted, other):
        run_job(job)
        decider = review.Reviewer(actor=f"user:{reviewer.pk}")
        review.decide(review.claim(ReviewItem.objects.get(output__job=job), decider), decider, action="approve")
    owner = member(project, "owner")
    page = sign_in(browser, live_server.url, owner.username)

    page.goto(f"{live_server.url}/usage/")
    jobs_quota = page.locator("#quotas tr[data-quota=jobs_per_day]")
    expect(jobs_quota).to_contain_text("2 of 2")
    expect(jobs_quota).to_contain_text("0 left")
    expect(jobs_quota).to_contain_text("00:00 UTC (in ")
    shot(page, "60-usage-quotas")

    page.goto(f"{live_server.url}/settings/")
    page.fill("#audit-filters input[name=audit_object]", str(wanted.pk))
    page.select_option("#audit-filters select[name=audit_action]", "review_approve")
    page.click("#audit-filters button")
    rows = page.locator("#audit tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(reviewer.username)
    expect(rows.first).to_contain_text("pending → approved")
    assert page.url.endswith("#audit") and f"audit_object={wanted.pk}" in page.url
    shot(page, "61-audit-search")
    page.click("#audit tbody tr a.audit-job")
    expect(page).to_have_url(f"{live_server.url}/jobs/{wanted.pk}/")
    page.go_back()
    page.click("#audit-clear")
    expect(rows).to_have_count(6)  # both jobs: two screenings, two leases, two approvals
