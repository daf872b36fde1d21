"""The webhooks API: create, list, change, delete, test pings, the delivery log, permissions."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from atelier_platform.accounts.roles import Role
from atelier_platform.moderation.models import AuditEvent
from atelier_platform.webhooks.models import DeliveryStatus, WebhookEndpoint
from atelier_platform.webhooks.services import MAX_ENDPOINTS_PER_PROJECT

pytestmark = pytest.mark.django_db

HOOKS = "/api/v1/webhooks/"


@pytest.fixture
def owner_api(project, make_key, client_for):
    return client_for(make_key(project, ["webhooks:manage"]).raw)


def session_client(user, project) -> APIClient:
    client = APIClient()
    client.force_login(user)
    client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
    return client


def create(api, url, **fields):
    return api.post(HOOKS, {"url": url, **fields}, format="json")


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


class TestEndpoints:
    def test_create_shows_the_secret_once(self, owner_api, receiver, private_targets, project):
        response = create(owner_api, receiver.url, description="CRM", event_types=["job.succeeded", "output.flagged"])
        assert response.status_code == 201, response.content
        created = response.json()
        assert created["secret"].startswith("whsec_") and created["secret_hint"] == created["secret"][:10] + "…"
        assert created["url"] == receiver.url and created["event_types"] == ["job.succeeded", "output.flagged"]
        assert created["enabled"] is True and created["consecutive_failures"] == 0
        assert response["Location"] == f"{HOOKS}{created['id']}/"
        assert WebhookEndpoint.objects.get().project == project

        listed = owner_api.get(HOOKS).json()["results"]
        assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
        fetched = owner_api.get(f"{HOOKS}{created['id']}/").json()
        assert "secret" not in fetched and fetched["deliveries_url"] == f"{HOOKS}{created['id']}/deliveries/"
        event = AuditEvent.objects.get(action="webhook_created")
        assert event.actor.startswith("key:") and created["secret"] not in json.dumps(event.after)

    def test_update_and_delete(self, owner_api, receiver, private_targets):
        endpoint_id = create(owner_api, receiver.url).json()["id"]
        response = owner_api.patch(f"{HOOKS}{endpoint_id}/", {"description": "new", "event_types": ["job.failed"]}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["description"] == "new" and response.json()["event_types"] == ["job.failed"]
        assert owner_api.put(f"{HOOKS}{endpoint_id}/", {"url": receiver.url}, format="json").status_code == 405
        assert owner_api.delete(f"{HOOKS}{endpoint_id}/").status_code == 204
        assert not WebhookEndpoint.objects.exists()
        assert owner_api.get(f"{HOOKS}{endpoint_id}/").status_code == 404
        assert {"webhook_updated", "webhook_deleted"} <= set(AuditEvent.objects.values_list("action", flat=True))

    def test_disable_by_hand_cancels_waiting_deliveries_and_enable_starts_afresh(self, owner_api, receiver, private_targets,
                                                                                 emit, project):
        endpoint_id = create(owner_api, receiver.url).json()["id"]
        [waiting] = emit(project)
        disabled = owner_api.patch(f"{HOOKS}{endpoint_id}/", {"enabled": False}, format="json").json()
        assert disabled["enabled"] is False and disabled["disabled_reason"].startswith("Disabled by key:")
        waiting.refresh_from_db()
        assert waiting.status == DeliveryStatus.CANCELLED
        enabled = owner_api.patch(f"{HOOKS}{endpoint_id}/", {"enabled": True}, format="json").json()
        assert enabled["enabled"] is True and enabled["disabled_reason"] == "" and enabled["disabled_at"] is None

    def test_rotate_secret_answers_the_new_secret(self, owner_api, receiver, private_targets):
        created = create(owner_api, receiver.url).json()
        rotated = owner_api.post(f"{HOOKS}{created['id']}/rotate-secret/")
        assert rotated.status_code == 200
        assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != created["secret"]
        assert [p["secret_hint"] for p in rotated.json()["previous_secrets"]] == [created["secret_hint"]]
        assert rotated.json()["previous_secrets"][0]["expires_at"]

    def test_a_project_has_a_limited_number_of_endpoints(self, owner_api, receiver, private_targets):
        for _ in range(MAX_ENDPOINTS_PER_PROJECT):
            assert create(owner_api, receiver.url).status_code == 201
        response = create(owner_api, receiver.url)
        assert response.status_code == 409 and error_of(response)["code"] == "webhook_limit_reached"


class TestBadInput:
    @pytest.mark.parametrize("url", [
        "http://127.0.0.1:8000/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/", "http://[::1]/", "http://[::ffff:10.0.0.1]/",
    ])
    def test_private_targets_are_refused_with_a_clear_400(self, owner_api, url):
        response = create(owner_api, url)
        assert response.status_code == 400
        error = error_of(response)
        assert error["code"] == "validation_error" and "public addresses only" in error["message"]
        assert error["details"]["url"] == [error["message"]]
        assert not WebhookEndpoint.objects.exists()

    def test_private_targets_are_allowed_with_the_operator_setting(self, owner_api, webhook_config):
        webhook_config(webhooks_allow_private_targets=True)
        assert create(owner_api, "http://127.0.0.1:8000/hook").status_code == 201

    def test_changing_the_url_to_a_private_one_is_refused(self, owner_api, resolve_as):
        resolve_as("hooks.example.com", ["93.184.215.14"])
        endpoint_id = create(owner_api, "https://hooks.example.com/in").json()["id"]
        response = owner_api.patch(f"{HOOKS}{endpoint_id}/", {"url": "http://169.254.169.254/"}, format="json")
        assert response.status_code == 400 and "cloud metadata" in error_of(response)["message"]
        assert WebhookEndpoint.objects.get().url == "https://hooks.example.com/in"

    @pytest.mark.parametrize("body,field", [
        ({"url": "ftp://example.com/"}, "url"),
        ({}, "url"),
        ({"url": 12}, "url"),
        ({"url": "https://example.com/", "event_types": ["job.exploded"]}, "event_types"),
        ({"url": "https://example.com/", "event_types": "job.succeeded"}, "event_types"),
        ({"url": "https://example.com/", "event_types": ["webhook.test"]}, "event_types"),
        ({"url": "https://example.com/", "enabled": "maybe"}, "enabled"),
        ({"url": "https://example.com/", "secret": "whsec_mine"}, "secret"),
        ({"url": "https://example.com/", "description": "x" * 301}, "description"),
    ])
    def test_bad_fields_get_a_400_naming_the_field(self, owner_api, body, field):
        response = owner_api.post(HOOKS, body, format="json")
        assert response.status_code == 400, response.content
        assert field in error_of(response)["details"]

    def test_malformed_json_and_bad_ids(self, owner_api):
        response = owner_api.generic("POST", HOOKS, "{not json", content_type="application/json")
        assert response.status_code == 400 and error_of(response)["code"] == "malformed_json"
        assert owner_api.get(f"{HOOKS}not-a-uuid/").status_code == 404
        assert owner_api.get(f"{HOOKS}00000000-0000-0000-0000-000000000000/deliveries/").status_code == 404
        assert owner_api.patch(f"{HOOKS}00000000-0000-0000-0000-000000000000/", {}, format="json").status_code == 404


class TestPermissions:
    @pytest.mark.parametrize("scopes", [("jobs:read", "jobs:write"), ("admin",), ("reviews:read", "reviews:write")])
    def test_keys_without_the_webhooks_scope_get_403(self, project, make_key, client_for, scopes):
        api = client_for(make_key(project, scopes).raw)
        for response in (api.get(HOOKS), create(api, "https://example.com/")):
            assert response.status_code == 403
            assert error_of(response)["message"] == "This API key lacks the scope 'webhooks:manage'."

    @pytest.mark.parametrize("role,allowed", [(Role.OWNER, True), (Role.EDITOR, False), (Role.REVIEWER, False), (Role.VIEWER, False)])
    def test_only_owners_manage_webhooks(self, project, member, role, allowed):
        assert session_client(member(project, role), project).get(HOOKS).status_code == (200 if allowed else 403)

    def test_unauthenticated_is_401(self, db):
        assert APIClient().get(HOOKS).status_code == 401

    def test_another_projects_webhook_is_not_found(self, owner_api, other_project, make_key, client_for, receiver,
                                                   private_targets, emit):
        theirs = client_for(make_key(other_project, ["webhooks:manage"]).raw)
        their_id = create(theirs, receiver.url).json()["id"]
        [their_delivery] = emit(other_project)
        for method, path in [
            ("get", f"{HOOKS}{their_id}/"), ("patch", f"{HOOKS}{their_id}/"), ("delete", f"{HOOKS}{their_id}/"),
            ("post", f"{HOOKS}{their_id}/test/"), ("post", f"{HOOKS}{their_id}/rotate-secret/"),
            ("get", f"{HOOKS}{their_id}/deliveries/"), ("get", f"{HOOKS}{their_id}/deliveries/{their_delivery.pk}/"),
            ("post", f"{HOOKS}{their_id}/deliveries/{their_delivery.pk}/retry/"),
        ]:
            response = getattr(owner_api, method)(path, {}, format="json")
            assert response.status_code == 404, (method, path, response.content)
            assert error_of(response)["code"] == "not_found"
        assert owner_api.get(HOOKS).json()["results"] == []
        assert WebhookEndpoint.objects.filter(pk=their_id).exists()

    def test_a_delivery_is_only_found_under_its_own_endpoint(self, owner_api, receiver, private_targets, emit, project):
        first = create(owner_api, receiver.url, event_types=["job.failed"]).json()["id"]
        second = create(owner_api, receiver.url).json()["id"]
        [delivery] = emit(project)  # to the second endpoint only
        assert owner_api.get(f"{HOOKS}{second}/deliveries/{delivery.pk}/").status_code == 200
        assert owner_api.get(f"{HOOKS}{first}/deliveries/{delivery.pk}/").status_code == 404


class TestPingsAndTheDeliveryLog:
    def test_a_test_ping_is_delivered_signed_and_logged(self, owner_api, receiver, private_targets, deliver_all,
                                                        django_capture_on_commit_callbacks):
        created = create(owner_api, receiver.url, event_types=["job.failed"]).json()
        with django_capture_on_commit_callbacks(execute=True):
            response = owner_api.post(f"{HOOKS}{created['id']}/test/")
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "pending" and response.json()["event_type"] == "webhook.test"
        assert deliver_all() == ["succeeded"]

        [request] = receiver.requests
        payload = Webhook(created["secret"]).verify(request.body, request.headers)
        assert payload["type"] == "webhook.test" and payload["data"]["endpoint_id"] == created["id"]
        log = owner_api.get(f"{HOOKS}{created['id']}/deliveries/").json()
        [entry] = log["results"]
        assert entry["status"] == "succeeded" and entry["attempts"] == 1 and entry["last_status_code"] == 200
        assert entry["event_id"] == request.headers["webhook-id"]
        assert [a["status_code"] for a in entry["attempt_log"]] == [200]

    def test_a_failed_ping_is_not_retried_and_does_not_count_against_the_endpoint(self, owner_api, receiver, private_targets,
                                                                                  deliver_all, django_capture_on_commit_callbacks):
        endpoint_id = create(owner_api, receiver.url).json()["id"]
        receiver.answer(500)
        with django_capture_on_commit_callbacks(execute=True):
            owner_api.post(f"{HOOKS}{endpoint_id}/test/")
        assert deliver_all() == ["failed"]
        assert WebhookEndpoint.objects.get().consecutive_failures == 0

    def test_the_log_is_newest_first_paginated_and_filtered(self, owner_api, receiver, private_targets, emit, project,
                                                            deliver_all, webhook_config):
        endpoint_id = create(owner_api, receiver.url).json()["id"]
        webhook_config(webhooks_retry_schedule_s="")
        receiver.answer(500, 200, 500)
        made = [emit(project, key=f"job-{n}")[0] for n in range(3)]
        assert deliver_all() == ["failed", "succeeded", "failed"]
        page = owner_api.get(f"{HOOKS}{endpoint_id}/deliveries/?page_size=2").json()
        assert [d["id"] for d in page["results"]] == [str(made[2].pk), str(made[1].pk)]
        rest = owner_api.get(page["next"]).json()
        assert [d["id"] for d in rest["results"]] == [str(made[0].pk)]
        failed = owner_api.get(f"{HOOKS}{endpoint_id}/deliveries/?status=failed").json()["results"]
        assert [d["id"] for d in failed] == [str(made[2].pk), str(made[0].pk)]
        bad = owner_api.get(f"{HOOKS}{endpoint_id}/deliveries/?status=lost")
        assert bad.status_code == 400 and "status" in error_of(bad)["details"]

    def test_retry_sends_a_finished_delivery_again_with_the_same_id(self, owner_api, receiver, private_targets, emit,
                                                                     project, deliver_all, webhook_config,
                                                                     django_capture_on_commit_callbacks):
        endpoint_id = create(owner_api, receiver.url).json()["id"]
        webhook_config(webhooks_retry_schedule_s="")
        receiver.answer(500)
        [delivery] = emit(project)
        assert deliver_all() == ["failed"]
        path = f"{HOOKS}{endpoint_id}/deliveries/{delivery.pk}/retry/"
        with django_capture_on_commit_callbacks(execute=True):
            response = owner_api.post(path)
        assert response.status_code == 202 and response.json()["status"] == "pending"
        again = owner_api.post(path)
        assert again.status_code == 409 and error_of(again)["code"] == "delivery_not_retryable"
        assert deliver_all() == ["succeeded"]
        fetched = owner_api.get(f"{HOOKS}{endpoint_id}/deliveries/{delivery.pk}/").json()
        assert fetched["status"] == "succeeded" and [a["status_code"] for a in fetched["attempt_log"]] == [500, 200]
        assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]

    def test_retry_to_a_disabled_endpoint_is_refused(self, owner_api, receiver, private_targets, emit, project):
        endpoint_id = create(owner_api, receiver.url).json()["id"]
        [delivery] = emit(project)
        owner_api.patch(f"{HOOKS}{endpoint_id}/", {"enabled": False}, format="json")
        response = owner_api.post(f"{HOOKS}{endpoint_id}/deliveries/{delivery.pk}/retry/")
        assert response.status_code == 409 and error_of(response)["code"] == "endpoint_disabled"


def test_the_openapi_schema_describes_the_webhook_endpoints(owner_api):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    schema = json.loads(out.getvalue())
    paths = schema["paths"]
    assert set(paths[HOOKS]) >= {"get", "post"}
    # what an endpoint may subscribe to, every event a generated client may name
    assert schema["components"]["schemas"]["EventTypesEnum"]["enum"] == [
        "job.succeeded", "job.failed", "job.cancelled", "job.erased", "output.flagged", "output.review_changed",
        "evaluation_run.finished", "evaluation_watch.regressed", "evaluation_watch.failed_to_start", "export.finished"]
    assert set(paths[HOOKS + "{id}/"]) >= {"get", "patch", "delete"}
    assert "post" in paths[HOOKS + "{id}/test/"] and "post" in paths[HOOKS + "{id}/rotate-secret/"]
    deliveries = paths[HOOKS + "{endpoint_id}/deliveries/"]["get"]
    assert {p["name"] for p in deliveries["parameters"]} >= {"endpoint_id", "status", "cursor"}
    assert "post" in paths[HOOKS + "{endpoint_id}/deliveries/{id}/retry/"]
