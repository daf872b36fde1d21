"""The settings page's delivery log and list of endpoints on a Chinese page: why a delivery failed or was not sent,
why an endpoint was disabled, each in the page's words by the code kept beside its English (which the API keeps)."""

from __future__ import annotations

import html

import pytest
from django.test import Client

from atelier_platform.webhooks import delivery, services
from atelier_platform.webhooks.models import DeliveryStatus, WebhookDelivery

pytestmark = pytest.mark.django_db


def settings_page_in_chinese(project, member) -> str:
    owner = Client()
    owner.force_login(member(project, "owner"))
    owner.post("/language/", {"language": "zh-hans", "next": "/"})
    return html.unescape(owner.get("/settings/").content.decode())


def test_why_deliveries_failed_and_an_endpoint_was_disabled_are_in_the_pages_language(
        project, member, receiver, endpoint_for, emit, webhook_config):
    endpoint = endpoint_for(project, receiver.url)
    webhook_config(webhooks_retry_schedule_s="", webhooks_disable_after_failures=1)
    receiver.answer(500)
    failing, queued_behind = emit(project, key="a")[0], emit(project, key="b")[0]
    assert delivery.attempt(str(failing.pk)) == "failed"  # the endpoint is disabled, the delivery behind cancelled
    assert WebhookDelivery.objects.get(pk=failing.pk).last_error == "The receiver answered HTTP 500."  # the API's

    page = settings_page_in_chinese(project, member)
    disabled = "已自动停用：连续 1 次投递的每次尝试都失败了。最后一次错误：接收方返回了 HTTP 500。"
    assert f"{disabled}</span>" in page  # in the list of endpoints
    assert 'title="接收方返回了 HTTP 500。"' in page  # the failed delivery
    assert f'title="未发送：该端点已停用。{disabled}"' in page  # the one cancelled behind it
    # the audit log shows what was recorded, as recorded (the event's reason is the API's English), like its export
    outside_the_audit_log = page.split('<section class="card" id="audit">')[0]
    assert "answered HTTP" not in outside_the_audit_log and "Disabled automatically" not in outside_the_audit_log
    assert "Not sent" not in outside_the_audit_log
    assert WebhookDelivery.objects.get(pk=queued_behind.pk).status == DeliveryStatus.CANCELLED

    services.update_endpoint(endpoint, f"user:{member(project, 'owner').pk}", {"enabled": True})
    webhook_config(webhooks_allow_private_targets=False)  # the receiver's loopback address is now refused
    refused = emit(project, key="c")[0]
    delivery.attempt(str(refused.pk))
    page = settings_page_in_chinese(project, member)
    assert ('title="已拒绝：主机“127.0.0.1”解析为 127.0.0.1，这是环回地址。Webhook 只调用公网地址。运维人员可以用 '
            'ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true 允许私有地址。"') in page


def test_who_disabled_an_endpoint_is_named_in_the_pages_language(project, member, receiver, endpoint_for):
    endpoint = endpoint_for(project, receiver.url)
    owner = member(project, "owner")
    services.update_endpoint(endpoint, f"user:{owner.pk}", {"enabled": False})
    assert f"由 {owner.username} 停用。</span>" in settings_page_in_chinese(project, member)
