"""Removing a mistaken term from the blocklist, or entries from the allow list, on the settings page without
retyping the list: owners only, all or none (a line or an entry the list does not hold is named and nothing is
removed), audited, in English and in Chinese."""

from __future__ import annotations

import pytest

from atelier_platform.moderation.models import AllowlistEntry, AuditEvent, BlocklistEntry
from tests.frontend.test_dashboard_fixes import in_chinese

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(project, signed_in):
    return signed_in(project, "owner")


def terms(project) -> list[tuple[str, bool]]:
    return sorted(BlocklistEntry.objects.filter(project=project).values_list("pattern", "is_regex"))


def test_an_owner_removes_one_mistaken_term_and_keeps_the_rest(project, owner):
    owner.post("/settings/", {"action": "blocklist", "terms": "cheap knock-off\nWool\nfree money", "category": "spam"})
    owner.post("/settings/", {"action": "blocklist", "terms": r"\bcode\s?name\b", "category": "illicit", "is_regex": "on"})
    response = owner.post("/settings/", {"action": "blocklist_remove", "remove_terms": "wool\n\n"})
    assert response.status_code == 302
    assert terms(project) == [(r"\bcode\s?name\b", True), ("cheap knock-off", False), ("free money", False)]
    page = owner.get("/settings/").content.decode()
    assert "Blocklist: 1 term removed, 3 left. Texts with it are no longer blocked." in page
    assert 'id="blocklist-remove"' in page and "Remove terms, one per line" in page
    event = AuditEvent.objects.get(action="blocklist_terms_removed")
    assert event.actor == f"user:{owner.user.pk}" and event.after == {"removed": 1, "total": 3}
    assert "blocklist terms removed" in page  # the audit log says it in words

    owner.post("/settings/", {"action": "blocklist_remove", "remove_terms": r"\bcode\s?name\b", "remove_regex": "on"})
    assert terms(project) == [("cheap knock-off", False), ("free money", False)]


def test_a_line_the_list_does_not_hold_is_named_and_nothing_is_removed(project, other_project, owner):
    BlocklistEntry.objects.create(project=project, pattern="free money", category="spam")
    BlocklistEntry.objects.create(project=other_project, pattern="theirs", category="spam")
    typed = "free money\n\ntheirs"
    response = owner.post("/settings/", {"action": "blocklist_remove", "remove_terms": typed})
    page = response.content.decode()
    assert response.status_code == 400
    assert "Line 3: Not in the blocklist" in page and "Line 1:" not in page
    assert f'aria-invalid="true">{typed}</textarea>' in page  # kept as typed, to correct
    assert terms(project) == [("free money", False)] and BlocklistEntry.objects.filter(project=other_project).exists()
    assert not AuditEvent.objects.filter(action="blocklist_terms_removed").exists()

    empty = owner.post("/settings/", {"action": "blocklist_remove", "remove_terms": " \n"})
    assert empty.status_code == 400 and "Type the terms to remove, one per line." in empty.content.decode()

    chinese = in_chinese(owner).post("/settings/", {"action": "blocklist_remove", "remove_terms": "nope"}).content.decode()
    assert "第 1 行: 屏蔽词表中没有" in chinese and "Not in the blocklist" not in chinese
    assert terms(project) == [("free money", False)]


def test_an_owner_removes_ticked_allow_list_entries(project, other_project, owner):
    owner.post("/settings/", {"action": "allowlist", "allow_entries": "support@shop.example\nwool\nlinen", "allow_kind": ""})
    entries = dict(AllowlistEntry.objects.filter(project=project).values_list("value", "pk"))
    page = owner.get("/settings/").content.decode()
    assert f'name="remove" value="{entries["wool"]}" aria-label="Remove wool"' in page

    theirs = AllowlistEntry.objects.create(project=other_project, kind="term", value="silk", normalised="silk")
    for bad in ([entries["wool"], theirs.pk], ["x"], []):
        response = owner.post("/settings/", {"action": "allowlist_remove", "remove": bad})
        assert response.status_code == 400, bad
        assert AllowlistEntry.objects.filter(project=project).count() == 3 and AllowlistEntry.objects.filter(pk=theirs.pk).exists()
    refused = owner.post("/settings/", {"action": "allowlist_remove", "remove": [entries["wool"], theirs.pk]}).content.decode()
    assert "Not in the allow list" in refused and f'value="{entries["wool"]}" aria-label="Remove wool" checked' in refused

    response = owner.post("/settings/", {"action": "allowlist_remove", "remove": [entries["wool"], entries["support@shop.example"]]})
    assert response.status_code == 302
    assert list(AllowlistEntry.objects.filter(project=project).values_list("value", flat=True)) == ["linen"]
    page = owner.get("/settings/").content.decode()
    assert "Allow list: 2 entries removed, 1 left." in page
    assert AuditEvent.objects.get(action="allowlist_entries_removed").after == {
        "removed": ["email: support@shop.example", "term: wool"], "total": 1}
    assert "移除" in in_chinese(owner).get("/settings/").content.decode()


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_only_owners_remove(project, signed_in, role):
    BlocklistEntry.objects.create(project=project, pattern="free money", category="spam")
    entry = AllowlistEntry.objects.create(project=project, kind="term", value="wool", normalised="wool")
    client = signed_in(project, role)
    assert client.post("/settings/", {"action": "blocklist_remove", "remove_terms": "free money"}).status_code == 403
    assert client.post("/settings/", {"action": "allowlist_remove", "remove": [entry.pk]}).status_code == 403
    assert BlocklistEntry.objects.exists() and AllowlistEntry.objects.exists()
