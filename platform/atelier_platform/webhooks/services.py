"""Webhook endpoints of a project, and the events that become deliveries.

Endpoint changes are checked (URL safety, known event types), audited (never the secret), and
made under a row lock. An event becomes one delivery row per subscribed endpoint, written before
any message is sent; the message is published when the transaction commits.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any, Callable, Iterable, NamedTuple
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from atelier_platform.accounts.models import Project
from atelier_platform.jobs.errors import JobServiceError
from atelier_platform.moderation import audit
from atelier_platform.prepared_reads import PreparedRead
from atelier_platform.webhooks import delivery as delivery_service
from atelier_platform.webhooks import events, signing
from atelier_platform.webhooks.events import SUBSCRIBABLE_EVENTS, EventType
from atelier_platform.webhooks.models import DeliveryStatus, PreviousSecret, WebhookDelivery, WebhookEndpoint
from atelier_platform.webhooks.targets import LookupTimedOut, UnsafeTarget, check_target, covers, origin_and_path

logger = logging.getLogger("atelier.webhooks")

#: A project's endpoints, at most: every event fans out to each of them.
MAX_ENDPOINTS_PER_PROJECT = 20
#: After a rotation the old secret still signs for this long, so receivers can switch without a gap.
SECRET_ROTATION_GRACE = timedelta(hours=24)
#: Secrets rotated away that still sign at once, at most: each adds a signature to every delivery.
MAX_PREVIOUS_SECRETS = 3


class WebhookError(JobServiceError):
    code = "webhook_error"

    def __init__(self, message: str, *, reason: str | None = None, details: Any = None, code: str | None = None,
                 **params: Any) -> None:
        super().__init__(message, details=details, code=code)
        #: Why, as a stable word (the API's ``code`` where none is given) and the values the English names: the API
        #: answers the code and the English, the dashboard says it in its reader's language by these.
        self.reason = reason or self.code
        self.params = params


class InvalidWebhook(WebhookError):
    code = "validation_error"


class TooManyEndpoints(WebhookError):
    status_code = 409
    code = "webhook_limit_reached"


class SecretRotationLimit(WebhookError):
    status_code = 409
    code = "secret_rotation_limit"


class LookupTimedOutOnSave(WebhookError):
    """The resolver did not answer in time: the URL may be right, so a retry, not a correction, is asked for."""

    status_code = 503
    code = "dns_lookup_timeout"
    retry_after = 5


class DeliveryNotRetryable(WebhookError):
    status_code = 409
    code = "delivery_not_retryable"


# --- endpoints ---------------------------------------------------------------------------------------

def checked_url(url: str) -> str:
    # The lookup is bounded as a delivery attempt's is: a nameserver that does not answer held the request
    # for the resolver's own timeout (10-30 s), then answered 400 as if the URL were wrong.
    limit = delivery_service.attempt_limit_s()
    try:
        check_target(url, deadline=time.monotonic() + limit)
    except LookupTimedOut as exc:
        host = exc.host
        raise LookupTimedOutOnSave(f"The DNS lookup of {host!r} got no answer within {limit:g} s; nothing was saved. "
                                   "Try again, or check the host name.", host=host, limit=f"{limit:g}") from None
    except UnsafeTarget as exc:
        raise InvalidWebhook(str(exc), details={"url": [str(exc)]}, reason=exc.code, **exc.params) from None
    return url.strip()


def checked_event_types(event_types: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(event_types))  # without duplicates, in the caller's order
    unknown = [name for name in chosen if name not in SUBSCRIBABLE_EVENTS]
    if unknown:
        message = f"Unknown event type(s): {', '.join(unknown)}. Subscribe to any of: {', '.join(SUBSCRIBABLE_EVENTS)}."
        raise InvalidWebhook(message, details={"event_types": [message]}, reason="unknown_event_types",
                             unknown=", ".join(unknown), events=", ".join(SUBSCRIBABLE_EVENTS))
    return chosen


def _audit_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types,
            "enabled": endpoint.enabled}


@transaction.atomic
def create_endpoint(project, actor: str, *, url: str, description: str = "", event_types: Iterable[str] = (),
                    enabled: bool = True) -> WebhookEndpoint:
    # The project row's lock makes creations in one project take turns: two at once cannot both pass the limit.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    if WebhookEndpoint.objects.filter(project=project).count() >= MAX_ENDPOINTS_PER_PROJECT:
        raise TooManyEndpoints(f"A project has at most {MAX_ENDPOINTS_PER_PROJECT} webhook endpoints; delete one first.",
                               limit=MAX_ENDPOINTS_PER_PROJECT)
    endpoint = WebhookEndpoint.objects.create(
        project=project, url=checked_url(url), description=description, event_types=checked_event_types(event_types),
        enabled=enabled, secret=signing.new_secret(),
    )
    audit.record(project, actor, "webhook_created", endpoint, after=_audit_view(endpoint))
    return endpoint


@transaction.atomic
def update_endpoint(endpoint: WebhookEndpoint, actor: str, changes: dict[str, Any]) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    before = _audit_view(endpoint)
    if "url" in changes:
        endpoint.url = checked_url(changes["url"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "event_types" in changes:
        endpoint.event_types = checked_event_types(changes["event_types"])
    if "enabled" in changes and changes["enabled"] != endpoint.enabled:
        if changes["enabled"]:
            # Enabling is the owner saying "it works again": the failure count starts afresh.
            endpoint.enabled, endpoint.consecutive_failures = True, 0
            endpoint.disabled_reason, endpoint.disabled_reason_coded, endpoint.disabled_at = "", {}, None
        else:
            endpoint.enabled, endpoint.disabled_at = False, timezone.now()
            endpoint.disabled_reason = f"Disabled by {actor}."
            endpoint.disabled_reason_coded = delivery_service.coded("disabled_by", actor=actor)
            delivery_service.cancel_pending(endpoint, endpoint.disabled_reason, endpoint.disabled_reason_coded)
    endpoint.save()
    audit.record(endpoint.project, actor, "webhook_updated", endpoint, before=before, after=_audit_view(endpoint))
    return endpoint


@transaction.atomic
def delete_endpoint(endpoint: WebhookEndpoint, actor: str) -> None:
    audit.record(endpoint.project, actor, "webhook_deleted", endpoint, before=_audit_view(endpoint))
    endpoint.delete()  # its deliveries go with it; their messages then find nothing to send


def previous_secrets_view(previous: Iterable[PreviousSecret]) -> list[dict[str, str]]:
    """Secrets rotated away as the API, errors and the audit log show them: a hint and the expiry."""
    return [{"secret_hint": signing.secret_hint(p.secret), "expires_at": p.expires_at.isoformat()} for p in previous]


@transaction.atomic
def rotate_secret(endpoint: WebhookEndpoint, actor: str, *, expire_previous: bool = False) -> WebhookEndpoint:
    """A new signing secret. The one it replaces keeps signing for SECRET_ROTATION_GRACE, and every
    secret rotated away before keeps signing until its own expiry: a receiver still on any of them
    verifies every delivery until then. ``expire_previous`` stops those earlier ones now (one leaked,
    or the limit is reached); the secret being replaced keeps its grace all the same."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    now = timezone.now()
    still_signing = endpoint.previous_secrets_at(now)
    kept = [] if expire_previous else still_signing
    if len(kept) >= MAX_PREVIOUS_SECRETS:
        grace_hours = f"{SECRET_ROTATION_GRACE.total_seconds() / 3600:g}"
        raise SecretRotationLimit(
            f"{len(kept)} rotated secrets still sign this endpoint's deliveries, the most there can be; the first of them "
            f"stops at {kept[-1].expires_at.isoformat()}. Rotate again then, or now with {{\"expire_previous\": true}} to "
            f"stop signing with them at once (the current secret then keeps signing for {grace_hours} hours).",
            details={"previous_secrets": previous_secrets_view(kept)}, count=len(kept), until=kept[-1].expires_at,
        )
    before = {"secret_hint": signing.secret_hint(endpoint.secret), "previous_secrets": previous_secrets_view(still_signing)}
    kept = [PreviousSecret(endpoint.secret, now + SECRET_ROTATION_GRACE), *kept]
    endpoint.secret = signing.new_secret()
    endpoint.previous_secrets = [previous.stored() for previous in kept]  # the expired ones are dropped here
    endpoint.save(update_fields=["secret", "previous_secrets", "updated_at"])
    audit.record(endpoint.project, actor, "webhook_secret_rotated", endpoint, before=before, after={
        "secret_hint": signing.secret_hint(endpoint.secret), "previous_secrets": previous_secrets_view(kept),
        "expired_now": [signing.secret_hint(p.secret) for p in still_signing] if expire_previous else [],
    })
    return endpoint


