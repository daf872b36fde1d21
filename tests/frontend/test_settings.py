"""Project settings for owners: members, API keys shown once, policy, blocklist, audit log."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atelier_platform.accounts.models import ApiKey, Invitation, Membership
from atelier_platform.moderation import audit
from atelier_platform.accounts.services import authenticate_api_key
from atelier_platform.moderation.models import AuditEvent, BlocklistEntry
from atelier_platform.moderation.screening import policy_for
from tests.factories import UserFactory, colleagues

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(project, signed_in):
    return signed_in(project, "owner")


def test_only_owners_see_settings(project, signed_in, owner):
    for role in ("editor", "reviewer", "viewer"):
        client = signed_in(project, role)
        assert client.get("/settings/").status_code == 403
        assert 'data-nav="settings"' not in client.get("/jobs/").content.decode()
    assert 'data-nav="settings"' in owner.get("/jobs/").content.decode()
    assert owner.get("/settings/").status_code == 200


def test_members_are_added_given_roles_and_removed_but_the_last_owner_stays(project, owner):
    newcomer = UserFactory(username="newcomer")
    colleagues(owner.user, newcomer)  # added by username: someone the owner works with already
    assert owner.post("/settings/", {"action": "add_member", "username": "newcomer", "role": "reviewer"}).status_code == 302
    membership = Membership.objects.get(project=project, user=newcomer)
    assert membership.role == "reviewer"
    response = owner.post("/settings/", {"action": "add_member", "username": "nobody", "role": "editor"})
    assert response.status_code == 400 and "No account “nobody” that you can add directly" in response.content.decode()
    # the API's rule (one service): someone the owner shares no project with is invited, and told as "nobody" was
    UserFactory(username="stranger")
    response = owner.post("/settings/", {"action": "add_member", "username": "stranger", "role": "editor"})
    assert response.status_code == 400 and "No account “stranger” that you can add directly" in response.content.decode()
    assert not Membership.objects.filter(project=project, user__username="stranger").exists()
    owner.post("/settings/", {"action": "set_role", "member": membership.pk, "role": "editor"})
    membership.refresh_from_db()
    assert membership.role == "editor"
    mine = Membership.objects.get(project=project, user=owner.user)
    response = owner.post("/settings/", {"action": "set_role", "member": mine.pk, "role": "viewer"})
    assert response.status_code == 400 and "at least one owner" in response.content.decode()
    owner.post("/settings/", {"action": "remove_member", "member": membership.pk})
    assert not Membership.objects.filter(pk=membership.pk).exists()
    actions = list(AuditEvent.objects.filter(project=project).values_list("action", flat=True))
    assert actions == ["member_added", "member_role_changed", "member_removed"]


def test_an_api_key_is_shown_once_works_and_can_be_revoked(project, owner):
    response = owner.post("/settings/", {"action": "create_key", "name": "shop", "scopes": ["jobs:read"]}, follow=True)
    page = response.content.decode()
    raw = re.search(r'<code id="new-key">([^<]+)</code>', page).group(1)
    key = ApiKey.objects.get()
    assert authenticate_api_key(raw) == key and key.scopes == ["jobs:read"] and key.name == "shop"
    later = owner.get("/settings/").content.decode()
    assert raw not in later and f"atl_{key.prefix}_…" in later  # never shown again
    owner.post("/settings/", {"action": "revoke_key", "key": key.pk})
    assert authenticate_api_key(raw) is None


def test_an_api_key_with_every_scope_unticked_is_refused(project, owner):
    """The form ticks jobs:read and jobs:write; unticking both gave a key with both (no scope was read as "the
    default"), as ``"scopes": []`` did over the API."""
    response = owner.post("/settings/", {"action": "create_key", "name": "none"})
    assert response.status_code == 400 and "at least one scope" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_policy_and_thresholds_are_saved_and_checked(project, owner):
    form = {"action": "policy", "review_mode": "release_after_screening", "audit_sample_percent": "25", "lease_seconds": "120",
            "reject_reasons": "off_brand, wrong_price", "second_review_for_flagged": "on", "forbid_self_approval": "on",
            "review:violence": "0.4", "block:violence": "0.8"}
    assert owner.post("/settings/", form).status_code == 302
    policy = policy_for(project)
    assert (policy.review_mode, policy.audit_sample_percent, policy.lease_seconds, policy.reasons, policy.second_review_for_flagged,
            policy.mask_personal_data) == ("release_after_screening", 25, 120, ["off_brand", "wrong_price"], True, False)
    assert policy.thresholds["violence"] == {"review": 0.4, "block": 0.8}
    bad = owner.post("/settings/", {**form, "review:violence": "0.9", "block:violence": "0.2"})
    assert bad.status_code == 400 and "review &lt;= block" in bad.content.decode()
    assert owner.post("/settings/", {**form, "reject_reasons": "Bad Reason"}).status_code == 400
    assert AuditEvent.objects.filter(action="policy_changed").count() == 1


def test_blocklist_bulk_import(project, owner):
    response = owner.post("/settings/", {"action": "blocklist", "terms": "cheap knock-off\nfree money\n\n", "category": "spam"})
    assert response.status_code == 302
    assert set(BlocklistEntry.objects.values_list("pattern", "category")) == {("cheap knock-off", "spam"), ("free money", "spam")}
    page = owner.get("/settings/").content.decode()
    assert "Spam or off-brand: 2" in page
    owner.post("/settings/", {"action": "blocklist", "terms": "scam", "category": "custom", "replace": "on"})
    assert list(BlocklistEntry.objects.values_list("pattern", flat=True)) == ["scam"]
    assert AuditEvent.objects.filter(action="blocklist_imported").count() == 2


def test_audit_log_is_listed_with_export_links_and_the_page_reads_a_fixed_number_of_times(project, owner):
    def count():
        owner.get("/settings/")
        with CaptureQueriesContext(connection) as queries:
            assert owner.get("/settings/").status_code == 200
        return len(queries)

    owner.post("/settings/", {"action": "create_key", "name": "k0", "scopes": ["jobs:read"]})
    owner.post("/settings/", {"action": "blocklist", "terms": "t0", "category": "custom"})
    few = count()
    for i in range(1, 20):
        owner.post("/settings/", {"action": "create_key", "name": f"k{i}", "scopes": ["jobs:read"]})
        owner.post("/settings/", {"action": "blocklist", "terms": f"t{i}", "category": "spam" if i % 2 else "hate"})
        Membership.objects.create(project=project, user=UserFactory(), role="viewer")
    assert count() == few
    page = owner.get("/settings/").content.decode()
    assert f"/api/v1/audit/?export=csv&amp;project={project.slug}" in page and "API key created" in page
    export = owner.get(f"/api/v1/audit/?export=csv&project={project.slug}")
    assert export.status_code == 200 and b"api_key_created" in b"".join(export.streaming_content)


def test_plugins_are_switched_and_pinned_to_a_model_version(project, owner):
    from atelier_platform.catalog.models import ModelVersion, ProjectPlugin

    version = ModelVersion.objects.create(plugin_id="reverse_text", version="v2", model_dir="reverse/v2")
    page = owner.get("/settings/").content.decode()
    assert 'data-plugin="reverse_text"' in page and f'<option value="{version.pk}" >v2 · reverse/v2 · ' in page
    owner.post("/settings/", {"action": "plugin", "plugin": "reverse_text", "model_version": str(version.pk)})
    setting = ProjectPlugin.objects.get(project=project, plugin_id="reverse_text")
    assert (setting.enabled, setting.model_version) == (False, version)  # the box was left unticked
    owner.post("/settings/", {"action": "plugin", "plugin": "reverse_text", "enabled": "on", "model_version": ""})
    setting.refresh_from_db()
    assert (setting.enabled, setting.model_version) == (True, None)
    assert owner.post("/settings/", {"action": "plugin", "plugin": "nope", "enabled": "on"}).status_code == 400
    assert AuditEvent.objects.filter(action="plugin_configured").count() == 2


def test_webhook_endpoints_and_their_delivery_log_are_listed(project, owner):
    from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint

    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/atelier", secret="s",
                                              event_types=["job.succeeded"])
    WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id="e1", payload={},
                                   status="failed", attempts=3, max_attempts=3, last_status_code=500, last_error="HTTP 500")
    page = owner.get("/settings/").content.decode()
    assert "https://hooks.example.com/atelier" in page and "job.succeeded" in page and "3/3" in page and "HTTP 500" in page
    # a delivery to a job's own webhook shows the URL it went to
    WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.failed", event_id="e2", payload={}, max_attempts=3,
                                   target_url="https://hooks.example.com/atelier/order-42")
    assert 'title="https://hooks.example.com/atelier/order-42"' in owner.get("/settings/").content.decode()


