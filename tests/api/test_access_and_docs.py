"""Plugins list, roles of signed-in members, the OpenAPI schema and docs, health probes."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from atelier_platform.accounts.roles import Role
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job

GOOD = {"plugin": "reverse_text", "input": {"text": "hello"}}


@pytest.mark.django_db
class TestPluginsList:
    def test_lists_installed_plugins_with_schemas(self, api, project):
        set_plugin_enabled(project, "gpu_reverse", False)
        response = api.get("/api/v1/plugins/")
        assert response.status_code == 200
        plugins = {p["id"]: p for p in response.json()}
        assert set(plugins) == {"reverse_text", "gpu_reverse"}
        reverse = plugins["reverse_text"]
        assert reverse["enabled"] is True and plugins["gpu_reverse"]["enabled"] is False
        assert reverse["resource_class"] == "cpu" and reverse["max_batch_size"] == 8
        assert reverse["input_schema"]["properties"]["text"]["maxLength"] == 2000
        assert reverse["input_schema"]["required"] == ["text"]
        assert reverse["params_schema"]["properties"]["uppercase"]["type"] == "boolean"
        assert set(reverse["output_schema"]["properties"]) == {"text", "characters"}

    def test_needs_authentication(self, db):
        assert APIClient().get("/api/v1/plugins/").status_code == 401


def session_client(user, project=None) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    if project is not None:
        client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
    return client


@pytest.mark.django_db
class TestRolesForSignedInMembers:
    @pytest.mark.parametrize(
        "role,can_submit", [(Role.OWNER, True), (Role.EDITOR, True), (Role.REVIEWER, False), (Role.VIEWER, False)]
    )
    def test_submit_needs_owner_or_editor(self, project, member, role, can_submit):
        client = session_client(member(project, role), project)
        client.handler.enforce_csrf_checks = False
        response = client.post("/api/v1/jobs/", json.dumps(GOOD), content_type="application/json")
        assert response.status_code == (201 if can_submit else 403), response.content
        assert Job.objects.count() == (1 if can_submit else 0)

    @pytest.mark.parametrize("role", list(Role))
    def test_every_role_reads(self, project, member, role):
        assert session_client(member(project, role), project).get("/api/v1/jobs/").status_code == 200

    def test_session_post_without_csrf_token_is_refused(self, project, member):
        client = session_client(member(project, Role.OWNER), project)
        response = client.post("/api/v1/jobs/", json.dumps(GOOD), content_type="application/json")
        assert response.status_code == 403
        assert "CSRF" in response.json()["error"]["message"]

    def test_project_of_which_one_is_not_a_member_is_not_found(self, project, other_project, member):
        client = session_client(member(project, Role.OWNER), other_project)
        response = client.get("/api/v1/jobs/")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    def test_single_membership_needs_no_project_header(self, project, member):
        assert session_client(member(project, Role.VIEWER)).get("/api/v1/jobs/").status_code == 200

    def test_several_memberships_need_the_project_named(self, project, other_project, member):
        user = member(project, Role.VIEWER)
        from atelier_platform.accounts.services import add_member

        add_member(other_project, user, Role.VIEWER)
        response = session_client(user).get("/api/v1/jobs/")
        assert response.status_code == 400
        assert "project" in response.json()["error"]["details"]


@pytest.mark.django_db
class TestSchemaAndDocs:
    def test_openapi_schema_describes_the_contract(self, client):
        response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert response.status_code == 200
        schema = json.loads(response.content)
        assert schema["openapi"].startswith("3.")
        paths = schema["paths"]
        for path in ("/api/v1/jobs/", "/api/v1/jobs/{id}/", "/api/v1/jobs/{id}/cancel/", "/api/v1/plugins/"):
            assert path in paths, path
        create = paths["/api/v1/jobs/"]["post"]
        assert {p["name"] for p in create.get("parameters", [])} >= {"Idempotency-Key"}

    def test_schema_generates_without_warnings_and_documents_bearer_keys(self):
        import io

        from django.core.management import call_command

        out = io.StringIO()
        call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
        schema = json.loads(out.getvalue())
        assert schema["components"]["securitySchemes"]["apiKey"] == {
            "type": "http", "scheme": "bearer",
            "description": schema["components"]["securitySchemes"]["apiKey"]["description"],
        }
        assert {"/api/v1/reviews/{id}/decision/", "/api/v1/audit/", "/api/v1/safety/policy/"} <= set(schema["paths"])

    def test_every_json_answer_of_the_api_is_documented_with_its_fields(self, client):
        """The blocklist's, the allow list's and the review metrics' answers were documented as "an object": a
        client generated from the schema got no fields, and the fuzz test checked nothing of their shape."""
        schema = json.loads(client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
        untyped = [
            f"{method.upper()} {path} {status}"
            for path, operations in schema["paths"].items() if path.startswith("/api/")
            for method, operation in operations.items() if isinstance(operation, dict)
            for status, response in operation.get("responses", {}).items() if status.startswith("2")
            for media_type, content in (response.get("content") or {}).items() if media_type == "application/json"
            if "$ref" not in content.get("schema", {}) and "properties" not in content.get("schema", {})
            and content.get("schema", {}).get("type") != "array"
        ]
        assert untyped == []

    def test_docs_page_is_served_with_local_assets(self, client):
        response = client.get("/api/v1/docs/")
        assert response.status_code == 200
        html = response.content.decode()
        assert "swagger-ui" in html and "cdn.jsdelivr" not in html


@pytest.mark.django_db
class TestHealth:
    def test_healthz(self, client):
        assert client.get("/healthz").json() == {"status": "ok"}

    def test_readyz_checks_database_and_broker(self, client):
        response = client.get("/readyz")
        assert response.status_code == 200, response.content
        assert response.json()["checks"] == {"database": "ok", "broker": "ok"}

    def test_readyz_reports_a_dead_broker(self, client, monkeypatch):
        monkeypatch.setattr("atelier_platform.health._check_broker", lambda: "broker unreachable: ConnectionRefusedError")
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["broker"].startswith("broker unreachable")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/jobs/", "/api/v1/plugins/", "/api/v1/usage/", "/api/v1/usage/quota/",
                                  "/v1/models"])
def test_head_is_allowed_where_get_is(api, path):
    """HEAD is GET without the body (RFC 9110): a key that may GET may HEAD, on views and viewsets alike."""
    got, head = api.get(path), api.head(path)
    assert got.status_code == 200, got.content
    assert head.status_code == 200 and head.content == b""


@pytest.mark.django_db
def test_head_needs_the_same_scope_as_get(project, make_key, client_for):
    reviews_only = client_for(make_key(project, ["reviews:read"]).raw)
    assert reviews_only.get("/api/v1/usage/").status_code == 403
    assert reviews_only.head("/api/v1/usage/").status_code == 403


@pytest.mark.django_db
def test_a_format_the_endpoint_lacks_is_406_naming_what_it_offers(api):
    """``?format=xml`` (DRF's URL format override) and a ``.xml`` suffix answered 404 "Not found.", as if the list
    were missing: the caller asked for a representation the endpoint does not have, which is a 406."""
    from tests.api.helpers import assert_envelope

    offered = {"formats": ["json"], "media_types": ["application/json"]}
    for url in ("/api/v1/jobs/?format=xml", "/api/v1/jobs.xml", "/api/v1/plugins/?format=api", "/api/v1/usage/?format=csv"):
        error = assert_envelope(api.get(url), 406, "not_acceptable")
        assert error["details"] == offered and "json" in error["message"], (url, error)
    error = assert_envelope(api.get("/api/v1/jobs/", HTTP_ACCEPT="application/xml"), 406, "not_acceptable")
    assert error["details"] == offered, error
    for url in ("/api/v1/jobs/?format=json", "/api/v1/jobs.json"):
        assert api.get(url).status_code == 200, url