# --- a job's own webhook ------------------------------------------------------------------------------
# A submission may name a ``webhook``: a URL that receives that job's own events (job.succeeded, job.failed,
# job.cancelled, output.flagged, output.review_changed), whatever the project's endpoints subscribe to. It must
# lie under one of the project's endpoints (same scheme, host and port; the endpoint's path or below it): the
# endpoint's secret signs the job's deliveries, so the receiver can verify them as it verifies the endpoint's,
# and a key that may only submit jobs cannot make the platform call a host its project's owner never set up.
# The deliveries are the endpoint's (its log, its retries, its failure count), sent to the job's URL.

def endpoint_covering(endpoints: Iterable[WebhookEndpoint], url: str) -> WebhookEndpoint | None:
    """The endpoint of ``endpoints`` whose URL covers ``url``; the most specific (longest URL) when several do."""
    covering = [endpoint for endpoint in endpoints if covers(endpoint.url, url)]
    return max(covering, key=lambda endpoint: len(endpoint.url), default=None)


def checked_job_webhook(project, url: str) -> str:
    """``url`` as a job's ``webhook``, or ``InvalidWebhook`` naming the field ``webhook`` and what to do."""

    def refuse(message: str):
        raise InvalidWebhook(message, details={"webhook": [message]})

    url = url.strip()
    if any(ord(c) < 33 or c == "\x7f" for c in url) or "#" in url:
        refuse("A webhook URL has no spaces, control characters or fragment (#...).")
    parts = origin_and_path(url)
    if parts is None:
        refuse("A webhook must be an http:// or https:// URL with a host.")
    if urlsplit(url).username is not None:
        refuse("A webhook URL may not carry a user name or password; put a token in its path or query instead.")
    endpoints = list(WebhookEndpoint.objects.filter(project=project))
    endpoint = endpoint_covering([e for e in endpoints if e.enabled], url)
    if endpoint is None:
        disabled = endpoint_covering([e for e in endpoints if not e.enabled], url)
        if disabled is not None:
            refuse(f"The webhook endpoint {disabled.url} that covers this URL is disabled; a project owner can enable it "
                   f"(PATCH /api/v1/webhooks/{disabled.pk}/ with enabled=true). {disabled.disabled_reason}".strip())
        scheme, host, port = parts[0]
        refuse(f"No webhook endpoint of this project covers this URL. A project owner registers {scheme}://{host}"
               f"{'' if port in (80, 443) else f':{port}'}/ (or a path above this URL's) with POST /api/v1/webhooks/; "
               "its secret then signs this job's deliveries.")
    return url


