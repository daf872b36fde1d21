"""A project's allow list: managed by owners through the API (audited, all or nothing), read by screening only
when it changed, never an exception to the blocklist."""

from __future__ import annotations

import pytest
from atelier_sdk.safety import Target

from atelier_platform.moderation import policies
from atelier_platform.moderation.checks import replace_safety_checks
from atelier_platform.moderation.models import AllowlistEntry, AuditEvent, BlocklistEntry
from atelier_platform.moderation.screening import policy_for, screen
from atelier_plugins.safety.blocklist import BlocklistCheck
from atelier_plugins.safety.personal_data import PersonalDataCheck
from atelier_plugins.safety.profanity import ProfanityCheck

ALLOWLIST = "/api/v1/safety/allowlist/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(project, make_key, client_for):
    return client_for(make_key(project, ["jobs:read", "jobs:write", "admin"]).raw)


@pytest.fixture
def real_checks():
    checks = [BlocklistCheck(), ProfanityCheck(), PersonalDataCheck()]
    for check in checks:
        check.load()
    replace_safety_checks(checks)


def test_owners_import_read_and_replace_the_list_and_every_change_is_audited(owner, project):
    added = owner.post(ALLOWLIST, {"entries": [
        {"value": "Support@Shop.example"}, {"value": "1-800-555-0142"}, {"value": "https://shop.example/contact"},
        {"value": "wool"}, {"value": "+1 (800) 555-0142"},  # the same number as the second: one entry
        {"value": "555", "kind": "term"},
    ]}, format="json")
    assert added.status_code == 200 and added.json() == {"added": 5, "removed": 0, "total": 5}
    assert owner.get(ALLOWLIST).json() == {"total": 5, "entries": [
        {"kind": "email", "value": "Support@Shop.example"}, {"kind": "phone", "value": "1-800-555-0142"},
        {"kind": "term", "value": "555"}, {"kind": "term", "value": "wool"},
        {"kind": "url", "value": "https://shop.example/contact"}]}
    replaced = owner.post(ALLOWLIST, {"entries": [{"value": "WOOL"}, {"value": "cotton"}], "replace": True}, format="json")
    assert replaced.json() == {"added": 1, "removed": 4, "total": 2}
    assert sorted(AllowlistEntry.objects.values_list("normalised", flat=True)) == ["cotton", "wool"]
    # not secret, unlike the blocklist: the audit says what was allowed, and what no longer is
    first, second = AuditEvent.objects.filter(action="allowlist_imported").order_by("id")
    assert "email: Support@Shop.example" in first.after["added"] and first.actor.startswith("key:")
    assert second.after == {"added": ["term: cotton"], "total": 2, "removed": [
        "email: Support@Shop.example", "phone: 1-800-555-0142", "term: 555", "url: https://shop.example/contact"]}


def test_one_bad_entry_refuses_the_whole_import_saying_why(owner, project):
    response = owner.post(ALLOWLIST, {"entries": [{"value": "wool"}, {"value": "555-0142", "kind": "phone"},
                                                  {"value": "x", "kind": "email"}]}, format="json")
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert set(details) == {"entries.1.value", "entries.2.value"} and "country code" in details["entries.1.value"][0]
    assert not AllowlistEntry.objects.exists() and not AuditEvent.objects.exists()


