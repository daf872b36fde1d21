"""Removing single terms from a project's blocklist and entries from its allow list (``POST`` to the lists' ``remove/``
endpoints): owners only, all or none, audited, and seen by the next screening."""

from __future__ import annotations

import json

import pytest

from atelier_platform.moderation.checks import replace_safety_checks
from atelier_platform.moderation.models import AllowlistEntry, AuditEvent, BlocklistEntry
from atelier_platform.moderation.screening import policy_for
from atelier_plugins.safety.blocklist import BlocklistCheck
from atelier_plugins.safety.personal_data import PersonalDataCheck

BLOCKLIST = "/api/v1/safety/blocklist/"
ALLOWLIST = "/api/v1/safety/allowlist/"
JOBS = "/api/v1/jobs/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(project, make_key, client_for):
    return client_for(make_key(project, ["jobs:read", "jobs:write", "admin"]).raw)


def delete(client, url, body):
    """A removal: a POST to the list's ``remove/`` (a DELETE with a body has none in OpenAPI 3.0)."""
    return client.post(f"{url}remove/", data=json.dumps(body), content_type="application/json")


def submit(client, text: str) -> int:
    return client.post(JOBS, {"plugin": "reverse_text", "input": {"text": text}}, format="json").status_code


def test_a_removed_term_no_longer_blocks_on_the_next_screening(owner, project):
    """The compiled list is cached by the policy's revision: the removal must move it, or the term blocks on."""
    check = BlocklistCheck()
    check.load()
    replace_safety_checks([check])
    policy_for(project)
    terms = [{"pattern": "moonshine", "category": "illicit"}, {"pattern": "Hooch", "category": "illicit"},
             {"pattern": r"rival\s*corp", "is_regex": True, "category": "illicit"}]
    assert owner.post(BLOCKLIST, {"terms": terms}, format="json").status_code == 200
    assert submit(owner, "a chat about moonshine") == 422  # screened: the list compiled and cached
    assert submit(owner, "a chat about hooch") == 422

    # the body of the import may be sent back as it is (category ignored); a plain term is found whatever its case
    response = delete(owner, BLOCKLIST, {"terms": [{"pattern": "moonshine", "category": "illicit"}, {"pattern": "hooch"}]})
    assert response.status_code == 200 and response.json() == {"removed": 2, "total": 1}
    assert submit(owner, "a chat about moonshine") == 201
    assert submit(owner, "a chat about hooch") == 201
    assert submit(owner, "ask rival corp") == 422  # the rest still blocks
    event = AuditEvent.objects.get(action="blocklist_terms_removed")
    assert event.after == {"removed": 2, "total": 1} and event.actor.startswith("key:")
    assert "moonshine" not in json.dumps([event.before, event.after])  # the terms are the project's secret


def test_a_term_not_in_the_list_refuses_the_whole_removal(owner, project, other_project):
    """Another project's term, a typo, a regular expression named as a plain term: 404 naming each, nothing removed."""
    BlocklistEntry.objects.create(project=project, pattern="moonshine", category="illicit")
    BlocklistEntry.objects.create(project=project, pattern=r"\d{4}", is_regex=True, category="custom")
    BlocklistEntry.objects.create(project=other_project, pattern="theirs", category="custom")
    for body, missing in (
        ({"terms": [{"pattern": "moonshine"}, {"pattern": "theirs"}]}, ["terms.1.pattern"]),
        ({"terms": [{"pattern": "moonshin"}]}, ["terms.0.pattern"]),
        ({"terms": [{"pattern": r"\d{4}"}]}, ["terms.0.pattern"]),  # stored as a regular expression
        ({"terms": [{"pattern": r"\D{4}", "is_regex": True}]}, ["terms.0.pattern"]),  # a regex by its exact text
    ):
        response = delete(owner, BLOCKLIST, body)
        assert response.status_code == 404, body
        error = response.json()["error"]
        assert error["code"] == "not_found" and sorted(error["details"]) == missing
        assert "nothing was removed" in error["message"]
    assert BlocklistEntry.objects.filter(project=project).count() == 2
    assert BlocklistEntry.objects.filter(project=other_project).count() == 1
    assert not AuditEvent.objects.filter(action="blocklist_terms_removed").exists()
    assert delete(owner, BLOCKLIST, {"terms": [{"pattern": r"\d{4}", "is_regex": True}]}).json() == {"removed": 1, "total": 1}


@pytest.mark.parametrize("body", [{}, {"terms": []}, {"terms": [{"pattern": ""}]}, {"terms": "moonshine"},
                                  {"terms": [{"pattern": "x", "colour": "red"}]},
                                  {"terms": [{"pattern": "x"}] * 1001}])