class Fact(NamedTuple):
    """One thing that happened, as ``emit_many`` takes it: its key (see ``emit``), its payload's data (built only
    when someone takes it), and the job's own webhook URL, if the job named one."""

    key: str
    data: Callable[[], dict[str, Any]]
    job_webhook: str = ""


# --- deliveries ----------------------------------------------------------------------------------------

def _new_delivery(endpoint: WebhookEndpoint, event_type: str, event_id: str, payload: dict[str, Any], *,
                  target_url: str = "") -> tuple[WebhookDelivery, bool]:
    delivery, created = WebhookDelivery.objects.get_or_create(
        endpoint=endpoint, event_id=event_id,
        defaults=dict(event_type=event_type, payload=payload, max_attempts=delivery_service.max_attempts_for(event_type),
                      next_attempt_at=timezone.now(), target_url=target_url),
    )
    if created:
        delivery_service.publish_on_commit(delivery.pk)
    return delivery, created


#: A project's enabled endpoints, looked up for every event (every finished job, most of them in projects without
#: any): the query's SQL built once per connection (``PreparedRead``), its rows read on every call.
_enabled_endpoints_read = PreparedRead(lambda project_id: WebhookEndpoint.objects.filter(project_id=project_id, enabled=True),
                                       project_id=WebhookEndpoint._meta.get_field("project"))


