"""In a real browser: an owner invites a new colleague by e-mail, copies the link shown once, and the colleague opens
it in a browser of their own, creates an account there and lands in the project with the role given."""

from __future__ import annotations

from django.core import mail

from atelier_platform.accounts.models import Membership
from tests.frontend.browsing import BROWSER_TESTS, SHOTS, shot, sign_in

pytestmark = BROWSER_TESTS


def test_an_owner_invites_and_a_newcomer_joins_with_an_account_made_on_the_link(live_server, browser, expect, project,
                                                                                 member):
    owner = member(project, "owner")
    page = sign_in(browser, live_server.url, owner.username)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto(f"{live_server.url}/settings/#invitations")
    invitations = page.locator("#invitations")
    expect(invitations).to_contain_text("No open invitations.")
    invitations.locator("input[name=email]").fill("robin@example.com")
    invitations.locator("select[name=role]").select_option("reviewer")
    invitations.locator("form.invite button").click()

    shown = page.locator("#new-invitation")
    expect(shown).to_contain_text("shown this once")
    expect(shown).to_contain_text("It was also e-mailed to robin@example.com.")
    link = page.locator("#invitation-link").inner_text().strip()
    assert link.startswith(f"{live_server.url}/invite/")
    page.locator("#new-invitation button[data-copy]").click()
    expect(page.locator("#new-invitation button[data-copy]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link
    row = page.locator('#invitations tr[data-invitation="robin@example.com"]')
    expect(row).to_contain_text("reviewer")
    expect(row).to_contain_text(owner.username)
    assert [message.to for message in mail.outbox] == [["robin@example.com"]] and link in mail.outbox[0].body
    shot(page, "70-invitation-link-shown-once")
    invitations.screenshot(path=str(SHOTS / "70-invitation-link-shown-once-section.png"))
    page.reload()
    expect(page.locator("#new-invitation")).to_have_count(0)  # once

    # the newcomer's own browser: nobody signed in
    newcomer = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    newcomer.goto(link)
    expect(newcomer.locator("h1")).to_have_text(f"Join {project.name}")
    expect(newcomer.locator(".invitation-what")).to_contain_text("as reviewer")
    shot(newcomer, "71-invitation-page")
    newcomer.fill("#id_username", "robin")
    newcomer.fill("#id_password1", "password")
    newcomer.fill("#id_password2", "password")
    newcomer.click("#create-account")
    expect(newcomer.locator("#id_password1 ~ .field-error").first).to_contain_text("too common")
    shot(newcomer, "72-invitation-weak-password")
    newcomer.fill("#id_password1", "violet tapestry 42 lanterns")
    newcomer.fill("#id_password2", "violet tapestry 42 lanterns")
    newcomer.click("#create-account")
    newcomer.wait_for_url(f"{live_server.url}/review/")
    expect(newcomer.locator(".messages")).to_contain_text(f"You joined {project.name} as reviewer.")
    expect(newcomer.locator(".role-badge")).to_have_text("reviewer")
    expect(newcomer.locator(".topbar .user")).to_have_text("robin")
    shot(newcomer, "73-invitation-joined")
    assert Membership.objects.get(project=project, user__username="robin").role == "reviewer"

    # the link is used up: opened again, it says so
    newcomer.goto(link)
    expect(newcomer.locator("h1")).to_have_text("This invitation has been used already")
    page.goto(f"{live_server.url}/settings/")
    expect(page.locator("#invitations")).to_contain_text("No open invitations.")
    expect(page.locator('#members tr[data-member="robin"]')).to_be_visible()
