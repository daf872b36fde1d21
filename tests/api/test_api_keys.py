"""API keys over the API: created by owners (the key shown once), listed, revoked at once, audited."""

from __future__ import annotations

import pytest

from atelier_platform.accounts.models import ApiKey
from atelier_platform.accounts.roles import Role
from atelier_platform.moderation.models import AuditEvent
from tests.api.helpers import assert_envelope

KEYS = "/api/v1/api-keys/"


def create(client, body, **extra):
    return client.post(KEYS, body, format="json", **extra)


@pytest.mark.django_db
class TestCreate:
    def test_owner_key_creates_a_key_shown_once_and_it_works(self, owner_api, client_for, project, owner_key):
        response = create(owner_api, {"name": "ci", "scopes": ["jobs:read"]})
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["key"].startswith(f"atl_{body['prefix']}_")
        assert body["scopes"] == ["jobs:read"] and body["name"] == "ci" and body["active"] is True
        assert response["Location"] == f"{KEYS}{body['id']}/"
        stored = ApiKey.objects.get(pk=body["id"])
        assert stored.project == project and body["key"] not in (stored.secret_hash, stored.prefix)
        # never shown again
        listed = owner_api.get(KEYS).json()["results"]
        assert {k["prefix"] for k in listed} == {body["prefix"], owner_key.api_key.prefix}
        assert all("key" not in k for k in listed)
        assert "key" not in owner_api.get(f"{KEYS}{body['id']}/").json()
        # the new key works, with its scopes only
        new = client_for(body["key"])
        assert new.get("/api/v1/jobs/").status_code == 200
        assert_envelope(new.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "a"}}, format="json"),
                        403, "permission_denied")

    def test_default_scopes(self, owner_api):
        assert create(owner_api, {}).json()["scopes"] == ["jobs:read", "jobs:write"]

    def test_an_empty_list_of_scopes_is_refused_not_widened_to_the_default(self, owner_api, project, make_key,
                                                                           client_for):
        """``"scopes": []`` made a key with jobs:read jobs:write, and an admin-only caller was told it "cannot grant
        scopes you do not hold: jobs:read, jobs:write" though it asked for none."""
        before = ApiKey.objects.count()
        error = assert_envelope(create(owner_api, {"name": "x", "scopes": []}), 400, "validation_error")
        assert list(error["details"]) == ["scopes"] and "at least one scope" in error["details"]["scopes"][0], error
        admin_only = client_for(make_key(project, ["admin"]).raw)
        error = assert_envelope(create(admin_only, {"name": "x", "scopes": []}), 400, "validation_error")
        assert list(error["details"]) == ["scopes"], error
        assert ApiKey.objects.count() == before + 1  # the admin-only key made here, nothing else

    def test_a_key_made_by_a_key_names_it_in_the_audit_log(self, owner_api, project, owner_key):
        """The key row's created_by is a member (null here); which key made it is in the audit log."""
        body = create(owner_api, {"name": "by-key", "scopes": ["jobs:read"]}).json()
        assert body["created_by"] is None
        event = AuditEvent.objects.get(project=project, action="api_key_created", object_id=str(body["id"]))
        assert event.actor == f"key:{owner_key.api_key.prefix}"

    def test_creation_is_audited_without_the_secret(self, owner_api, project, owner_key):
        body = create(owner_api, {"name": "audited", "scopes": ["jobs:read"]}).json()
        event = AuditEvent.objects.get(project=project, action="api_key_created")
        assert event.actor == f"key:{owner_key.api_key.prefix}"
        assert event.object_id == str(body["id"]) and event.after["prefix"] == body["prefix"]
        assert body["key"] not in str(event.after)

    def test_scopes_must_be_the_callers_own(self, project, make_key, client_for):
        admin_only = client_for(make_key(project, ["admin", "jobs:read"]).raw)
        error = assert_envelope(create(admin_only, {"scopes": ["jobs:read", "reviews:write"]}), 403, "permission_denied")
        assert "reviews:write" in error["message"]
        assert create(admin_only, {"scopes": ["jobs:read"]}).status_code == 201
        assert ApiKey.objects.filter(project=project).count() == 2

    def test_a_rate_limited_key_cannot_make_a_faster_key(self, project, client_for, atelier_config):
        """Else a key held to 5 a minute would mint one at the server's 600 and go on at that pace."""
        from atelier_platform.accounts.services import issue_api_key

        atelier_config(rate_limit_per_minute=600)
        slow = client_for(issue_api_key(project, scopes=["admin", "jobs:read"], rate_limit_per_minute=5).raw)
        inherited = create(slow, {"scopes": ["jobs:read"]})
        assert inherited.status_code == 201 and inherited.json()["rate_limit_per_minute"] == 5
        assert create(slow, {"scopes": ["jobs:read"], "rate_limit_per_minute": 3}).json()["rate_limit_per_minute"] == 3
        error = assert_envelope(create(slow, {"rate_limit_per_minute": 6}), 400, "validation_error")
        assert "5" in error["details"]["rate_limit_per_minute"][0]
        assert ApiKey.objects.filter(project=project).count() == 3  # the refused one was not made
        unlimited = client_for(issue_api_key(project, scopes=["admin"]).raw)  # at the server's limit: as before
        assert create(unlimited, {"scopes": ["admin"]}).json()["rate_limit_per_minute"] is None

    @pytest.mark.parametrize("body,field", [
        ({"scopes": ["everything"]}, "scopes"),
        ({"scopes": "jobs:read"}, "scopes"),
        ({"name": "x" * 101}, "name"),
        ({"rate_limit_per_minute": 0}, "rate_limit_per_minute"),
        ({"rate_limit_per_minute": 10**9}, "rate_limit_per_minute"),
        ({"colour": "red"}, "colour"),
    ])
    def test_bad_input(self, owner_api, body, field):
        error = assert_envelope(create(owner_api, body), 400, "validation_error")
        assert field in error["details"]

    def test_without_a_server_limit_a_keys_limit_is_at_most_what_its_column_holds(self, owner_api, project,
                                                                                   atelier_config):
        atelier_config(rate_limit_per_minute=0)  # no server limit: nothing else bounds the number asked for
        error = assert_envelope(create(owner_api, {"rate_limit_per_minute": 2**31}), 400, "validation_error")
        assert "2147483647" in error["details"]["rate_limit_per_minute"][0]
        assert ApiKey.objects.filter(project=project).count() == 1  # the caller's own
        assert create(owner_api, {"rate_limit_per_minute": 2**31 - 1}).json()["rate_limit_per_minute"] == 2**31 - 1

    @pytest.mark.parametrize("scopes", [["jobs:read", "jobs:write"], ["jobs:read", "reviews:write"]])
    def test_keys_without_admin_cannot_manage_keys(self, project, make_key, client_for, scopes):
        client = client_for(make_key(project, scopes).raw)
        assert_envelope(create(client, {}), 403, "permission_denied")
        assert_envelope(client.get(KEYS), 403, "permission_denied")

    @pytest.mark.parametrize("role,allowed", [(Role.OWNER, True), (Role.EDITOR, False), (Role.REVIEWER, False), (Role.VIEWER, False)])
    def test_only_owners_among_members(self, project, member, role, allowed):
        from rest_framework.test import APIClient

        client = APIClient()
        client.force_login(member(project, role))
        response = client.post(KEYS, {"scopes": ["jobs:read"]}, format="json", HTTP_X_ATELIER_PROJECT=project.slug)
        assert response.status_code == (201 if allowed else 403), response.content
        if allowed:
            assert ApiKey.objects.get(pk=response.json()["id"]).created_by is not None

    def test_idempotent_retry_does_not_make_a_second_key(self, owner_api, project):
        first = create(owner_api, {"name": "once"}, HTTP_IDEMPOTENCY_KEY="make-key-1")
        assert first.status_code == 201
        error = assert_envelope(create(owner_api, {"name": "once"}, HTTP_IDEMPOTENCY_KEY="make-key-1"), 409,
                                "api_key_already_issued")
        assert error["details"] == {"id": first.json()["id"], "prefix": first.json()["prefix"]}
        assert_envelope(create(owner_api, {"name": "other"}, HTTP_IDEMPOTENCY_KEY="make-key-1"), 422, "idempotency_key_reused")
        assert ApiKey.objects.filter(project=project, name="once").count() == 1


