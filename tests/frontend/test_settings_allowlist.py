"""The allow list on the settings page, beside the blocklist: imported one entry a line (kinds detected or
chosen), shown back, audited, a refused line named; in English and in Chinese."""

from __future__ import annotations

import pytest

from atelier_platform.moderation.models import AllowlistEntry, AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(project, signed_in):
    return signed_in(project, "owner")


def test_the_allow_list_is_imported_shown_and_audited(project, owner):
    response = owner.post("/settings/", {"action": "allowlist", "allow_entries": "support@lumenloom.example\n\n1-800-555-0142\nwool\n",
                                         "allow_kind": ""})
    assert response.status_code == 302
    assert set(AllowlistEntry.objects.values_list("kind", "normalised")) == {
        ("email", "support@lumenloom.example"), ("phone", "+18005550142"), ("term", "wool")}
    page = owner.get("/settings/").content.decode()
    assert 'id="allowlist"' in page and "Allow list: 3 added, 0 removed, 3 in all." in page
    assert '<label class="chip allow-entry" title="phone">' in page and "> 1-800-555-0142</label>" in page
    owner.post("/settings/", {"action": "allowlist", "allow_entries": "555", "allow_kind": "term", "replace": "on"})
    assert list(AllowlistEntry.objects.values_list("kind", "value")) == [("term", "555")]
    [first, second] = AuditEvent.objects.filter(action="allowlist_imported").order_by("id")
    assert second.actor == f"user:{owner.user.pk}" and second.after["added"] == ["term: 555"]
    assert "allow list imported" in owner.get("/settings/").content.decode()


def test_a_refused_line_is_named_and_kept_as_typed(project, owner):
    typed = "wool\n\nnot-a-number"
    response = owner.post("/settings/", {"action": "allowlist", "allow_entries": typed, "allow_kind": "phone"})
    page = response.content.decode()
    assert response.status_code == 400 and not AllowlistEntry.objects.exists()
    assert "Line 1:" in page and "Line 3:" in page and "country code" in page
    assert f">{typed}</textarea>" in page and '<option value="phone" selected>' in page


def test_the_section_reads_in_chinese(project, owner):
    owner.post("/settings/", {"action": "allowlist", "allow_entries": "wool", "allow_kind": ""})
    page = owner.get("/settings/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "允许列表" in page and "导入条目，每行一个" in page