def test_a_malformed_removal_is_a_400_and_removes_nothing(owner, project, body):
    BlocklistEntry.objects.create(project=project, pattern="x", category="custom")
    response = delete(owner, BLOCKLIST, body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    assert BlocklistEntry.objects.filter(project=project).count() == 1


def test_only_owners_remove_terms(api, project):
    BlocklistEntry.objects.create(project=project, pattern="moonshine", category="illicit")
    assert delete(api, BLOCKLIST, {"terms": [{"pattern": "moonshine"}]}).status_code == 403
    assert delete(api, ALLOWLIST, {"entries": [{"value": "wool"}]}).status_code == 403
    assert BlocklistEntry.objects.filter(project=project).count() == 1


def test_an_allow_list_entry_is_removed_as_written_any_way_and_screening_sees_it(owner, project, other_project):
    replace_safety_checks([PersonalDataCheck()])
    policy_for(project)
    assert owner.post(ALLOWLIST, {"entries": [{"value": "help@shop.example"}, {"value": "+1 800 555 0142"},
                                              {"value": "wool"}]}, format="json").status_code == 200
    AllowlistEntry.objects.create(project=other_project, kind="term", value="linen", normalised="linen")
    assert submit(owner, "write to help@shop.example") == 201  # allowed: not personal data

    refused = delete(owner, ALLOWLIST, {"entries": [{"value": "HELP@shop.example"}, {"value": "linen"}]})
    assert refused.status_code == 404 and list(refused.json()["error"]["details"]) == ["entries.1.value"]
    bad = delete(owner, ALLOWLIST, {"entries": [{"value": "555-0142", "kind": "phone"}]})  # no country code
    assert bad.status_code == 400
    assert AllowlistEntry.objects.filter(project=project).count() == 3

    # the e-mail address in another case, the number written another way: the entries as stored
    removed = delete(owner, ALLOWLIST, {"entries": [{"value": "HELP@shop.example"}, {"value": "1-800-555-0142"}]})
    assert removed.status_code == 200 and removed.json() == {"removed": 2, "total": 1}
    assert submit(owner, "write to help@shop.example") == 422  # the next screening reads the list as it is
    event = AuditEvent.objects.get(action="allowlist_entries_removed")
    assert event.after == {"removed": ["email: help@shop.example", "phone: +1 800 555 0142"], "total": 1}
    assert AllowlistEntry.objects.filter(project=other_project).count() == 1


def _list_change(project, change):
    from atelier_platform.moderation import policies

    return {
        "import_blocklist": lambda: policies.import_blocklist(project, "user:1", [{"pattern": "silk"}]),
        "import_blocklist_replace": lambda: policies.import_blocklist(project, "user:1", [{"pattern": "silk"}], replace=True),
        "remove_blocklist_terms": lambda: policies.remove_blocklist_terms(project, "user:1", [{"pattern": "wool"}]),
        "import_allowlist": lambda: policies.import_allowlist(project, "user:1", [{"value": "silk"}]),
        "remove_allowlist_entries": lambda: policies.remove_allowlist_entries(project, "user:1", [{"value": "wool"}]),
    }[change]


@pytest.mark.parametrize("change, table", [
    ("import_blocklist", "moderation_blocklistentry"), ("import_blocklist_replace", "moderation_blocklistentry"),
    ("remove_blocklist_terms", "moderation_blocklistentry"), ("import_allowlist", "moderation_allowlistentry"),
    ("remove_allowlist_entries", "moderation_allowlistentry"),
])
def test_every_change_of_a_list_locks_the_projects_policy_row_before_it_reads_the_list(project, change, table):
    """The blocklist's import read and wrote the list without the lock the allow list's import and the removals
    take (the project's SafetyPolicy row, FOR UPDATE): two imports, or an import and a removal, could interleave.
    Shown by the statements sent, not by a race: the lock comes before the first statement on the list."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from atelier_platform.moderation.models import SafetyPolicy
    from atelier_platform.moderation.policies import allow_entry

    if not connection.features.has_select_for_update:
        pytest.skip("this database has no row locks (SQLite): one writer at a time anyway")
    policy_for(project)
    BlocklistEntry.objects.create(project=project, pattern="wool", is_regex=False, category="custom")
    kind, normalised = allow_entry(None, "wool")
    AllowlistEntry.objects.create(project=project, kind=kind, value="wool", normalised=normalised)
    with CaptureQueriesContext(connection) as queries:
        _list_change(project, change)()
    statements = [query["sql"] for query in queries.captured_queries]
    policy_table = connection.ops.quote_name(SafetyPolicy._meta.db_table)
    locks = [i for i, sql in enumerate(statements) if sql.rstrip().endswith("FOR UPDATE") and f"FROM {policy_table}" in sql]
    on_the_list = [i for i, sql in enumerate(statements) if connection.ops.quote_name(table) in sql]
    assert locks and on_the_list, statements
    assert locks[0] < on_the_list[0], statements
    assert f'"project_id" = {project.pk}' in statements[locks[0]]  # this project's row, not another's