def emit(project, event_type: str, data: dict[str, Any], *, event_key: str, job_webhook: str = "") -> list[WebhookDelivery]:
    """One delivery per enabled endpoint of the project that subscribes to ``event_type``, and one to
    ``job_webhook`` (the job's own webhook URL) when the event is a job's that named one.

    ``event_key`` names the fact (a job id, an output id and state): the same fact emitted twice
    gets the same ``webhook-id`` and so no second delivery. A project without such an endpoint
    (most jobs) costs one query and no transaction.
    """
    return emit_many(project, event_type, [Fact(event_key, lambda: data, job_webhook)])


def emit_many(project, event_type: str, facts: list[Fact]) -> list[WebhookDelivery]:
    """``emit`` for several facts of one project and type (the jobs a batch finished together), each a ``Fact``
    whose data is built only when an endpoint takes it: one query for them all."""
    enabled = list(_enabled_endpoints_read(project_id=project.pk)) if facts else []
    subscribed = [e for e in enabled if e.accepts(event_type)]
    routes: list[tuple[Fact, WebhookEndpoint, str, str]] = []  # (fact, endpoint, the job's URL or "", webhook-id)
    for fact in facts:
        event_id = events.event_id_for(event_type, fact.key)
        routes.extend((fact, endpoint, "", event_id) for endpoint in subscribed)
        if fact.job_webhook:
            endpoint = endpoint_covering(enabled, fact.job_webhook)
            if endpoint is None:  # deleted or disabled since the job was submitted
                logger.warning("%s %s: no enabled endpoint covers the job's webhook %s any more; not sent",
                               event_type, fact.key, fact.job_webhook)
            elif not (endpoint in subscribed and fact.job_webhook == endpoint.url):  # sent there already
                # Its own webhook-id: the endpoint may receive the same fact at its own URL too.
                routes.append((fact, endpoint, fact.job_webhook,
                               events.event_id_for(event_type, f"{fact.key} to {fact.job_webhook}")))
    if not routes:
        return []
    now = timezone.now()
    payloads: dict[str, dict[str, Any]] = {}
    created = []
    with transaction.atomic():
        for fact, endpoint, target_url, event_id in routes:
            if fact.key not in payloads:
                payloads[fact.key] = events.envelope(event_type, fact.data(), now)
            delivery, is_new = _new_delivery(endpoint, event_type, event_id, payloads[fact.key], target_url=target_url)
            if is_new:
                created.append(delivery)
    return created


@transaction.atomic
def send_test(endpoint: WebhookEndpoint, actor: str) -> WebhookDelivery:
    """A ``webhook.test`` ping through the same path as real events (one attempt, no retries).
    It goes to a disabled endpoint too: that is how an owner checks a repaired receiver."""
    data = {"project": endpoint.project.slug, "endpoint_id": str(endpoint.pk), "requested_by": actor,
            "message": "A test delivery from Atelier. Verify its signature with your endpoint's secret."}
    payload = events.envelope(EventType.WEBHOOK_TEST, data, timezone.now())
    delivery, _ = _new_delivery(endpoint, EventType.WEBHOOK_TEST, events.random_event_id(), payload)
    return delivery


@transaction.atomic
def retry_delivery(delivery: WebhookDelivery, actor: str) -> WebhookDelivery:
    """Send a finished delivery once more, with the same ``webhook-id`` (receivers may dedupe)."""
    delivery = WebhookDelivery.objects.select_for_update().select_related("endpoint__project").get(pk=delivery.pk)
    if delivery.status == DeliveryStatus.PENDING:
        raise DeliveryNotRetryable("This delivery is still waiting for an attempt; it is retried automatically.",
                                   details={"next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.next_attempt_at else None})
    if not delivery.endpoint.enabled and delivery.event_type != EventType.WEBHOOK_TEST:
        raise DeliveryNotRetryable("The endpoint is disabled; enable it (PATCH enabled=true) before retrying.",
                                   code="endpoint_disabled")
    delivery.status = DeliveryStatus.PENDING
    delivery.max_attempts = delivery.attempts + 1  # one more attempt, not a whole new schedule
    delivery.next_attempt_at = timezone.now()
    delivery.finished_at = None
    delivery.save(update_fields=["status", "max_attempts", "next_attempt_at", "finished_at"])
    audit.record(delivery.endpoint.project, actor, "webhook_delivery_retried", delivery)
    delivery_service.publish_on_commit(delivery.pk)
    return delivery
