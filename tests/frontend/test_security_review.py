"""The dashboard under the platform's Content-Security-Policy (``atelier_platform.security``), in a real browser:
its pages, its inline handlers (the project and language switchers, the webhook delete's confirmation), its
charts and the API docs all work, and the browser reports no violation of the policy; a script injected into a
page does not run."""

from __future__ import annotations

import pytest

from atelier_platform.accounts.roles import Role
from atelier_platform.webhooks.models import WebhookEndpoint
from tests.factories import MembershipFactory, ProjectFactory
from tests.frontend.browsing import BROWSER_TESTS, sign_in

pytestmark = BROWSER_TESTS

COLLECT_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
"""


def violations(page) -> list[str]:
    return page.evaluate("window.__violations")


@pytest.mark.usefixtures("run_job")
def test_the_dashboard_works_under_its_content_security_policy(live_server, browser, expect, project, member, submit):
    owner = member(project, Role.OWNER)
    second = ProjectFactory(slug=f"zz-{project.slug}", name="Second project")  # after ``project``, which opens first
    MembershipFactory(project=second, user=owner, role=Role.OWNER)
    WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/atelier", secret="whsec_x")
    submit(project, text="a job to list", user=owner)
    page = sign_in(browser, live_server.url, owner.username)
    page.context.add_init_script(COLLECT_VIOLATIONS)
    seen = []
    for path in ("/jobs/", "/usage/", "/review/", "/workers/", "/settings/"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        seen += [f"{path}: {v}" for v in violations(page)]
    expect(page.locator("tr[data-endpoint]")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.dismiss())  # onsubmit's confirm() ran: dismissed, nothing deleted
    page.click(".delete-endpoint")
    expect(page.locator("tr[data-endpoint]")).to_have_count(1)
    seen += [f"confirm: {v}" for v in violations(page)]
    page.select_option("#project-switcher", second.slug)  # onchange submits the form
    expect(page.locator("#project-switcher option[selected]")).to_have_text("Second project")
    seen += [f"switcher: {v}" for v in violations(page)]
    page.goto(f"{live_server.url}/api/v1/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Atelier API")
    seen += [f"docs: {v}" for v in violations(page)]
    assert seen == []
    # and what it is for: a script that slipped into a page (an injected <script>, an onerror) does not run
    page.goto(f"{live_server.url}/jobs/")
    page.evaluate("""() => document.body.append(
        Object.assign(document.createElement("script"), {textContent: "window.__ran = 'script'"}))""")
    assert page.evaluate("window.__ran") is None  # an inline script runs as it is added, or never
    page.evaluate("""() => document.body.insertAdjacentHTML(
        "beforeend", '<img src="/nothing.png" onerror="window.__ran = 1">')""")
    page.wait_for_function("window.__violations.length >= 2")  # the image failed and its handler was refused
    assert page.evaluate("window.__ran") is None
    assert len(violations(page)) == 2


def test_the_admin_works_under_the_content_security_policy(live_server, browser, expect, project, member, submit):
    """The operator's pages carry the same policy: their scripts (calendar and clock widgets, the actions bar,
    related-object popups) come from /static/ and run; the browser reports no violation."""
    owner = member(project, Role.OWNER)
    owner.is_staff = owner.is_superuser = True
    owner.save()
    job = submit(project, text="a job to list", user=owner)
    page = sign_in(browser, live_server.url, owner.username)
    page.context.add_init_script(COLLECT_VIOLATIONS)
    seen = []
    for path in ("/admin/", "/admin/auth/user/", f"/admin/auth/user/{owner.pk}/change/", "/admin/jobs/job/",
                 f"/admin/jobs/job/{job.pk}/change/", "/admin/accounts/project/add/"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        seen += [f"{path}: {v}" for v in violations(page)]
    page.goto(f"{live_server.url}/admin/auth/user/{owner.pk}/change/")
    expect(page.locator(".datetimeshortcuts").first).to_be_visible()  # DateTimeShortcuts.js ran
    page.goto(f"{live_server.url}/admin/jobs/job/")
    page.check("#action-toggle")  # actions.js ran: every row is selected with the toggle
    expect(page.locator(".action-counter")).to_contain_text("1 of 1")
    assert seen == []
