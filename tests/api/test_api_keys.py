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
