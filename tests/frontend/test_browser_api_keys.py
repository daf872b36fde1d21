"""The settings page's API keys in a real browser: a key made to expire, renamed in place, an expired one, one that
expires within the week flagged, and one whose maker has left marked."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Membership
from atelier_platform.accounts.roles import Role
from atelier_platform.accounts.services import issue_api_key
from atelier_platform.moderation.models import AuditEvent
from tests.frontend.browsing import BROWSER_TESTS, SHOTS, sign_in

pytestmark = BROWSER_TESTS


def test_keys_expire_are_renamed_and_say_when_their_maker_left(live_server, browser, expect, project, member):
    owner = member(project, Role.OWNER)
    bob = member(project, Role.OWNER)
    now = timezone.now()
    bobs = issue_api_key(project, name="bob's export", created_by=bob, expires_at=now + timedelta(days=3)).api_key
    old = issue_api_key(project, name="old script", created_by=owner, expires_at=now + timedelta(hours=1)).api_key
    ApiKey.objects.filter(pk=old.pk).update(expires_at=now - timedelta(days=1))
    shop = issue_api_key(project, name="shop", created_by=owner).api_key
    Membership.objects.filter(project=project, user=bob).delete()

    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/#key")
    bobs_row = page.locator(f"tr[data-key='{bobs.prefix}']")
    expect(bobs_row.locator(".maker-left")).to_have_text(f"made by {bob.username}, no longer a member")
    expect(bobs_row.locator(".expires-soon")).to_be_visible()
    expect(page.locator(f"tr[data-key='{old.prefix}'] .expired-note")).to_contain_text("expired")
    expect(page.locator(f"tr[data-key='{shop.prefix}'] .key-expires")).to_have_text("never")
    expect(page.locator(f"tr[data-key='{shop.prefix}'] .expires-soon")).to_have_count(0)

    # rename in place: the form opens under the name, filled with it
    shop_row = page.locator(f"tr[data-key='{shop.prefix}']")
    expect(shop_row.locator(".rename-key input[name=new_name]")).to_be_hidden()
    shop_row.locator(".rename-key summary").click()
    expect(shop_row.locator(".rename-key input[name=new_name]")).to_have_value("shop")
    shop_row.locator(".rename-key input[name=new_name]").fill("shop (nightly export)")
    shop_row.locator(".rename-key button").click()
    expect(page.locator(".notice")).to_contain_text(f"Key {shop.prefix} renamed.")
    expect(page.locator(f"tr[data-key='{shop.prefix}'] .key-name")).to_contain_text("shop (nightly export)")
    assert AuditEvent.objects.filter(action="api_key_renamed", object_id=str(shop.pk)).count() == 1

    # a new key that expires in 90 days
    page.fill(".create-key input[name=name]", "quarterly")
    page.select_option(".create-key select[name=expires_in_days]", "90")
    page.click(".create-key button:has-text('Create key')")
    expect(page.locator("#new-key")).to_be_visible()
    made = ApiKey.objects.get(name="quarterly")
    assert timedelta(days=89) < made.expires_at - timezone.now() <= timedelta(days=90)
    expect(page.locator(f"tr[data-key='{made.prefix}'] .key-expires")).to_contain_text(made.expires_at.strftime("%Y"))
    page.locator("#key").screenshot(path=str(SHOTS / "settings-api-keys-desktop.png"))
    assert page.evaluate("document.querySelector('#key table').getBoundingClientRect().right <= document.querySelector('#key').getBoundingClientRect().right")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/settings/#key")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.locator("#key").screenshot(path=str(SHOTS / "settings-api-keys-phone.png"))
    page.context.close()
