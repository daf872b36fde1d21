"""``export.finished``: an export in the background that ends (succeeded, failed or cancelled) becomes one delivery per
subscribed endpoint, sent by the real delivery task to a real receiver: its id, status, rows and where to download
it, never a row of its content."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook

from atelier_platform.exports import services
from atelier_platform.exports.models import Export
from atelier_platform.jobs.models import ReviewState
from atelier_platform.webhooks.models import WebhookDelivery
from tests.api.helpers import build_job, build_output

pytestmark = pytest.mark.django_db

EVENT = "export.finished"


def asked(project, django_capture_on_commit_callbacks, **options) -> Export:
    with django_capture_on_commit_callbacks(execute=True):
        return services.request_export(project, kind="library", format="jsonl", filters={}, site="http://testserver",
                                       **options)


def run(export, django_capture_on_commit_callbacks) -> str:
    with django_capture_on_commit_callbacks(execute=True):
        return services.run_export(export.pk)


def test_a_finished_export_is_delivered_once_with_its_download_url_and_no_content(
        project, endpoint_for, receiver, deliver_all, django_capture_on_commit_callbacks, webhook_config):
    webhook_config(public_url="https://atelier.example.com")
    endpoint = endpoint_for(project, receiver.url, event_types=[EVENT])
    endpoint_for(project, receiver.url + "&jobs-only", event_types=["job.succeeded"])  # not subscribed
    for n in range(3):
        build_output(build_job(project), content={"text": f"secret copy {n}", "characters": 13},
                     review_state=ReviewState.APPROVED)
    export = asked(project, django_capture_on_commit_callbacks)
    assert not WebhookDelivery.objects.filter(event_type=EVENT).exists()  # nothing while it is queued
    assert run(export, django_capture_on_commit_callbacks) == "succeeded"
    assert run(export, django_capture_on_commit_callbacks) == "skipped"  # delivered twice: announced once
    [delivery] = WebhookDelivery.objects.filter(event_type=EVENT)
    assert delivery.endpoint == endpoint
    assert deliver_all() == ["succeeded"]
    [request] = receiver.requests
    Webhook(endpoint.secret).verify(request.body, request.headers)  # signed as every delivery
    body = request.json()
    assert body["type"] == EVENT and body["data"]["project"] == project.slug
    export.refresh_from_db()
    assert body["data"]["export"] == {
        "id": str(export.pk), "kind": "library", "format": "jsonl", "status": "succeeded", "rows": 3,
        "size": export.size, "error": None, "created_at": export.created_at.isoformat(),
        "finished_at": export.finished_at.isoformat(), "expires_at": export.expires_at.isoformat(),
        "url": f"https://atelier.example.com/api/v1/exports/{export.pk}/",
        "download_url": f"https://atelier.example.com/api/v1/exports/{export.pk}/download/",
    }
    assert b"secret copy" not in request.body


def test_a_cancelled_export_is_announced_without_a_download(project, endpoint_for, receiver,
                                                            django_capture_on_commit_callbacks):
    endpoint_for(project, receiver.url, event_types=[EVENT])
    export = asked(project, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_export(export)
    [delivery] = WebhookDelivery.objects.filter(event_type=EVENT)
    shown = delivery.payload["data"]["export"]
    assert (shown["status"], shown["download_url"], shown["rows"]) == ("cancelled", None, 0)
    assert shown["error"]["code"] == "cancelled"


def test_the_event_is_one_an_endpoint_may_subscribe_to():
    from atelier_platform.webhooks.events import SUBSCRIBABLE_EVENTS

    assert EVENT in SUBSCRIBABLE_EVENTS
