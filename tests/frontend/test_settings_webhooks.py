"""The settings page's webhook delivery log read per endpoint and page by page (it showed the latest 30 of all
endpoints together, so a quiet endpoint's deliveries were hidden behind a busy one's and older ones could not be
read), and an endpoint's signing secret rotated from the page as the API rotates it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from atelier_frontend import settings_views
from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.frontend.test_dashboard_fixes import in_chinese

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(project, signed_in):
    return signed_in(project, "owner")


def deliveries(endpoint, count: int, event: str = "job.succeeded") -> list[WebhookDelivery]:
    """``count`` deliveries of ``endpoint``, a minute apart, the last one the newest (ids in no order of time)."""
    start = timezone.now() - timedelta(days=1)
    made = []
    for number in range(count):
        delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type=event, event_id=f"{endpoint.pk}-{number}",
                                                  payload={}, status="succeeded", attempts=1, max_attempts=3)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=start + timedelta(minutes=number))
        made.append(delivery)
    return made


def shown(page: str) -> list[str]:
    """The ids of the deliveries the log shows, in its order (each row's "Send again" form names its delivery)."""
    return re.findall(r'name="delivery" value="([0-9a-f-]{36})"', page)


def test_an_owner_reads_one_endpoints_deliveries_page_by_page(project, other_project, owner, monkeypatch):
    monkeypatch.setattr(settings_views, "DELIVERY_ROWS", 3)
    quiet = WebhookEndpoint.objects.create(project=project, url="https://quiet.example.com/hook", secret="s")
    busy = WebhookEndpoint.objects.create(project=project, url="https://busy.example.com/hook", secret="s")
    quiet_ones = deliveries(quiet, 5, "job.failed")
    busy_ones = deliveries(busy, 4)
    for delivery in busy_ones:  # the busy endpoint's are the newest: they fill the log
        WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now())
    page = owner.get("/settings/").content.decode()
    assert not set(shown(page)) & {str(d.pk) for d in quiet_ones}
    assert f'href="?delivery_endpoint={quiet.pk}#deliveries" class="endpoint-deliveries"' in page

    first = owner.get("/settings/", {"delivery_endpoint": str(quiet.pk)}).content.decode()
    assert shown(first) == [str(d.pk) for d in reversed(quiet_ones[2:])]  # its newest 3, newest first
    assert f'<option value="{quiet.pk}" selected>' in first
    older = re.search(r'href="\?([^"]+)#deliveries" id="deliveries-older"', first).group(1).replace("&amp;", "&")
    second = owner.get(f"/settings/?{older}").content.decode()
    assert shown(second) == [str(d.pk) for d in reversed(quiet_ones[:2])]  # the rest, and no link further
    assert 'id="deliveries-older"' not in second and 'id="deliveries-newest"' in second

    # every endpoint's together, page by page, as before: nothing skipped, nothing twice
    seen, query = [], ""
    for _ in range(5):
        page = owner.get(f"/settings/?{query}").content.decode()
        seen += shown(page)
        link = re.search(r'href="\?([^"]+)#deliveries" id="deliveries-older"', page)
        if not link:
            break
        query = link.group(1).replace("&amp;", "&")
    assert sorted(seen) == sorted(str(d.pk) for d in [*quiet_ones, *busy_ones]) and len(seen) == 9


def test_another_projects_endpoint_or_delivery_shows_nothing_of_it(project, other_project, owner):
    mine = WebhookEndpoint.objects.create(project=project, url="https://mine.example.com/hook", secret="s")
    theirs = WebhookEndpoint.objects.create(project=other_project, url="https://theirs.example.com/hook", secret="s")
    [their_delivery] = deliveries(theirs, 1)
    [my_delivery] = deliveries(mine, 1)
    for query in ({"delivery_endpoint": str(theirs.pk)}, {"delivery_endpoint": "not-an-id"}):
        page = owner.get("/settings/", query).content.decode()
        assert "No such webhook endpoint: its deliveries cannot be shown." in page
        assert shown(page) == [] and "theirs.example.com" not in page
    # another project's delivery as the page's start: the newest of this project's, from the start
    page = owner.get("/settings/", {"delivery_before": str(their_delivery.pk)}).content.decode()
    assert shown(page) == [str(my_delivery.pk)]
    chinese = in_chinese(owner).get("/settings/", {"delivery_endpoint": str(theirs.pk)}).content.decode()
    assert "没有这个 Webhook 端点" in chinese