@pytest.mark.django_db
class TestRevoke:
    def test_revoked_key_gets_401_at_once_and_is_listed_as_revoked(self, owner_api, client_for, project, owner_key):
        made = create(owner_api, {"scopes": ["jobs:read"]}).json()
        client = client_for(made["key"])
        assert client.get("/api/v1/jobs/").status_code == 200
        revoked = owner_api.post(f"{KEYS}{made['id']}/revoke/")
        assert revoked.status_code == 200 and revoked.json()["active"] is False and revoked.json()["revoked_at"]
        assert_envelope(client.get("/api/v1/jobs/"), 401, "invalid_api_key")
        event = AuditEvent.objects.get(project=project, action="api_key_revoked")
        assert event.object_id == str(made["id"]) and event.actor == f"key:{owner_key.api_key.prefix}"
        # again: nothing changes, no second audit event
        assert owner_api.post(f"{KEYS}{made['id']}/revoke/").json()["revoked_at"] == revoked.json()["revoked_at"]
        assert AuditEvent.objects.filter(action="api_key_revoked").count() == 1
        assert [k["id"] for k in owner_api.get(KEYS, {"active": "false"}).json()["results"]] == [made["id"]]
        assert made["id"] not in [k["id"] for k in owner_api.get(KEYS, {"active": "true"}).json()["results"]]

    def test_delete_revokes(self, owner_api, client_for):
        made = create(owner_api, {"scopes": ["jobs:read"]}).json()
        assert owner_api.delete(f"{KEYS}{made['id']}/").status_code == 204
        assert_envelope(client_for(made["key"]).get("/api/v1/jobs/"), 401, "invalid_api_key")
        assert ApiKey.objects.get(pk=made["id"]).revoked_at is not None

    def test_a_key_may_revoke_itself(self, owner_api, owner_key):
        assert owner_api.post(f"{KEYS}{owner_key.api_key.pk}/revoke/").status_code == 200
        assert_envelope(owner_api.get(KEYS), 401, "invalid_api_key")