@pytest.fixture
def allow_private_targets(monkeypatch):
    """The operator setting that lets webhook URLs reach private addresses (here: a receiver on loopback)."""
    from atelier_platform.config import get_config

    def allow(value: bool):
        monkeypatch.setenv("ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true" if value else "false")
        get_config.cache_clear()

    yield allow
    get_config.cache_clear()


def test_webhook_endpoints_are_created_with_the_secret_shown_once_edited_pinged_and_deleted(
        project, owner, allow_private_targets):
    from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint

    allow_private_targets(False)
    # a URL that reaches a private address is refused, inline on the URL field, and nothing is saved
    response = owner.post("/settings/", {"action": "webhook_create", "url": "http://127.0.0.1:9000/hook",
                                         "description": "local", "event_types": ["job.succeeded"], "enabled": "on"})
    page = response.content.decode()
    assert response.status_code == 400 and not WebhookEndpoint.objects.exists()
    assert re.search(r'data-field="url".*?class="field-error">[^<]*loopback', page, re.S)
    assert 'value="http://127.0.0.1:9000/hook"' in page and 'value="local"' in page  # the form keeps what was typed
    response = owner.post("/settings/", {"action": "webhook_create", "url": "https://93.184.216.34/hook",
                                         "event_types": ["job.nope"]})
    assert response.status_code == 400 and "Unknown event type" in response.content.decode()

    # the operator allows private targets: created, its secret shown on the next page only
    allow_private_targets(True)
    response = owner.post("/settings/", {"action": "webhook_create", "url": "http://127.0.0.1:9000/hook",
                                         "description": "local receiver", "event_types": ["job.succeeded", "job.failed"],
                                         "enabled": "on"}, follow=True)
    endpoint = WebhookEndpoint.objects.get()
    page = response.content.decode()
    assert (endpoint.url, endpoint.description, endpoint.event_types, endpoint.enabled) == (
        "http://127.0.0.1:9000/hook", "local receiver", ["job.succeeded", "job.failed"], True)
    assert f'<code id="new-webhook-secret">{endpoint.secret}</code>' in page
    assert endpoint.secret not in owner.get("/settings/").content.decode()

    # edited: url, description, event types, and switched off
    allow_private_targets(False)
    response = owner.post("/settings/", {"action": "webhook_update", "endpoint": str(endpoint.pk),
                                         "url": "http://10.0.0.5/hook", "description": "x"})
    assert response.status_code == 400 and "a private address" in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.url == "http://127.0.0.1:9000/hook"
    response = owner.post("/settings/", {"action": "webhook_update", "endpoint": str(endpoint.pk),
                                         "url": "https://93.184.216.34/atelier", "description": "public receiver",
                                         "event_types": ["output.review_changed"]}, follow=True)
    assert "Webhook endpoint saved." in response.content.decode()
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.description, endpoint.event_types, endpoint.enabled) == (
        "https://93.184.216.34/atelier", "public receiver", ["output.review_changed"], False)

    # a test ping becomes a delivery (sent by the delivery workers, disabled or not)
    response = owner.post("/settings/", {"action": "webhook_test", "endpoint": str(endpoint.pk)}, follow=True)
    assert "Test ping queued" in response.content.decode()
    assert WebhookDelivery.objects.get().event_type == "webhook.test"

    response = owner.post("/settings/", {"action": "webhook_delete", "endpoint": str(endpoint.pk)}, follow=True)
    assert "deleted" in response.content.decode() and not WebhookEndpoint.objects.exists()
    actions = list(AuditEvent.objects.filter(object_type__icontains="webhook").order_by("id").values_list("action", flat=True))
    assert actions == ["webhook_created", "webhook_updated", "webhook_deleted"]
    assert all(endpoint.secret not in str(e.before) + str(e.after) for e in AuditEvent.objects.all())


