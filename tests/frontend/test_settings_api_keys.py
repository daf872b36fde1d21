"""The settings page's API keys: made to expire (and flagged when that is near), renamed, and marked when the
member who made one has left the project."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Membership
from atelier_platform.accounts.services import issue_api_key
from atelier_platform.moderation.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(project, signed_in):
    return signed_in(project, "owner")


def row(page: str, key: ApiKey) -> str:
    """The key's row in the list, its tags stripped and its spacing folded: what a person reads."""
    found = re.search(rf'<tr[^>]*data-key="{key.prefix}">(.*?)</tr>', page, re.S)
    assert found, f"no row for {key.prefix}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def row_html(page: str, key: ApiKey) -> str:
    return re.search(rf'<tr[^>]*data-key="{key.prefix}">.*?</tr>', page, re.S).group(0)


def test_a_key_made_to_expire_in_30_days_says_when(project, owner):
    before = timezone.now()
    response = owner.post("/settings/", {"action": "create_key", "name": "ci", "scopes": ["jobs:read"],
                                         "expires_in_days": "30"})
    assert response.status_code == 302, response.content.decode()[:500]
    key = ApiKey.objects.get()
    assert before + timedelta(days=30) <= key.expires_at <= timezone.now() + timedelta(days=30)
    page = owner.get("/settings/").content.decode()
    assert key.expires_at.strftime("%b %-d, %Y") in row(page, key)
    assert "expires soon" not in row(page, key)
    # and one made to last shows "never"
    owner.post("/settings/", {"action": "create_key", "name": "forever", "scopes": ["jobs:read"], "expires_in_days": ""})
    forever = ApiKey.objects.get(name="forever")
    assert forever.expires_at is None
    assert "never" in row(owner.get("/settings/").content.decode(), forever)


@pytest.mark.parametrize("chosen", ["7", "abc", "-30", "3650000", "30.5"])
def test_a_lifetime_the_form_does_not_offer_is_refused_and_makes_no_key(project, owner, chosen):
    response = owner.post("/settings/", {"action": "create_key", "name": "x", "scopes": ["jobs:read"],
                                         "expires_in_days": chosen})
    assert response.status_code == 400
    assert "choose one of the lifetimes offered" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_expired_keys_are_marked_and_those_expiring_within_a_week_flagged(project, owner):
    now = timezone.now()
    expired = issue_api_key(project, name="old", expires_at=now + timedelta(hours=1)).api_key
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=now - timedelta(days=2))
    soon = issue_api_key(project, name="soon", expires_at=now + timedelta(days=6)).api_key
    later = issue_api_key(project, name="later", expires_at=now + timedelta(days=8)).api_key
    page = owner.get("/settings/").content.decode()
    assert "expired" in row(page, expired) and "expires soon" not in row(page, expired)
    assert 'class="expired"' in row_html(page, expired)
    assert "expires soon" in row(page, soon) and "expired" not in row(page, soon)
    assert "expires soon" not in row(page, later) and "expired" not in row(page, later)


def test_the_owner_renames_a_key_audited_and_shown_in_the_audit_log(project, owner):
    key = issue_api_key(project, name="old name").api_key
    response = owner.post("/settings/", {"action": "rename_key", "key": key.pk, "new_name": " shop export "}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Key {key.prefix} renamed." in page
    key.refresh_from_db()
    assert key.name == "shop export"
    assert row(page, key).startswith("shop export")
    event = AuditEvent.objects.get(project=project, action="api_key_renamed")
    assert event.actor == f"user:{owner.user.pk}" and event.before["name"] == "old name"
    assert "API key renamed" in page  # the audit log's words for it


def test_a_rename_over_100_characters_is_refused_and_another_projects_key_is_left_alone(project, other_project, owner):
    key = issue_api_key(project, name="kept").api_key
    response = owner.post("/settings/", {"action": "rename_key", "key": key.pk, "new_name": "x" * 101})
    assert response.status_code == 400 and "at most 100 characters" in response.content.decode()
    # the form is shown open again, with what was typed
    assert re.search(r'<details class="rename-key small" open>.*?value="x{101}"', row_html(response.content.decode(), key), re.S)
    key.refresh_from_db()
    assert key.name == "kept"
    theirs = issue_api_key(other_project, name="theirs").api_key
    owner.post("/settings/", {"action": "rename_key", "key": theirs.pk, "new_name": "taken"})
    theirs.refresh_from_db()
    assert theirs.name == "theirs"
    assert not AuditEvent.objects.filter(action="api_key_renamed").exists()


def test_a_key_whose_maker_left_says_so_and_still_works(project, owner, member):
    from atelier_platform.accounts.services import authenticate_api_key

    bob = member(project, "owner")
    issued = issue_api_key(project, name="bob's", created_by=bob)
    mine = issue_api_key(project, name="mine", created_by=owner.user).api_key
    page = owner.get("/settings/").content.decode()
    assert "no longer a member" not in page
    Membership.objects.filter(project=project, user=bob).delete()
    page = owner.get("/settings/").content.decode()
    assert f"made by {bob.username}, no longer a member" in row(page, issued.api_key)
    assert "no longer a member" not in row(page, mine) and owner.user.username in row(page, mine)
    assert authenticate_api_key(issued.raw) == issued.api_key  # shown, not revoked


def test_the_keys_new_words_are_in_chinese(project, owner, member):
    bob = member(project, "owner")
    issue_api_key(project, name="bob's", created_by=bob, expires_at=timezone.now() + timedelta(days=3))
    Membership.objects.filter(project=project, user=bob).delete()
    owner.post("/language/", {"language": "zh-hans", "next": "/settings/"})
    page = owner.get("/settings/").content.decode()
    for words in ("过期时间", "重命名", f"由 {bob.username} 创建，此人已不是成员", "即将过期", "永不过期", "一年后"):
        assert words in page, words
    owner.post("/language/", {"language": "en", "next": "/settings/"})
