"""Rotating an endpoint's signing secret: every secret rotated away keeps signing until its own expiry."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from atelier_platform.moderation.models import AuditEvent
from atelier_platform.webhooks.models import WebhookEndpoint
from atelier_platform.webhooks.services import MAX_PREVIOUS_SECRETS, SECRET_ROTATION_GRACE

pytestmark = pytest.mark.django_db

HOOKS = "/api/v1/webhooks/"


@pytest.fixture
def owner_api(project, make_key, client_for):
    return client_for(make_key(project, ["webhooks:manage"]).raw)


@pytest.fixture
def hook(owner_api, receiver, private_targets) -> dict:
    created = owner_api.post(HOOKS, {"url": receiver.url}, format="json")
    assert created.status_code == 201, created.content
    return created.json()


def rotate(api, hook, body=None):
    return api.post(f"{HOOKS}{hook['id']}/rotate-secret/", body, format="json")


def delivered(emit, project, receiver, deliver_all, key):
    """Emit one event and deliver it; the request the receiver got."""
    emit(project, key=key)
    assert deliver_all() == ["succeeded"]
    return receiver.requests[-1]


def verifies(secret, request) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


def test_a_second_rotation_within_the_grace_period_keeps_the_first_secret_signing(
        owner_api, hook, emit, project, receiver, deliver_all):
    """Before, the second rotation replaced the one previous secret: a receiver still on the first
    secret (the grace period's purpose) failed to verify every delivery from then on."""
    first = hook["secret"]
    second = rotate(owner_api, hook).json()["secret"]
    answer = rotate(owner_api, hook)
    assert answer.status_code == 200, answer.content
    third = answer.json()["secret"]

    request = delivered(emit, project, receiver, deliver_all, "job-1")
    assert len(request.headers["webhook-signature"].split(" ")) == 3
    assert [verifies(secret, request) for secret in (first, second, third)] == [True, True, True]

    # The API says which secrets still sign and until when: each its own grace from its rotation.
    shown = owner_api.get(f"{HOOKS}{hook['id']}/").json()
    assert shown["secret_hint"] == third[:10] + "…"
    assert [p["secret_hint"] for p in shown["previous_secrets"]] == [second[:10] + "…", first[:10] + "…"]
    newer, older = (datetime.fromisoformat(p["expires_at"]) for p in shown["previous_secrets"])
    assert older < newer <= timezone.now() + SECRET_ROTATION_GRACE
    assert answer.json()["previous_secrets"] == shown["previous_secrets"]


def test_each_rotated_secret_stops_signing_at_its_own_expiry(owner_api, hook, emit, project, receiver, deliver_all):
    first = hook["secret"]
    second = rotate(owner_api, hook).json()["secret"]
    third = rotate(owner_api, hook).json()["secret"]
    # The first rotation's grace is over; the second's is not.
    endpoint = WebhookEndpoint.objects.get()
    oldest = endpoint.previous_secrets[-1]
    assert oldest["secret"] == first
    oldest["expires_at"] = (timezone.now() - timedelta(seconds=1)).isoformat()
    endpoint.save(update_fields=["previous_secrets"])

    request = delivered(emit, project, receiver, deliver_all, "job-1")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert [verifies(secret, request) for secret in (first, second, third)] == [False, True, True]
    shown = owner_api.get(f"{HOOKS}{hook['id']}/").json()
    assert [p["secret_hint"] for p in shown["previous_secrets"]] == [second[:10] + "…"]


def test_rotations_beyond_the_limit_are_refused_until_the_previous_secrets_are_expired(
        owner_api, hook, emit, project, receiver, deliver_all):
    secrets = [hook["secret"]]
    for _ in range(MAX_PREVIOUS_SECRETS):
        answer = rotate(owner_api, hook)
        assert answer.status_code == 200, answer.content
        secrets.append(answer.json()["secret"])
    stored = WebhookEndpoint.objects.values("secret", "previous_secrets").get()

    refused = rotate(owner_api, hook)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "secret_rotation_limit"
    assert f"{MAX_PREVIOUS_SECRETS} rotated secrets still sign" in error["message"]
    assert '{"expire_previous": true}' in error["message"]
    oldest_expiry = error["details"]["previous_secrets"][-1]["expires_at"]
    assert oldest_expiry in error["message"]
    assert WebhookEndpoint.objects.values("secret", "previous_secrets").get() == stored  # nothing changed
    assert AuditEvent.objects.filter(action="webhook_secret_rotated").count() == MAX_PREVIOUS_SECRETS

    # The explicit way out: the earlier secrets stop signing now; the one being replaced keeps its grace.
    answer = rotate(owner_api, hook, {"expire_previous": True})
    assert answer.status_code == 200, answer.content
    newest = answer.json()["secret"]
    assert [p["secret_hint"] for p in answer.json()["previous_secrets"]] == [secrets[-1][:10] + "…"]
    request = delivered(emit, project, receiver, deliver_all, "job-1")
    assert [verifies(secret, request) for secret in secrets] == [False] * MAX_PREVIOUS_SECRETS + [True]
    assert verifies(newest, request)

    event = AuditEvent.objects.filter(action="webhook_secret_rotated").latest("created_at")
    assert event.after["expired_now"] == [s[:10] + "…" for s in reversed(secrets[:-1])]
    assert [p["secret_hint"] for p in event.after["previous_secrets"]] == [secrets[-1][:10] + "…"]
    assert event.after["secret_hint"] == newest[:10] + "…"
    assert not any(secret in json.dumps([event.before, event.after]) for secret in [*secrets, newest])


def test_the_audit_record_says_which_secrets_still_sign_and_until_when(owner_api, hook):
    first = hook["secret"]
    second = rotate(owner_api, hook).json()["secret"]
    event = AuditEvent.objects.get(action="webhook_secret_rotated")
    assert event.before == {"secret_hint": first[:10] + "…", "previous_secrets": []}
    [kept] = event.after["previous_secrets"]
    assert kept["secret_hint"] == first[:10] + "…" and datetime.fromisoformat(kept["expires_at"]) > timezone.now()
    assert event.after["secret_hint"] == second[:10] + "…" and event.after["expired_now"] == []


@pytest.mark.parametrize("body, field", [
    ({"expire_previous": "maybe"}, "expire_previous"),
    ({"expire": True}, "expire"),
])
def test_a_bad_rotation_request_is_a_400_and_changes_nothing(owner_api, hook, body, field):
    answer = rotate(owner_api, hook, body)
    assert answer.status_code == 400
    assert field in answer.json()["error"]["details"]
    assert WebhookEndpoint.objects.get().secret == hook["secret"]
    assert not AuditEvent.objects.filter(action="webhook_secret_rotated").exists()