def test_webhook_forms_refuse_other_projects_endpoints(project, other_project, owner):
    from atelier_platform.webhooks.models import WebhookEndpoint

    theirs = WebhookEndpoint.objects.create(project=other_project, url="https://93.184.216.34/x", secret="s")
    for action in ("webhook_update", "webhook_delete", "webhook_test"):
        assert owner.post("/settings/", {"action": action, "endpoint": str(theirs.pk), "url": "https://93.184.216.34/y"}).status_code == 400
    assert owner.post("/settings/", {"action": "webhook_delete", "endpoint": "nope"}).status_code == 400
    assert WebhookEndpoint.objects.filter(pk=theirs.pk, url="https://93.184.216.34/x").exists()


def _audit_cells(page: str) -> list[tuple[str, str, str]]:
    """(action code, who, what) of each row of the settings page's audit log."""
    return re.findall(r'<tr data-action="([a-z_]+)"><td[^>]*>[^<]*</td><td title="[^"]*">([^<]*)</td><td>([^<]*)</td>', page)


def test_the_audit_log_says_who_by_name_and_what_in_words(project, other_project, owner, client_for):
    """Members by username, keys by name and prefix, the system by what it is; the exports keep the ids."""
    from atelier_platform.accounts.services import issue_api_key
    from atelier_platform.moderation import audit

    owner.post("/settings/", {"action": "create_key", "name": "shop", "scopes": ["jobs:read", "admin"]})
    shop = ApiKey.objects.get(name="shop")
    anonymous = issue_api_key(project, scopes=["admin"])
    issued = issue_api_key(project, scopes=["admin"], name="ci")
    assert client_for(issued.raw).patch("/api/v1/safety/policy/", {"thresholds": {"hate": {"review": 0.4}}}, format="json").status_code == 200
    foreign = issue_api_key(other_project, name="theirs")
    audit.record(project, "screening", "output_screened", project)
    audit.record(project, "system:webhooks", "webhook_disabled", project)
    audit.record(project, f"key:{foreign.api_key.prefix}", "policy_changed", project)  # not this project's key
    audit.record(project, f"key:{anonymous.api_key.prefix}", "blocklist_imported", project)
    audit.record(project, "user:987654", "member_removed", project)  # a user deleted since
    cells = _audit_cells(owner.get("/settings/").content.decode())
    assert cells[:6] == [
        ("member_removed", "user:987654", "member removed"),
        ("blocklist_imported", f"API key atl_{anonymous.api_key.prefix}_…", "blocklist imported"),
        ("policy_changed", f"key:{foreign.api_key.prefix}", "policy changed"),
        ("webhook_disabled", "Atelier (webhooks)", "webhook disabled"),
        ("output_screened", "automatic screening", "output screened"),
        ("policy_changed", f"API key ci (atl_{issued.api_key.prefix}_…)", "policy changed"),
    ]
    assert cells[6] == ("api_key_created", owner.user.username, "API key created")
    assert AuditEvent.objects.get(action="api_key_created").after["name"] == shop.name  # as the API records it

    owner.post("/language/", {"language": "zh-hans", "next": "/settings/"})
    cells = _audit_cells(owner.get("/settings/").content.decode())
    assert cells[3] == ("webhook_disabled", "Atelier（webhooks）", "已停用 Webhook")
    assert cells[4] == ("output_screened", "自动筛查", "输出已筛查")
    assert cells[6] == ("api_key_created", owner.user.username, "已创建 API 密钥")
    owner.post("/language/", {"language": "en", "next": "/settings/"})