@pytest.mark.django_db
class TestIsolation:
    def test_another_projects_key_is_not_found(self, owner_api, other_project, make_key):
        theirs = make_key(other_project, ["jobs:read"]).api_key
        for response in (owner_api.get(f"{KEYS}{theirs.pk}/"), owner_api.post(f"{KEYS}{theirs.pk}/revoke/"),
                         owner_api.delete(f"{KEYS}{theirs.pk}/")):
            assert_envelope(response, 404, "not_found")
        theirs.refresh_from_db()
        assert theirs.revoked_at is None
        assert theirs.pk not in [k["id"] for k in owner_api.get(KEYS).json()["results"]]

    @pytest.mark.parametrize("path", ["abc/", "99999999999999999999999/", "0/", "-1/"])
    def test_unknown_ids(self, owner_api, path):
        assert_envelope(owner_api.get(f"{KEYS}{path}"), 404, "not_found")


def _later(**delta) -> str:
    from datetime import timedelta

    from django.utils import timezone

    return (timezone.now() + timedelta(**delta)).isoformat()


@pytest.mark.django_db
class TestExpiry:
    def test_a_key_made_to_expire_shows_its_expiry_and_works_until_then(self, owner_api, client_for, project):
        from datetime import datetime, timezone as dt_timezone

        # given in another offset, stored and shown as the same moment in UTC
        made = create(owner_api, {"name": "ci", "scopes": ["jobs:read"], "expires_at": "2030-01-31T18:00:00+08:00"})
        assert made.status_code == 201, made.content
        body = made.json()
        moment = datetime(2030, 1, 31, 10, 0, tzinfo=dt_timezone.utc)
        assert ApiKey.objects.get(pk=body["id"]).expires_at == moment
        assert datetime.fromisoformat(body["expires_at"]) == moment
        assert body["expired"] is False and body["active"] is True
        listed = {k["id"]: k for k in owner_api.get(KEYS).json()["results"]}[body["id"]]
        assert datetime.fromisoformat(listed["expires_at"]) == moment and listed["expired"] is False
        assert client_for(body["key"]).get("/api/v1/jobs/").status_code == 200
        # the expiry is in the audit log's record of the creation
        event = AuditEvent.objects.get(project=project, action="api_key_created", object_id=str(body["id"]))
        assert datetime.fromisoformat(event.after["expires_at"]) == moment
        # without one, a key does not expire
        forever = create(owner_api, {"scopes": ["jobs:read"]}).json()
        assert forever["expires_at"] is None and forever["expired"] is False
        assert create(owner_api, {"scopes": ["jobs:read"], "expires_at": None}).json()["expires_at"] is None

    def test_an_expired_key_is_refused_with_401_saying_it_expired_and_when(self, owner_api, client_for, project):
        from datetime import timedelta

        from django.utils import timezone

        made = create(owner_api, {"name": "short", "scopes": ["jobs:read"], "expires_at": _later(hours=1)}).json()
        client = client_for(made["key"])
        assert client.get("/api/v1/jobs/").status_code == 200
        when = timezone.now() - timedelta(minutes=5)
        ApiKey.objects.filter(pk=made["id"]).update(expires_at=when, last_used_at=None)
        response = client.get("/api/v1/jobs/")
        error = assert_envelope(response, 401, "expired_api_key")
        stamp = when.isoformat().replace("+00:00", "Z")
        assert "expired" in error["message"] and stamp in error["message"], error
        assert error["details"] == {"expired_at": stamp}
        assert "unknown or revoked" not in error["message"]
        # an expired key's use is not its use: last_used_at stays as it was
        assert ApiKey.objects.get(pk=made["id"]).last_used_at is None
        # listed as expired, not active; ?active= agrees
        listed = {k["id"]: k for k in owner_api.get(KEYS).json()["results"]}[made["id"]]
        assert listed["expired"] is True and listed["active"] is False and listed["revoked_at"] is None
        assert made["id"] in [k["id"] for k in owner_api.get(KEYS, {"active": "false"}).json()["results"]]
        assert made["id"] not in [k["id"] for k in owner_api.get(KEYS, {"active": "true"}).json()["results"]]
        # the OpenAI-compatible endpoints refuse it alike
        assert client.get("/v1/models").status_code == 401

    def test_a_revoked_key_past_its_expiry_says_revoked_and_a_wrong_secret_says_nothing_of_the_expiry(
            self, owner_api, client_for):
        from datetime import timedelta

        from django.utils import timezone

        made = create(owner_api, {"scopes": ["jobs:read"], "expires_at": _later(hours=1)}).json()
        ApiKey.objects.filter(pk=made["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))
        # the right prefix with a wrong secret (someone who saw the prefix in a list, or another project's caller)
        forged = made["key"][: -4] + ("AAAA" if not made["key"].endswith("AAAA") else "BBBB")
        error = assert_envelope(client_for(forged).get("/api/v1/jobs/"), 401, "invalid_api_key")
        assert "expire" not in str(error)
        owner_api.post(f"{KEYS}{made['id']}/revoke/")
        assert_envelope(client_for(made["key"]).get("/api/v1/jobs/"), 401, "invalid_api_key")

    @pytest.mark.parametrize("expires_at,words", [
        ("2001-01-01T00:00:00Z", "already passed"),
        ("not a time", "ISO 8601"),
        ("2030-02-30T00:00:00Z", "ISO 8601"),
        ("2030-01-31T18:00:00", "offset"),
        ("9999-12-31T23:00:00-05:00", "beyond the years"),
        ("9999-12-31T23:59:59+23:59", "3650 days"),
        ("9999-12-31T23:59:59Z", "3650 days"),
        ("0001-01-01T00:00:00+05:00", "beyond the years"),
        (1893456000, "ISO 8601"),
        ({"at": "2030-01-01T00:00:00Z"}, "ISO 8601"),
        ("2030-01-01T00:00:00\x00Z", "ISO 8601"),
    ])
    def test_bad_expiries_are_refused_with_a_clear_400_and_make_no_key(self, owner_api, project, expires_at, words):
        before = ApiKey.objects.count()
        error = assert_envelope(create(owner_api, {"scopes": ["jobs:read"], "expires_at": expires_at}), 400,
                                "validation_error")
        assert list(error["details"]) == ["expires_at"], error
        assert words in error["details"]["expires_at"][0], error
        assert ApiKey.objects.count() == before

    def test_an_expiry_a_moment_ago_is_past_and_one_within_ten_years_is_taken(self, owner_api):
        assert_envelope(create(owner_api, {"expires_at": _later(seconds=-1)}), 400, "validation_error")
        assert create(owner_api, {"expires_at": _later(days=3649)}).status_code == 201
        assert_envelope(create(owner_api, {"expires_at": _later(days=3651)}), 400, "validation_error")

    def test_authentication_reads_one_row_for_a_key_with_an_expiry(self, project, django_assert_num_queries):
        from datetime import timedelta

        from django.utils import timezone

        from atelier_platform.accounts.services import ApiKeyExpired, authenticate_api_key, issue_api_key

        issued = issue_api_key(project, scopes=["jobs:read"], expires_at=timezone.now() + timedelta(days=1))
        authenticate_api_key(issued.raw)  # notes the first use
        with django_assert_num_queries(1):
            assert authenticate_api_key(issued.raw).pk == issued.api_key.pk
        ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        with django_assert_num_queries(1), pytest.raises(ApiKeyExpired):
            authenticate_api_key(issued.raw)


@pytest.mark.django_db
class TestRename:
    def test_the_owner_renames_a_key_and_the_rename_is_audited(self, owner_api, client_for, project, owner_key):
        made = create(owner_api, {"name": "old", "scopes": ["jobs:read"]}).json()
        response = owner_api.patch(f"{KEYS}{made['id']}/", {"name": "  nightly export  "}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["name"] == "nightly export" and response.json()["scopes"] == ["jobs:read"]
        assert ApiKey.objects.get(pk=made["id"]).name == "nightly export"
        event = AuditEvent.objects.get(project=project, action="api_key_renamed")
        assert event.object_id == str(made["id"]) and event.actor == f"key:{owner_key.api_key.prefix}"
        assert event.before == {"prefix": made["prefix"], "name": "old"}
        assert event.after == {"prefix": made["prefix"], "name": "nightly export"}
        # the same name again records nothing; the key still works
        assert owner_api.patch(f"{KEYS}{made['id']}/", {"name": "nightly export"}, format="json").status_code == 200
        assert AuditEvent.objects.filter(action="api_key_renamed").count() == 1
        assert client_for(made["key"]).get("/api/v1/jobs/").status_code == 200
        # a blank name is allowed, as when creating
        assert owner_api.patch(f"{KEYS}{made['id']}/", {"name": ""}, format="json").json()["name"] == ""

    @pytest.mark.parametrize("body,field,words", [
        ({"name": "x" * 101}, "name", "100"),
        ({}, "name", "required"),
        ({"name": None}, "name", "null"),
        ({"name": "ok", "scopes": ["admin"]}, "scopes", "Only a key's name can be changed"),
        ({"name": "ok", "expires_at": "2030-01-01T00:00:00Z"}, "expires_at", "Only a key's name can be changed"),
        ({"revoked_at": None}, "revoked_at", "Only a key's name can be changed"),
        ({"name": "ok", "colour": "red"}, "colour", "Unknown field"),
    ])
    def test_bad_renames_are_refused_and_change_nothing(self, owner_api, project, body, field, words):
        made = create(owner_api, {"name": "kept", "scopes": ["jobs:read"]}).json()
        error = assert_envelope(owner_api.patch(f"{KEYS}{made['id']}/", body, format="json"), 400, "validation_error")
        assert field in error["details"] and words in str(error["details"][field]), error
        stored = ApiKey.objects.get(pk=made["id"])
        assert stored.name == "kept" and stored.scopes == ["jobs:read"] and stored.expires_at is None
        assert not AuditEvent.objects.filter(action="api_key_renamed").exists()

    def test_renaming_needs_admin_and_another_projects_key_is_not_found(self, owner_api, project, other_project,
                                                                       make_key, client_for, member):
        from rest_framework.test import APIClient

        theirs = make_key(other_project, ["jobs:read"]).api_key
        assert_envelope(owner_api.patch(f"{KEYS}{theirs.pk}/", {"name": "mine"}, format="json"), 404, "not_found")
        theirs.refresh_from_db()
        assert theirs.name == ""
        ours = make_key(project, ["jobs:read"]).api_key
        no_admin = client_for(make_key(project, ["jobs:read", "jobs:write"]).raw)
        assert_envelope(no_admin.patch(f"{KEYS}{ours.pk}/", {"name": "x"}, format="json"), 403, "permission_denied")
        editor = APIClient()
        editor.force_login(member(project, Role.EDITOR))
        editor.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
        assert_envelope(editor.patch(f"{KEYS}{ours.pk}/", {"name": "x"}, format="json"), 403, "permission_denied")
        ours.refresh_from_db()
        assert ours.name == ""


@pytest.mark.django_db
class TestDepartedMaker:
    def test_a_key_whose_maker_left_the_project_is_marked_and_keeps_working(self, project, member, client_for):
        from rest_framework.test import APIClient

        from atelier_platform.accounts.models import Membership

        owner = APIClient()
        owner.force_login(member(project, Role.OWNER))
        owner.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
        bob = member(project, Role.OWNER)
        bobs_client = APIClient()
        bobs_client.force_login(bob)
        bobs_client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
        bobs = create(bobs_client, {"name": "bob's", "scopes": ["jobs:read"]}).json()
        assert bobs["created_by"] == bob.username and bobs["created_by_is_member"] is True
        by_key = create(client_for(create(owner, {"scopes": ["admin"]}).json()["key"]), {"scopes": ["admin"]}).json()
        assert by_key["created_by_is_member"] is None
        Membership.objects.filter(project=project, user=bob).delete()
        listed = {k["id"]: k for k in owner.get(KEYS).json()["results"]}
        assert listed[bobs["id"]]["created_by"] == bob.username and listed[bobs["id"]]["created_by_is_member"] is False
        assert listed[by_key["id"]]["created_by_is_member"] is None
        assert all(k["created_by_is_member"] is True for i, k in listed.items() if i not in (bobs["id"], by_key["id"]))
        assert owner.get(f"{KEYS}{bobs['id']}/").json()["created_by_is_member"] is False
        # not revoked: it still works, only the owner is told
        assert ApiKey.objects.get(pk=bobs["id"]).revoked_at is None
        # a membership in another project does not count
        from tests.factories import MembershipFactory, ProjectFactory

        MembershipFactory(project=ProjectFactory(), user=bob, role=Role.OWNER)
        assert owner.get(f"{KEYS}{bobs['id']}/").json()["created_by_is_member"] is False

    def test_the_list_reads_membership_with_the_keys(self, project, member, owner_api):
        """Whether each key's maker is a member comes with the keys, not one query per key."""
        from atelier_platform.accounts.services import issue_api_key

        for _ in range(5):
            issue_api_key(project, scopes=["jobs:read"], created_by=member(project, Role.OWNER))
        owner_api.get(KEYS)
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as few:
            owner_api.get(KEYS)
        for _ in range(5):
            issue_api_key(project, scopes=["jobs:read"], created_by=member(project, Role.OWNER))
        with CaptureQueriesContext(connection) as more:
            owner_api.get(KEYS)
        assert len(more.captured_queries) == len(few.captured_queries)
