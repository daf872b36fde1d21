"""Sending deliveries: one attempt at a time, retried with backoff, the row updated on every attempt.

The delivery row is the truth; a broker message only says "look at delivery <id> now". An attempt
first claims the row with a conditional update (status pending and due), which also pushes
``next_attempt_at`` past the attempt's time limit: a duplicate message finds nothing due, and a
worker that dies mid-attempt leaves a row the sweeper finds overdue and sends again. The HTTP
request runs outside any transaction, so a slow receiver never holds a database lock. An attempt's
time limit covers all of it: the DNS lookup of the host, connecting, sending and reading the answer.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from atelier_platform.celery_app import DELIVER_WEBHOOK_TASK, QUEUE_PLATFORM, app, publish_or_leave_to_sweeper
from atelier_platform.config import get_config
from atelier_platform.moderation import audit
from atelier_platform.webhooks import signing
from atelier_platform.webhooks.events import EventType
from atelier_platform.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from atelier_platform.webhooks.targets import LookupTimedOut, Target, UnsafeTarget, check_target, covers

logger = logging.getLogger("atelier.webhooks")

USER_AGENT = "Atelier-Webhooks/1"
#: characters of the receiver's answer kept in the log: enough to read an error page's gist
RESPONSE_EXCERPT_CHARS = 500
#: characters of an attempt's error kept in the log: an error can quote what the receiver sent
#: (a status line that is not HTTP, up to 64 KiB), and every attempt of every delivery keeps one
ERROR_CHARS = 1000
#: a message may run this early against the row's due time (clocks of web and worker hosts differ)
EARLY_TOLERANCE = timedelta(seconds=2)
SYSTEM_ACTOR = "system:webhooks"


def attempt_limit_s() -> float:
    """Longest one attempt can take: look the host up, connect, send, read the status line and an excerpt."""
    return get_config().webhooks_timeout_s


def max_attempts_for(event_type: str) -> int:
    # A test ping answers "does my endpoint work now?": retrying it for hours would answer nothing.
    if event_type == EventType.WEBHOOK_TEST:
        return 1
    return 1 + len(get_config().webhooks_retry_delays_s)


def retry_delay_s(attempts_made: int) -> float:
    """Wait after the ``attempts_made``-th failed attempt (the schedule's last value repeats)."""
    delays = get_config().webhooks_retry_delays_s or (0.0,)
    return delays[min(attempts_made, len(delays)) - 1]


# --- publishing -------------------------------------------------------------------------------

def publish(delivery_id: str, *, countdown: float = 0) -> bool:
    # a review decision publishes inside its web request: a hung broker must not hold it for long; the sweeper
    # re-sends overdue deliveries
    return publish_or_leave_to_sweeper(
        app, DELIVER_WEBHOOK_TASK, [str(delivery_id)], queue=QUEUE_PLATFORM, what=f"webhook delivery {delivery_id}",
        countdown=countdown or None,
        time_limit=int(attempt_limit_s() * 3) + 60,  # a backstop only: the attempt enforces its own deadline
    )


def publish_on_commit(delivery_id, *, countdown: float = 0) -> None:
    delivery_id = str(delivery_id)
    transaction.on_commit(lambda: publish(delivery_id, countdown=countdown), robust=True)


# --- one HTTP request ---------------------------------------------------------------------------

def coded(code: str, **params) -> dict:
    """A reason as a code and its values, as ``last_error_coded`` and ``disabled_reason_coded`` keep it."""
    return {"code": code, "params": params}


def cause(error: UnsafeTarget) -> dict:
    """A refused URL's reason, within another's (``Refused: ...``), with its English."""
    return {"code": error.code, "params": error.params, "english": str(error)}


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str = ""
    excerpt: str = ""
    duration_ms: int = 0
    #: ``error`` as a code and its values (``coded``); empty where there is none, or it has no code
    error_coded: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error and self.status_code is not None and 200 <= self.status_code < 300


class _PinnedAddresses:
    """Connects to the addresses the SSRF check approved, never to a fresh DNS answer, within the
    attempt's deadline: connecting is part of the attempt's time, not extra time before it."""

    _addresses: tuple[str, ...]
    _deadline: float  # time.monotonic() by which the whole attempt is over
    port: int
    timeout: float

    def _open_socket(self) -> socket.socket:
        error: OSError | None = None
        for index, address in enumerate(self._addresses):  # in resolver order; an unreachable IPv6 falls back to IPv4
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                break
            # Each address still to try gets an equal share of the time left: a black-holed first
            # address (a host's dead IPv6) leaves time for the next, and all of them together never
            # outlast the attempt.
            share = remaining / (len(self._addresses) - index)
            try:
                sock = socket.create_connection((address, self.port), share)
            except OSError as exc:
                error = exc
                continue
            # What is left of the attempt bounds the TLS handshake too, which runs before the
            # watchdog has a socket to shut down.
            sock.settimeout(max(self._deadline - time.monotonic(), 0.001))
            return sock
        raise error or (TimeoutError("no time left to connect") if self._addresses else OSError("no address to connect to"))


class _PinnedHTTPConnection(_PinnedAddresses, http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float, deadline: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._addresses, self._deadline = target.addresses, deadline

    def connect(self) -> None:
        self.sock = self._open_socket()


class _PinnedHTTPSConnection(_PinnedAddresses, http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float, deadline: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self._tls)
        self._addresses, self._deadline = target.addresses, deadline

    def connect(self) -> None:
        # The certificate is checked against the URL's host name, not the address we dialled.
        self.sock = self._tls.wrap_socket(self._open_socket(), server_hostname=self.host)


def _abort(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    expired.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the request thread blocked in recv/send
        except OSError:
            pass


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float, *,
         started: float | None = None) -> AttemptResult:
    """POST once, within ``timeout`` seconds of ``started`` (``time.monotonic()``; now by default) in
    all (a receiver that trickles its answer byte by byte is cut off too). Redirects are not followed
    (a 3xx is a failed attempt): following one would reach a URL nobody checked."""
    if started is None:
        started = time.monotonic()
    deadline = started + timeout
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(target, timeout, deadline)
    expired = threading.Event()
    watchdog = threading.Timer(max(deadline - time.monotonic(), 0), _abort, args=(connection, expired))
    watchdog.daemon = True

    def elapsed_ms() -> int:
        return _ms_since(started)

    watchdog.start()
    try:
        connection.connect()
        if expired.is_set():
            # The watchdog fired while connecting, when there was no socket yet to shut down: without
            # this, the request would go out past the deadline with nothing left to cut it off.
            raise TimeoutError
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read(RESPONSE_EXCERPT_CHARS * 4)
        if expired.is_set():
            raise TimeoutError
        excerpt = raw.decode("utf-8", errors="replace")[:RESPONSE_EXCERPT_CHARS]
        if 300 <= response.status < 400:
            location = (response.getheader('Location') or '')[:200]
            return AttemptResult(response.status, f"Redirects are not followed (Location: {location}).", excerpt,
                                 elapsed_ms(), coded("redirect_not_followed", location=location))
        return AttemptResult(response.status, "", excerpt, elapsed_ms())
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set() or isinstance(exc, TimeoutError):
            return AttemptResult(None, f"Timed out after {timeout:g} s.", "", elapsed_ms(),
                                 coded("timed_out", limit=f"{timeout:g}"))
        if isinstance(exc, ssl.SSLError):
            return AttemptResult(None, f"TLS error: {exc}", "", elapsed_ms(), coded("tls_error", error=str(exc)))
        return AttemptResult(None, f"{type(exc).__name__}: {exc}", "", elapsed_ms(),
                             coded("connection_failed", error=f"{type(exc).__name__}: {exc}"))
    finally:
        watchdog.cancel()
        connection.close()


def request_parts(endpoint: WebhookEndpoint, delivery: WebhookDelivery, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The body and the Standard Webhooks headers of one attempt (signed afresh: the timestamp is now)."""
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(endpoint.signing_secrets(now), delivery.event_id, timestamp, body),
    }
    return body.encode("utf-8"), headers


def send(endpoint: WebhookEndpoint, delivery: WebhookDelivery, now: datetime) -> AttemptResult:
    # One deadline for the whole attempt, the lookup included: a nameserver that does not answer
    # (glibc waits 10-30 s for it) must not hold the worker past the attempt's time limit.
    timeout, started = attempt_limit_s(), time.monotonic()
    if delivery.target_url and not covers(endpoint.url, delivery.target_url):
        return AttemptResult(None, f"Refused: the endpoint's URL changed to {endpoint.url}, which no longer covers the "
                                   f"job's webhook {delivery.target_url}.", "", 0,
                             coded("job_webhook_not_covered", endpoint_url=endpoint.url, target_url=delivery.target_url))
    try:
        # Checked again at every attempt: the name may resolve elsewhere than when it was saved.
        target = check_target(delivery.target_url or endpoint.url, deadline=started + timeout)  # a job's own URL, or the endpoint's
    except LookupTimedOut as exc:
        return AttemptResult(None, f"Timed out after {timeout:g} s: {exc}", "", _ms_since(started),
                             coded("lookup_timed_out", limit=f"{timeout:g}", cause=cause(exc)))
    except UnsafeTarget as exc:
        return AttemptResult(None, f"Refused: {exc}", "", _ms_since(started), coded("target_refused", cause=cause(exc)))
    body, headers = request_parts(endpoint, delivery, now)
    return post(target, body, headers, timeout, started=started)


# --- one attempt of a delivery --------------------------------------------------------------------

def attempt(delivery_id: str) -> str:
    """Make the delivery's next attempt if it is due. Returns what happened, for the task log:
    ``not_due`` (a duplicate or early message), ``gone``, ``cancelled``, ``succeeded``,
    ``retrying`` or ``failed``."""
    now = timezone.now()
    delivery = WebhookDelivery.objects.select_related("endpoint__project").filter(pk=delivery_id).first()
    if delivery is None:
        return "gone"
    endpoint = delivery.endpoint
    is_test = delivery.event_type == EventType.WEBHOOK_TEST
    due = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, next_attempt_at__lte=now + EARLY_TOLERANCE
    )
    if not endpoint.enabled and not is_test:
        cancelled = due.update(
            status=DeliveryStatus.CANCELLED, next_attempt_at=None, finished_at=now,
            last_error=f"Not sent: the endpoint is disabled. {endpoint.disabled_reason}"[:1000],
            last_error_coded=_not_sent(endpoint.disabled_reason, endpoint.disabled_reason_coded),
        )
        return "cancelled" if cancelled else "not_due"
    # The claim: one message wins; the lease keeps duplicates away until the attempt is over.
    lease = now + timedelta(seconds=attempt_limit_s() * 3 + 30)
    if not due.filter(attempts__lt=F("max_attempts")).update(attempts=F("attempts") + 1, next_attempt_at=lease,
                                                             last_attempt_at=now):
        return "not_due"
    try:
        result = send(endpoint, delivery, now)
    except Exception as exc:  # a failed attempt like any other: recorded, retried, counted toward the limit
        logger.exception("webhook delivery %s: the attempt crashed", delivery.pk)
        result = AttemptResult(None, f"{type(exc).__name__}: {exc}")
    return _record(delivery.pk, endpoint, result, started_at=now, counts_for_health=not is_test)


def _storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: a receiver's binary answer, or a status line of NUL bytes
    from something that is not an HTTP server, would otherwise fail the write, and with it the record
    of an attempt that reached the receiver (which the sweeper would then send again)."""
    return text.replace("\x00", "\ufffd")


def _storable_values(value):
    """A coded error's values as the database can store them and as long as its English may be: they quote what
    the receiver sent as the English does (a status line of NUL bytes, up to 64 KiB)."""
    if isinstance(value, str):
        return _storable(value)[:ERROR_CHARS]
    if isinstance(value, dict):
        return {key: _storable_values(item) for key, item in value.items()}
    return value


@transaction.atomic
def _record(delivery_id, endpoint: WebhookEndpoint, result: AttemptResult, *, started_at: datetime, counts_for_health: bool) -> str:
    delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
    if delivery is None:
        return "gone"  # the endpoint was deleted during the attempt
    result = replace(result, error=_storable(result.error)[:ERROR_CHARS], excerpt=_storable(result.excerpt),
                     error_coded=_storable_values(result.error_coded))
    now = timezone.now()
    WebhookAttempt.objects.create(
        delivery=delivery, number=delivery.attempts, started_at=started_at, duration_ms=result.duration_ms,
        status_code=result.status_code, error=result.error, response_excerpt=result.excerpt,
    )
    delivery.last_status_code = result.status_code
    delivery.last_error = result.error or ("" if result.ok else f"The receiver answered HTTP {result.status_code}.")
    delivery.last_error_coded = (result.error_coded if result.error else
                                 {} if result.ok else coded("receiver_answered", status=result.status_code))
    delivery.last_response_excerpt = result.excerpt
    if result.ok:
        outcome = delivery.status = DeliveryStatus.SUCCEEDED
        delivery.next_attempt_at, delivery.finished_at = None, now
        if counts_for_health:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).exclude(consecutive_failures=0).update(consecutive_failures=0)
    elif delivery.status != DeliveryStatus.PENDING:
        # Cancelled while this attempt ran (the endpoint was disabled): no further attempt.
        outcome = delivery.status
        delivery.next_attempt_at = None
    elif delivery.attempts < delivery.max_attempts:
        outcome = "retrying"
        delay = retry_delay_s(delivery.attempts)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        publish_on_commit(delivery.pk, countdown=delay)
    else:
        outcome = delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at, delivery.finished_at = None, now
        if counts_for_health:
            _count_failed_delivery(endpoint, delivery.last_error, delivery.last_error_coded, now)
    delivery.save(update_fields=[
        "status", "next_attempt_at", "finished_at", "last_status_code", "last_error", "last_error_coded",
        "last_response_excerpt",
    ])
    logger.info("webhook delivery %s (%s) attempt %d: %s %s", delivery.pk, delivery.event_type, delivery.attempts,
                result.status_code, result.error or "")
    return outcome


def _count_failed_delivery(endpoint: WebhookEndpoint, last_error: str, last_error_coded: dict, now: datetime) -> None:
    """A delivery failed every attempt: after enough in a row, stop sending to this endpoint."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    limit = get_config().webhooks_disable_after_failures
    reason = f"Disabled automatically: {limit} deliveries in a row failed every attempt. Last error: {last_error}"[:300]
    reason_coded = coded("disabled_after_failures", limit=limit, cause={**last_error_coded, "english": last_error})
    disabled = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True, consecutive_failures__gte=limit).update(
        enabled=False, disabled_reason=reason, disabled_reason_coded=reason_coded, disabled_at=now
    )
    if disabled:
        logger.warning("webhook endpoint %s disabled after %d failed deliveries in a row", endpoint.pk, limit)
        cancel_pending(endpoint, reason, reason_coded)
        audit.record(endpoint.project, SYSTEM_ACTOR, "webhook_disabled", endpoint, after={"reason": reason})


def cancel_pending(endpoint: WebhookEndpoint, reason: str, reason_coded: dict) -> int:
    """Deliveries still waiting for a disabled endpoint are not sent (they can be retried by hand). ``reason`` says
    why the endpoint was disabled, ``reason_coded`` the same as a code and its values."""
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING)
        .exclude(event_type=EventType.WEBHOOK_TEST)
        .update(status=DeliveryStatus.CANCELLED, next_attempt_at=None, finished_at=timezone.now(),
                last_error=f"Not sent: the endpoint was disabled. {reason}"[:1000],
                last_error_coded=_not_sent(reason, reason_coded))
    )


def _not_sent(reason: str, reason_coded: dict) -> dict:
    """Why a delivery was not sent: its endpoint is disabled, for ``reason``."""
    return coded("not_sent_endpoint_disabled", cause={**reason_coded, "english": reason})


# --- repair -----------------------------------------------------------------------------------------

def sweep(now: datetime | None = None) -> int:
    """Send again deliveries overdue by ``ATELIER_JOB_REQUEUE_AFTER_S``: their message was lost
    (broker purged) or their worker died mid-attempt. A duplicate message is harmless (the claim)."""
    now = now or timezone.now()
    overdue_before = now - timedelta(seconds=get_config().job_requeue_after_s)
    overdue = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lt=overdue_before)
    _fail_exhausted(overdue.filter(attempts__gte=F("max_attempts")), now)
    sent = 0
    for delivery_id in overdue.values_list("pk", flat=True)[:500]:
        # Marking it due now keeps the next sweep from sending it again while this message waits.
        if WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING,
                                          next_attempt_at__lt=overdue_before).update(next_attempt_at=now):
            logger.warning("webhook delivery %s overdue; sending its message again", delivery_id)
            publish(delivery_id)
            sent += 1
    return sent


def _fail_exhausted(overdue, now: datetime) -> None:
    """Deliveries whose last attempt never ended (its worker died during it): no attempt is left to
    make, so they fail, and count toward their endpoint's failures as any failed delivery."""
    reason, reason_coded = "The last attempt did not finish: the worker making it stopped.", coded("attempt_unfinished")
    for delivery in overdue.select_related("endpoint")[:500]:
        failed = WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.FAILED, next_attempt_at=None, finished_at=now, last_error=reason,
            last_error_coded=reason_coded)
        if failed and delivery.event_type != EventType.WEBHOOK_TEST:
            _count_failed_delivery(delivery.endpoint, reason, reason_coded, now)