def rotate(client, endpoint, **extra):
    return client.post("/settings/", {"action": "webhook_rotate", "endpoint": str(endpoint.pk), **extra})


def test_an_owner_rotates_a_secret_and_sees_the_new_one_once(project, owner):
    from atelier_platform.moderation.models import AuditEvent
    from atelier_platform.webhooks.signing import secret_hint

    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/a", secret="whsec_old")
    page = owner.get("/settings/").content.decode()
    assert 'class="link rotate-secret"' in page and "Replace the signing secret of https://hooks.example.com/a?" in page

    response = rotate(owner, endpoint)
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret.startswith("whsec_") and endpoint.secret != "whsec_old"
    assert endpoint.signing_secrets(timezone.now()) == [endpoint.secret, "whsec_old"]  # the old one signs on, 24 h
    shown_once = owner.get(response["Location"])
    page = shown_once.content.decode()
    assert f'<code id="new-webhook-secret">{endpoint.secret}</code>' in page
    assert "New signing secret of https://hooks.example.com/a, shown this once: copy it now." in page
    assert "Deliveries carry a signature by the previous secret too until" in page
    assert "no-store" in shown_once["Cache-Control"]
    assert endpoint.secret not in owner.get("/settings/").content.decode()  # once
    event = AuditEvent.objects.get(action="webhook_secret_rotated")
    assert event.actor == f"user:{owner.user.pk}" and event.after["secret_hint"] == secret_hint(endpoint.secret)
    page = owner.get("/settings/").content.decode()
    assert "Secrets rotated away that still sign its deliveries:" in page and secret_hint("whsec_old") in page
    assert "webhook secret rotated" in page  # the audit log says it in words


def test_past_the_limit_of_secrets_still_signing_the_page_says_so_and_offers_to_stop_them(project, owner):
    from atelier_platform.webhooks.services import MAX_PREVIOUS_SECRETS

    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/a", secret="whsec_0")
    for _ in range(MAX_PREVIOUS_SECRETS):
        assert rotate(owner, endpoint).status_code == 302
    endpoint.refresh_from_db()
    before = (endpoint.secret, endpoint.previous_secrets)
    refused = rotate(owner, endpoint)
    page = refused.content.decode()
    assert refused.status_code == 400
    assert f"{MAX_PREVIOUS_SECRETS} secrets rotated away still sign this endpoint&#x27;s deliveries, the most there can be" in page
    assert 'value="https://hooks.example.com/a"' in page  # its form as stored, not emptied
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secrets) == before
    chinese = in_chinese(owner).post("/settings/", {"action": "webhook_rotate", "endpoint": str(endpoint.pk)})
    assert "个已轮换的密钥仍在为此端点的投递签名" in chinese.content.decode()

    assert rotate(owner, endpoint, expire_previous="on").status_code == 302
    endpoint.refresh_from_db()
    assert len(endpoint.previous_secrets_at(timezone.now())) == 1  # only the one just replaced, for its 24 hours


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_only_owners_rotate(project, signed_in, role):
    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/a", secret="whsec_old")
    assert rotate(signed_in(project, role), endpoint).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.secret == "whsec_old"


def test_another_projects_endpoint_is_not_rotated(project, other_project, owner):
    theirs = WebhookEndpoint.objects.create(project=other_project, url="https://theirs.example.com/a", secret="whsec_t")
    refused = rotate(owner, theirs)
    assert refused.status_code == 400 and "No such webhook endpoint." in refused.content.decode()
    assert owner.post("/settings/", {"action": "webhook_rotate", "endpoint": "nonsense"}).status_code == 400
    theirs.refresh_from_db()
    assert theirs.secret == "whsec_t" and theirs.previous_secrets == []