def test_the_list_as_a_whole_holds_at_most_a_thousand_entries(owner, project, monkeypatch):
    """Each import was held to 1,000 entries, the list not at all: imports one after another grew it without end
    (and the settings page showed the first 1,000 without a word)."""
    monkeypatch.setattr(policies, "MAX_ALLOW_ENTRIES", 3)
    assert owner.post(ALLOWLIST, {"entries": [{"value": "wool"}, {"value": "linen"}]}, format="json").status_code == 200
    refused = owner.post(ALLOWLIST, {"entries": [{"value": "silk"}, {"value": "jute"}]}, format="json")
    assert refused.status_code == 400
    assert "at most 3 entries; this would make it 4" in refused.json()["error"]["details"]["entries"][0]
    assert sorted(AllowlistEntry.objects.values_list("value", flat=True)) == ["linen", "wool"]  # nothing half-written
    assert AuditEvent.objects.filter(action="allowlist_imported").count() == 1
    # what replaces the list counts as the list: the old entries it drops make room
    replaced = owner.post(ALLOWLIST, {"entries": [{"value": "silk"}, {"value": "jute"}, {"value": "wool"}],
                                      "replace": True}, format="json")
    assert replaced.json() == {"added": 2, "removed": 1, "total": 3}


def test_editors_cannot_touch_the_allow_list(api):
    assert api.get(ALLOWLIST).status_code == 403
    assert api.post(ALLOWLIST, {"entries": [{"value": "wool"}]}, format="json").status_code == 403


def test_every_change_to_the_allow_list_reaches_screening_by_any_path(api, project):
    """Rows written straight through the ORM (the admin, a shell) as well as by the service: the database bumps
    the policy's revision, so the next screening sees the list as it is now."""
    replace_safety_checks([PersonalDataCheck()])
    policy_for(project)
    jobs = "/api/v1/jobs/"

    def submit(text):
        return api.post(jobs, {"plugin": "reverse_text", "input": {"text": text}}, format="json").status_code

    assert submit("write to help@shop.example") == 422  # personal data, score 1.0: blocked
    entry = AllowlistEntry.objects.create(project=project, kind="email", value="help@shop.example",
                                          normalised="help@shop.example")
    assert submit("write to HELP@shop.example") == 201
    AllowlistEntry.objects.filter(pk=entry.pk).update(normalised="sales@shop.example")  # in place: same count, same ids
    assert submit("write to help@shop.example") == 422
    assert submit("write to sales@shop.example") == 201
    entry.delete()
    assert submit("write to sales@shop.example") == 422


def test_screening_with_the_policy_in_hand_reads_nothing_while_the_lists_are_unchanged(
        project, real_checks, django_assert_num_queries):
    policies.import_allowlist(project, "test", [{"value": "help@shop.example"}, {"value": "wool"}])
    policy = policy_for(project, fresh=True)
    texts = [("output.text", "Merino wool, write to help@shop.example")]
    assert screen(project, Target.OUTPUT, texts, policy=policy)["decision"] == "pass"
    with django_assert_num_queries(0):
        assert screen(project, Target.OUTPUT, texts, policy=policy)["decision"] == "pass"


def test_an_allowed_term_never_unblocks_the_blocklist_nor_hides_what_stands_beside_it(project, real_checks):
    policies.import_allowlist(project, "test", [{"value": "wool"}, {"value": "moonshine"}])
    BlocklistEntry.objects.create(project=project, pattern="moonshine", category="illicit")
    policy = policy_for(project, fresh=True)
    blocked = screen(project, Target.OUTPUT, [("output.text", "wool and moonshine")], policy=policy)
    assert blocked["decision"] == "block" and blocked["flagged"] == ["illicit"]
    insult = screen(project, Target.OUTPUT, [("output.text", "a wool scarf for a fucking idiot")], policy=policy)
    assert "harassment" in insult["flagged"]


def test_a_published_contact_is_neither_reported_nor_masked_and_the_rest_is(project, real_checks):
    policies.import_allowlist(project, "test", [{"value": "support@lumenloom.example"}, {"value": "1-800-555-0142"}])
    policies.update_policy(project, "test", {"mask_personal_data": True})
    text = "E-mail support@lumenloom.example or call (800) 555-0142; Priya is on priya@example.org."
    report = screen(project, Target.OUTPUT, [("output.reply", text)], policy=policy_for(project, fresh=True))
    [finding] = report["findings"]
    assert [text[e["start"]:e["end"]] for e in finding["evidence"]] == ["priya@example.org"]