def test_every_word_the_dashboard_shows_from_elsewhere_has_its_chinese():
    """A word added to texts.WORDS without its zh-Hans entry would show in English on a Chinese page."""
    from django.utils import translation

    from atelier_frontend.texts import WORDS

    with translation.override("en"):
        english = {key: str(word) for key, word in WORDS.items()}
    with translation.override("zh-hans"):
        untranslated = [key for key, word in WORDS.items() if str(word) == english[key]]
    assert untranslated == []


def test_a_page_showing_a_new_secret_is_never_stored_by_the_browser(project, owner, allow_private_targets):
    """The page that shows a new API key or webhook secret in clear could be kept in the browser's cache (and
    shown again by Back, or read from disk on a shared computer): it says no-store."""
    allow_private_targets(True)
    for form in ({"action": "create_key", "name": "shop", "scopes": ["jobs:read"]},
                 {"action": "webhook_create", "url": "http://127.0.0.1:9000/hook", "event_types": ["job.succeeded"],
                  "enabled": "on"}):
        response = owner.post("/settings/", form, follow=True)
        assert response.status_code == 200 and ('id="new-key"' in response.content.decode() or "whsec_" in response.content.decode())
        assert "no-store" in response["Cache-Control"], form["action"]


def test_the_policys_blocklists_and_allow_lists_refusals_are_in_the_pages_language(project, owner, client_for):
    """The platform refuses in English, which the API keeps; the settings page said it in English on Chinese pages."""
    from atelier_platform.accounts.services import issue_api_key

    from tests.frontend.test_dashboard_fixes import in_chinese

    policy = {"action": "policy", "review_mode": "review_before_release", "audit_sample_percent": "10",
              "lease_seconds": "600", "reject_reasons": "off_brand", "review:violence": "0.9", "block:violence": "0.2"}
    page = in_chinese(owner).post("/settings/", policy).content.decode()
    refusal = "暴力：须满足 0 ≤ 送审阈值 ≤ 拦截阈值 ≤ 1（现为送审 0.9，拦截 0.2）。"
    assert f'<tr class="threshold-error"><td colspan="3"><p class="field-error">{refusal}</p>' in page  # under its row
    assert f"<p>安全阈值: {refusal}</p>" in page and "need 0" not in page and "thresholds:" not in page
    page = owner.post("/settings/", {**policy, "block:violence": "0.95", "audit_sample_percent": "150"}).content.decode()
    assert '<p class="field-error">最多为 100。</p>' in page and "At most 100." not in page

    blocklist = {"action": "blocklist", "terms": "fine\n(a+)+$\n", "category": "spam", "is_regex": "on"}
    page = owner.post("/settings/", blocklist).content.decode()
    assert "第 2 行: 正则表达式“(a+)+$”嵌套了量词（如 (a+)+），可能让筛查卡住。" in page and "nests" not in page
    page = owner.post("/settings/", {**blocklist, "terms": "(unclosed"}).content.decode()
    assert "第 1 行: 正则表达式“(unclosed”无法编译：" in page
    page = owner.post("/settings/", {"action": "allowlist", "allow_entries": "x" * 501, "allow_kind": "term"}).content.decode()
    assert f"“{'x' * 40}…”超过 500 个字符。" in page and "longer than" not in page
    assert not BlocklistEntry.objects.exists()

    owner.post("/language/", {"language": "en", "next": "/"})
    page = owner.post("/settings/", policy).content.decode()
    assert "<p>Safety thresholds: Violence: need 0 &lt;= review &lt;= block &lt;= 1 (review 0.9, block 0.2).</p>" in page

    # the API keeps the platform's English, whatever language the caller's browser asks for
    api = client_for(issue_api_key(project, scopes=["admin"]).raw)
    answer = api.patch("/api/v1/safety/policy/", {"thresholds": {"violence": {"review": 0.9, "block": 0.2}}},
                       format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert answer.status_code == 400
    assert answer.json()["error"]["details"]["thresholds"] == ["violence: give review <= block, both between 0 and 1."]
    answer = api.post("/api/v1/safety/blocklist/", {"terms": [{"pattern": "(a+)+$", "is_regex": True}]}, format="json")
    assert "Regular expression '(a+)+$' nests quantifiers" in str(answer.json()["error"]["details"])


def _details(page: str, action: str) -> str:
    row = re.search(rf'<tr data-action="{action}">(.*?)</tr>', page, re.S)[1]
    return re.search(r'<span class="muted audit-details">([^<]*)</span>', row)[1]


@override_settings(TIME_ZONE="Asia/Shanghai")
def test_instants_in_the_audit_log_are_shown_in_the_pages_time_zone_and_exported_as_stored(project, owner):
    """An invitation's ``expires_at`` and a lease's ``lease_expires_at`` are stored in ISO 8601 (UTC, to the
    microsecond): the audit log showed them so ("expires_at: 2026-12-12T19:26:41.123456+00:00"). It shows them as
    its other times now, in the page's time zone; the exports keep what is stored."""
    owner.post("/settings/", {"action": "invite", "email": "alex@example.com", "role": "viewer"})
    invitation = Invitation.objects.get()
    stored = AuditEvent.objects.get(action="invitation_created").after["expires_at"]
    assert stored == invitation.expires_at.isoformat()
    shanghai, now = ZoneInfo("Asia/Shanghai"), timezone.now()
    local = invitation.expires_at.astimezone(shanghai)  # 8 hours ahead of UTC: another hour, maybe another day
    year = f", {local.year}" if local.year != now.astimezone(shanghai).year else ""
    far = (now + timedelta(days=400)).replace(microsecond=123456)  # always another year than this one
    audit.record(project, "screening", "lease_claimed", invitation, after={"lease_expires_at": far.isoformat()})
    far_local = far.astimezone(shanghai)

    page = owner.get("/settings/").content.decode()
    assert set(_details(page, "invitation_created").split(" · ")) == {  # PostgreSQL's jsonb orders keys its way
        "email: alex@example.com", "role: viewer", f"expires_at: {local:%b} {local.day}{year}, {local:%H:%M}"}
    assert _details(page, "lease_claimed") == f"lease_expires_at: {far_local:%b} {far_local.day}, {far_local.year}, " \
                                               f"{far_local:%H:%M}"
    assert stored not in page and far.isoformat() not in page
    chinese = owner.get("/settings/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert _details(chinese, "lease_claimed") == (
        f"lease_expires_at: {far_local.year}年{far_local.month}月{far_local.day}日 {far_local:%H:%M}")

    for export in ("csv", "jsonl"):
        body = b"".join(owner.get(f"/api/v1/audit/?export={export}&project={project.slug}").streaming_content).decode()
        assert stored in body and far.isoformat() in body  # as stored, to the microsecond


def test_a_value_that_only_looks_like_a_time_is_shown_as_it_is(project, owner):
    """Only ``…_at`` values are read as instants: a key named like a timestamp keeps the name it was given."""
    name = "2026-12-12T19:26:41+00:00"
    owner.post("/settings/", {"action": "create_key", "name": "shop", "scopes": ["jobs:read"]})
    key = ApiKey.objects.get()
    assert owner.post("/settings/", {"action": "rename_key", "key": key.pk, "new_name": name}).status_code == 302
    assert _details(owner.get("/settings/").content.decode(), "api_key_renamed").endswith(f"name: shop → {name}")
