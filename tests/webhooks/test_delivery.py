"""Deliveries to a real HTTP receiver: signatures, retries, backoff, disabling, the delivery log."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from atelier_platform.celery_app import DELIVER_WEBHOOK_TASK
from atelier_platform.moderation.models import AuditEvent
from atelier_platform.webhooks import delivery, services
from atelier_platform.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from atelier_platform.webhooks.tasks import deliver_webhook

pytestmark = pytest.mark.django_db


def attempt_codes(delivery_row):
    return [a.status_code for a in delivery_row.attempt_log.order_by("number")]


class TestSigning:
    def test_a_delivery_verifies_with_the_standard_webhooks_reference_library(self, emit, project, receiver, endpoint_for, deliver_all):
        endpoint = endpoint_for(project, receiver.url)
        with_commit = emit(project, data={"job": {"id": "j1", "status": "succeeded"}})
        assert len(with_commit) == 1
        assert deliver_all() == ["succeeded"]

        [request] = receiver.requests
        assert request.path == "/hooks/atelier?source=test"
        assert request.headers["Content-Type"] == "application/json"
        payload = Webhook(endpoint.secret).verify(request.body, request.headers)
        assert payload["type"] == "job.succeeded" and payload["data"] == {"job": {"id": "j1", "status": "succeeded"}}
        assert request.headers["webhook-id"] == with_commit[0].event_id

    def test_a_wrong_secret_or_a_changed_body_does_not_verify(self, emit, project, receiver, endpoint_for, deliver_all):
        endpoint_for(project, receiver.url)
        emit(project)
        deliver_all()
        [request] = receiver.requests
        other = "whsec_" + base64.b64encode(b"x" * 32).decode()
        with pytest.raises(WebhookVerificationError):
            Webhook(other).verify(request.body, request.headers)
        endpoint = WebhookEndpoint.objects.get()
        with pytest.raises(WebhookVerificationError):
            Webhook(endpoint.secret).verify(request.body.replace(b"job-1", b"job-2"), request.headers)

    def test_secrets_are_standard_webhooks_secrets(self, project, receiver, endpoint_for):
        endpoint = endpoint_for(project, receiver.url)
        assert endpoint.secret.startswith("whsec_")
        assert len(base64.b64decode(endpoint.secret.removeprefix("whsec_"))) == 32
        assert endpoint_for(project, receiver.url).secret != endpoint.secret

    def test_after_rotation_old_and_new_secrets_both_verify_for_a_while(self, emit, project, receiver, endpoint_for, deliver_all):
        endpoint = endpoint_for(project, receiver.url)
        old = endpoint.secret
        new = services.rotate_secret(endpoint, "user:test").secret
        emit(project)
        deliver_all()
        [request] = receiver.requests
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(request.body, request.headers)
        Webhook(new).verify(request.body, request.headers)

        endpoint = WebhookEndpoint.objects.get()
        endpoint.previous_secrets[0]["expires_at"] = (timezone.now() - timedelta(seconds=1)).isoformat()
        endpoint.save(update_fields=["previous_secrets"])
        emit(project, key="job-2")
        deliver_all()
        later = receiver.requests[1]
        assert len(later.headers["webhook-signature"].split(" ")) == 1
        Webhook(new).verify(later.body, later.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(later.body, later.headers)


class TestEventFilter:
    def test_each_endpoint_gets_only_the_events_it_subscribed_to(self, emit, project, receiver, endpoint_for, deliver_all):
        jobs_only = endpoint_for(project, receiver.url, event_types=["job.succeeded"])
        flags_only = endpoint_for(project, receiver.url, event_types=["output.flagged"])
        everything = endpoint_for(project, receiver.url)
        emit(project, "job.succeeded", key="j1")
        emit(project, "output.flagged", key="o1")
        got = {(d.endpoint_id, d.event_type) for d in WebhookDelivery.objects.all()}
        assert got == {
            (jobs_only.pk, "job.succeeded"), (everything.pk, "job.succeeded"),
            (flags_only.pk, "output.flagged"), (everything.pk, "output.flagged"),
        }
        assert sorted(deliver_all()) == ["succeeded"] * 4
        assert sorted(r.json()["type"] for r in receiver.requests) == ["job.succeeded"] * 2 + ["output.flagged"] * 2

    def test_disabled_endpoints_and_other_projects_get_nothing(self, emit, project, other_project, receiver, endpoint_for):
        endpoint_for(project, receiver.url, enabled=False)
        endpoint_for(other_project, receiver.url)
        assert emit(project) == []
        assert not WebhookDelivery.objects.exists()

    def test_the_same_event_emitted_twice_is_delivered_once(self, emit, project, receiver, endpoint_for, deliver_all):
        endpoint_for(project, receiver.url)
        first = emit(project, key="job-7")
        assert emit(project, key="job-7") == []
        assert WebhookDelivery.objects.count() == 1
        deliver_all()
        assert [r.headers["webhook-id"] for r in receiver.requests] == [first[0].event_id]


class TestRetries:
    def test_failures_are_retried_with_backoff_then_succeed(self, emit, project, receiver, endpoint_for, sent_messages,
                                                             django_capture_on_commit_callbacks):
        endpoint_for(project, receiver.url)
        receiver.answer(500, 503)  # then 200
        [row] = emit(project)
        countdowns = []
        for _ in range(3):
            [message] = [m for m in sent_messages if m["task"] == DELIVER_WEBHOOK_TASK]
            sent_messages.remove(message)
            countdowns.append(message.get("countdown"))
            with django_capture_on_commit_callbacks(execute=True):
                deliver_webhook.apply(args=message["args"], throw=True)
            row.refresh_from_db()
            if row.status == DeliveryStatus.PENDING:
                # the next attempt is due the schedule's delay after this attempt ended
                delay = [0.05, 0.1][row.attempts - 1]
                assert delay <= (row.next_attempt_at - row.last_attempt_at).total_seconds() <= delay + 1
        assert countdowns == [None, 0.05, 0.1]
        assert row.status == DeliveryStatus.SUCCEEDED and row.attempts == 3
        assert attempt_codes(row) == [500, 503, 200]
        assert row.last_status_code == 200 and row.last_error == "" and row.finished_at is not None
        # the same webhook-id on every attempt, each signed afresh
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
        for request in receiver.requests:
            Webhook(WebhookEndpoint.objects.get().secret).verify(request.body, request.headers)

    def test_a_delivery_gives_up_after_its_last_attempt(self, emit, project, receiver, endpoint_for, deliver_all):
        endpoint_for(project, receiver.url)
        receiver.answer(500, 500, 500)
        [row] = emit(project)
        assert deliver_all() == ["retrying", "retrying", "failed"]
        row.refresh_from_db()
        assert row.status == DeliveryStatus.FAILED and row.attempts == row.max_attempts == 3
        assert row.last_error == "The receiver answered HTTP 500." and row.last_response_excerpt == "answered 500"
        assert len(receiver.requests) == 3

    def test_a_message_before_the_due_time_does_nothing(self, emit, project, receiver, endpoint_for, webhook_config):
        endpoint_for(project, receiver.url)
        webhook_config(webhooks_retry_schedule_s="60")
        receiver.answer(500)
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "retrying"
        assert delivery.attempt(str(row.pk)) == "not_due"  # a duplicate, or a message that came early
        assert len(receiver.requests) == 1
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        assert delivery.attempt(str(row.pk)) == "succeeded"
        assert delivery.attempt(str(row.pk)) == "not_due"  # done: a late duplicate sends nothing
        assert len(receiver.requests) == 2

    def test_a_slow_receiver_times_out(self, emit, project, receiver, endpoint_for, webhook_config):
        endpoint_for(project, receiver.url)
        webhook_config(webhooks_timeout_s=0.3)
        receiver.answer((200, 1.5))
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "retrying"
        row.refresh_from_db()
        assert row.last_error == "Timed out after 0.3 s." and row.last_status_code is None
        assert row.attempt_log.get().duration_ms < 1200

    def test_redirects_are_not_followed(self, emit, project, receiver, endpoint_for):
        endpoint_for(project, receiver.url)
        receiver.answer(302)
        [row] = emit(project)
        delivery.attempt(str(row.pk))
        row.refresh_from_db()
        assert row.last_status_code == 302 and row.last_error.startswith("Redirects are not followed")
        assert len(receiver.requests) == 1  # nothing went to the Location (the metadata address)

    def test_an_unreachable_receiver_is_a_failed_attempt(self, emit, project, endpoint_for):
        endpoint_for(project, "http://127.0.0.1:9/nothing-listens")
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "retrying"
        row.refresh_from_db()
        assert row.last_status_code is None and "ConnectionRefused" in row.last_error


class TestDisabling:
    def test_repeated_failed_deliveries_disable_the_endpoint(self, emit, project, receiver, endpoint_for, deliver_all,
                                                             webhook_config):
        endpoint = endpoint_for(project, receiver.url)
        webhook_config(webhooks_retry_schedule_s="0", webhooks_disable_after_failures=2)
        receiver.answer(*[500] * 4)
        emit(project, key="a")
        assert deliver_all() == ["retrying", "failed"]
        endpoint.refresh_from_db()
        assert endpoint.enabled and endpoint.consecutive_failures == 1

        failing = emit(project, key="b")[0]
        queued_behind = emit(project, key="c")[0]  # still waiting when the endpoint is disabled
        outcomes = [delivery.attempt(str(failing.pk)), delivery.attempt(str(failing.pk))]
        assert outcomes == ["retrying", "failed"]
        endpoint.refresh_from_db()
        assert not endpoint.enabled and endpoint.consecutive_failures == 2
        assert endpoint.disabled_reason.startswith("Disabled automatically: 2 deliveries in a row failed")
        assert "HTTP 500" in endpoint.disabled_reason and endpoint.disabled_at is not None
        assert AuditEvent.objects.filter(action="webhook_disabled", object_id=str(endpoint.pk)).exists()

        queued_behind.refresh_from_db()
        assert queued_behind.status == DeliveryStatus.CANCELLED and "disabled" in queued_behind.last_error
        assert delivery.attempt(str(queued_behind.pk)) == "not_due"
        assert emit(project, key="d") == []  # no new deliveries while disabled
        assert len(receiver.requests) == 4

    def test_a_success_resets_the_failure_count(self, emit, project, receiver, endpoint_for, deliver_all, webhook_config):
        endpoint = endpoint_for(project, receiver.url)
        webhook_config(webhooks_retry_schedule_s="", webhooks_disable_after_failures=2)
        receiver.answer(500)
        emit(project, key="a")
        emit(project, key="b")
        assert sorted(deliver_all()) == ["failed", "succeeded"]
        endpoint.refresh_from_db()
        assert endpoint.enabled

    def test_re_enabling_clears_the_failure_count(self, project, receiver, endpoint_for, webhook_config):
        endpoint = endpoint_for(project, receiver.url)
        WebhookEndpoint.objects.update(enabled=False, consecutive_failures=5, disabled_reason="x", disabled_at=timezone.now())
        endpoint = services.update_endpoint(endpoint, "user:test", {"enabled": True})
        assert endpoint.enabled and endpoint.consecutive_failures == 0 and endpoint.disabled_reason == ""


class TestTargetsAtDeliveryTime:
    def test_a_name_that_now_resolves_to_a_private_address_is_not_called(self, emit, project, receiver, resolve_as,
                                                                           endpoint_for, webhook_config):
        resolve_as("hooks.example.com", ["93.184.215.14"])
        endpoint_for(project, f"http://hooks.example.com:{receiver.port}/in")
        webhook_config(webhooks_allow_private_targets=False)
        resolve_as("hooks.example.com", ["127.0.0.1"])  # DNS rebinding: the name now points inside
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "retrying"
        row.refresh_from_db()
        assert row.last_error.startswith("Refused: The host 'hooks.example.com' resolves to 127.0.0.1, a loopback address")
        assert receiver.requests == []

    def test_the_request_goes_to_the_checked_address_with_the_url_host_name(self, emit, project, receiver, resolve_as, endpoint_for):
        resolve_as("receiver.example", ["127.0.0.1"])
        endpoint_for(project, f"http://receiver.example:{receiver.port}/in")
        [row] = emit(project)
        assert delivery.attempt(str(row.pk)) == "succeeded"
        assert receiver.requests[0].headers["Host"] == f"receiver.example:{receiver.port}"


class TestDeliveryLogAndSweeper:
    def test_every_attempt_is_in_the_log(self, emit, project, receiver, endpoint_for, deliver_all):
        endpoint_for(project, receiver.url)
        receiver.answer(502)
        [row] = emit(project)
        deliver_all()
        log = list(row.attempt_log.order_by("number").values("number", "status_code", "error", "response_excerpt"))
        assert log == [
            {"number": 1, "status_code": 502, "error": "", "response_excerpt": "answered 502"},
            {"number": 2, "status_code": 200, "error": "", "response_excerpt": "answered 200"},
        ]

    def test_the_sweeper_resends_overdue_deliveries_only(self, emit, project, receiver, endpoint_for, sent_messages):
        endpoint_for(project, receiver.url)
        overdue, on_time = emit(project, key="a")[0], emit(project, key="b")[0]
        long_ago = timezone.now() - timedelta(hours=1)
        WebhookDelivery.objects.filter(pk=overdue.pk).update(next_attempt_at=long_ago)
        sent_messages.clear()
        assert delivery.sweep() == 1
        assert [m["args"] for m in sent_messages] == [[str(overdue.pk)]]
        assert delivery.sweep() == 0  # the message just sent is given time to arrive
        assert delivery.attempt(str(overdue.pk)) == "succeeded"
        assert on_time.pk != overdue.pk

    def test_a_url_with_characters_outside_ascii_is_delivered_percent_encoded(self, emit, project, receiver,
                                                                               endpoint_for, deliver_all):
        """Before, http.client refused the request line (UnicodeEncodeError, no OSError): no attempt was
        logged and the sweeper sent the delivery again and again, past its last attempt."""
        endpoint_for(project, f"http://127.0.0.1:{receiver.port}/hooks/café?shop=Zürich&ready=100%25")
        [row] = emit(project)
        assert deliver_all() == ["succeeded"]
        assert receiver.requests[0].path == "/hooks/caf%C3%A9?shop=Z%C3%BCrich&ready=100%25"

    def test_an_attempt_that_crashes_is_a_failed_attempt_and_the_delivery_ends(self, emit, project, receiver,
                                                                                endpoint_for, deliver_all, monkeypatch):
        def broken(*args, **kwargs):
            raise UnicodeEncodeError("ascii", "é", 0, 1, "ordinal not in range(128)")

        monkeypatch.setattr(delivery, "post", broken)
        endpoint_for(project, receiver.url)
        [row] = emit(project)
        assert deliver_all() == ["retrying", "retrying", "failed"]
        row.refresh_from_db()
        assert (row.status, row.attempts, row.attempt_log.count()) == (DeliveryStatus.FAILED, 3, 3)
        assert row.last_error.startswith("UnicodeEncodeError:")

    def test_a_delivery_whose_last_attempt_never_ended_fails_and_is_not_sent_again(self, emit, project, receiver,
                                                                                   endpoint_for, sent_messages):
        """Its worker died during the last attempt: the sweeper finds it overdue with no attempt left."""
        endpoint = endpoint_for(project, receiver.url)
        [row] = emit(project)
        long_ago = timezone.now() - timedelta(hours=1)
        WebhookDelivery.objects.filter(pk=row.pk).update(attempts=row.max_attempts, next_attempt_at=long_ago)
        sent_messages.clear()
        assert delivery.sweep() == 0 and sent_messages == []
        row.refresh_from_db()
        assert row.status == DeliveryStatus.FAILED and row.finished_at is not None
        assert row.last_error == "The last attempt did not finish: the worker making it stopped."
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).consecutive_failures == 1
        WebhookDelivery.objects.filter(pk=row.pk).update(status=DeliveryStatus.PENDING, next_attempt_at=long_ago)
        assert delivery.attempt(str(row.pk)) == "not_due" and receiver.requests == []  # no attempt beyond the last

    def test_a_deleted_endpoint_leaves_nothing_to_send(self, emit, project, receiver, endpoint_for):
        endpoint = endpoint_for(project, receiver.url)
        [row] = emit(project)
        services.delete_endpoint(endpoint, "user:test")
        assert delivery.attempt(str(row.pk)) == "gone"
        assert receiver.requests == []


def test_payload_body_is_compact_json_of_the_stored_payload(emit, project, receiver, endpoint_for, deliver_all):
    endpoint_for(project, receiver.url)
    [row] = emit(project, data={"job": {"id": "j", "text": "日本"}})
    deliver_all()
    assert json.loads(receiver.requests[0].body) == row.payload
    assert "日本".encode() in receiver.requests[0].body


@pytest.mark.timeout(60, method="signal")
def test_a_delivery_published_while_the_broker_hangs_gives_up_without_asking_it_again(
        monkeypatch, atelier_config, hanging_redis):
    """A reviewer's decision publishes its webhook delivery inside the web request: on a Redis that took the
    connection and never answers, two retries and their reconnections held that request about 21 s. A
    publish that got no answer gives up; the sweeper sends the delivery later."""
    from atelier_platform.celery_app import create_app
    from atelier_platform.webhooks import delivery as webhook_delivery
    from tests.support.hanging_redis import messages_for

    monkeypatch.setenv("BROKER_URL", hanging_redis.url)
    atelier_config()  # read afresh
    monkeypatch.setattr(webhook_delivery, "app", create_app())
    sent = ["11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"]
    try:
        assert webhook_delivery.publish(sent[0]) is True  # Redis answers: the pool keeps a connection that works
        hanging_redis.hang()
        assert webhook_delivery.publish(sent[1]) is False
        assert hanging_redis.connections_while_hung == 0  # no new connection, no second wait for an answer
    finally:
        hanging_redis.restart()
        for delivery_id in sent:
            messages_for(hanging_redis.direct_url, delivery_id, take=True, queue="platform")
