"""The settings page's refusals on a Chinese page: the safety checks' own refusals of a blocklist term or an
allow-list entry, an API key's, a member's role, a webhook endpoint's URL and events, each said in the page's words
by its code, with its values (escaped); the API keeps the services' English and its codes."""

from __future__ import annotations

import re

import pytest
from django.utils import translation

from atelier_platform.accounts.models import ApiKey, Membership
from atelier_platform.accounts.services import issue_api_key
from atelier_platform.config import REPO_ROOT
from atelier_platform.moderation.checks import replace_safety_checks
from atelier_platform.moderation.models import AllowlistEntry, BlocklistEntry
from atelier_platform.webhooks.models import WebhookEndpoint
from tests.factories import UserFactory
from tests.frontend.test_dashboard_fixes import in_chinese
from tests.frontend.test_settings import allow_private_targets  # noqa: F401 - a fixture

PLATFORM = REPO_ROOT / "platform" / "atelier_platform"
#: Where the settings page's refusals are raised, with a code (``code="..."``, a webhook refusal's ``reason="..."``,
#: a webhook error class's ``code = "..."``)
REFUSING_MODULES = [PLATFORM / "accounts" / "services.py", PLATFORM / "accounts" / "members.py",
                    PLATFORM / "moderation" / "models.py",
                    PLATFORM / "moderation" / "policies.py", PLATFORM / "webhooks" / "targets.py",
                    PLATFORM / "webhooks" / "services.py", PLATFORM / "webhooks" / "delivery.py"]
CODE = re.compile(r'\b(?:code|reason)\s*=\s*"([a-z_]+)"|\bcoded\("([a-z_]+)"')
#: the built-in safety checks' codes, namespaced with the check's id
CHECK_CODE = re.compile(r'"((?:blocklist|allowlist)\.[a-z_]+)"')
#: Codes of those modules that never reach the settings page: the API's own for a webhook refusal (the page shows its
#: reason), a secret's rotation and a delivery's retry (the page offers neither), a role the caller may not give (only
#: owners see the page, and they hold every capability: a key with fewer meets it)
API_ONLY = {"webhook_error", "validation_error", "secret_rotation_limit", "delivery_not_retryable", "endpoint_disabled",
            "role_not_grantable"}


def refusal_codes() -> set[str]:
    codes = set()
    for path in REFUSING_MODULES:
        codes |= {code for found in CODE.findall(path.read_text(encoding="utf-8")) for code in found if code}
    for path in (REPO_ROOT / "plugins" / "atelier_plugins" / "safety").glob("*.py"):
        codes |= set(CHECK_CODE.findall(path.read_text(encoding="utf-8")))
    return codes - API_ONLY


def test_every_refusal_code_that_can_reach_the_settings_page_has_its_own_words_in_chinese():
    from atelier_platform.webhooks.targets import ADDRESS_PROBLEMS

    from atelier_frontend import settings_refusals

    codes = refusal_codes()
    assert {"thresholds_out_of_order", "regex_nests_quantifiers", "blocklist.regex_nests_quantifiers",
            "allowlist.not_an_email", "no_scopes", "unknown_role", "url_not_http", "address_not_public",
            "unknown_event_types", "webhook_limit_reached", "dns_lookup_timeout", "timed_out",
            "disabled_after_failures", "attempt_unfinished"} <= codes  # a guard for the guard
    assert sorted(codes - set(settings_refusals.MESSAGES)) == []
    assert sorted(set(ADDRESS_PROBLEMS) - set(settings_refusals.ADDRESS_PROBLEMS)) == []
    for words in [*(settings_refusals.MESSAGES[code] for code in codes), *settings_refusals.ADDRESS_PROBLEMS.values()]:
        with translation.override("en"):
            english = str(words)
        with translation.override("zh-hans"):
            assert str(words) != english, english


def errors_on(page: str) -> list[str]:
    return re.findall(r'<p class="field-error">([^<]*)</p>', page)


@pytest.mark.django_db
def test_the_safety_checks_refusals_of_a_term_or_an_entry_are_in_the_pages_language(project, signed_in):
    from atelier_plugins.safety.blocklist import BlocklistCheck

    replace_safety_checks([BlocklistCheck()])  # the platform's own refusals pass this term: the check refuses it
    owner = in_chinese(signed_in(project, "owner"))
    page = owner.post("/settings/", {"action": "blocklist", "terms": "fine\n(\\w+\\s?)*", "category": "spam",
                                     "is_regex": "on"}).content.decode()
    assert "第 2 行: 正则表达式“(\\w+\\s?)*”重复了一个本身含有可变重复的分组" in errors_on(page)[0]
    assert "nested quantifier" not in page
    page = owner.post("/settings/", {"action": "blocklist", "terms": "\u200b\u200b", "category": "spam"}).content.decode()
    assert errors_on(page) == ["第 1 行: 去掉不可见字符和空白后，屏蔽词“\u200b\u200b”为空：请输入可见的文字。"]
    for kind, value, words in (("term", "a", "“a”规范化后不足两个字母或数字：请输入一个词或短语。"),
                               ("email", "<b>support</b>", "“&lt;b&gt;support&lt;/b&gt;”不是电子邮件地址"),
                               ("phone", "555", "“555”不是有效的电话号码：请连同国家代码填写"),
                               ("url", "shop", "“shop”不是网址：请连同协议填写")):
        page = owner.post("/settings/", {"action": "allowlist", "allow_entries": value, "allow_kind": kind}).content.decode()
        assert words in page and "<b>support</b>" not in page and "give " not in page, kind
    assert not BlocklistEntry.objects.exists() and not AllowlistEntry.objects.exists()

    owner.post("/language/", {"language": "en", "next": "/"})
    page = owner.post("/settings/", {"action": "allowlist", "allow_entries": "555", "allow_kind": "phone"}).content.decode()
    assert "“555” is not a valid phone number: give it with its country code, like +1 800 555 0142." in page


@pytest.mark.django_db
def test_api_key_and_member_refusals_are_in_the_pages_language(project, signed_in):
    owner = in_chinese(signed_in(project, "owner"))
    page = owner.post("/settings/", {"action": "create_key", "name": "shop"}).content.decode()
    assert "<p>密钥至少需要一个权限范围：请勾选一个或多个。</p>" in page and "at least one scope" not in page
    page = owner.post("/settings/", {"action": "create_key", "name": "shop", "scopes": ["jobs:read", "<i>all</i>"]}).content.decode()
    assert "<p>未知的权限范围：&lt;i&gt;all&lt;/i&gt;。请从 jobs:read, jobs:write, " in page and "Unknown scope" not in page
    assert not ApiKey.objects.exists()
    UserFactory(username="newcomer")
    page = owner.post("/settings/", {"action": "add_member", "username": "newcomer", "role": "boss"}).content.decode()
    assert "<p>“boss”不是角色：请从 owner, editor, reviewer, viewer 中选择。</p>" in page and "Unknown role" not in page
    # someone the owner shares no project with is invited, as a username no account has (the same words)
    for name in ("newcomer", "nobody"):
        page = owner.post("/settings/", {"action": "add_member", "username": name, "role": "viewer"}).content.decode()
        assert f"<p>没有可直接添加的账户“{name}”：只有已与您同在某个项目中的人才能按用户名添加。请在下方通过电子邮件邀请对方；" \
               "对方接受后即可加入。</p>" in page and "add directly" not in page
    assert not Membership.objects.filter(user__username="newcomer").exists()


@pytest.mark.django_db
def test_webhook_endpoint_refusals_are_in_the_pages_language_under_their_field(project, signed_in, allow_private_targets):
    owner = in_chinese(signed_in(project, "owner"))
    allow_private_targets(False)
    form = {"action": "webhook_create", "url": "ftp://hooks.example/", "enabled": "on"}
    page = owner.post("/settings/", form).content.decode()
    url_field = page[page.index('data-field="url"'):page.index('data-field="description"')]
    assert 'aria-invalid="true"' in url_field and "只有 http:// 和 https:// 开头的 URL 才能接收 Webhook。" in url_field
    page = owner.post("/settings/", {**form, "url": "http://127.0.0.1:9000/hook"}).content.decode()
    assert ("主机“127.0.0.1”解析为 127.0.0.1，这是环回地址。Webhook 只调用公网地址。运维人员可以用 "
            "ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true 允许私有地址。") in page and "resolves to" not in page
    allow_private_targets(True)
    page = owner.post("/settings/", {**form, "url": "http://127.0.0.1:9000/hook",
                                     "event_types": ["job.succeeded", "<b>job.exploded</b>"]}).content.decode()
    events = page[page.index('data-field="event_types"'):]
    assert "未知的事件类型：&lt;b&gt;job.exploded&lt;/b&gt;。可订阅的有：job.succeeded, " in events
    assert "<b>job.exploded</b>" not in page and "Unknown event type" not in page
    assert not WebhookEndpoint.objects.exists()

    owner.post("/language/", {"language": "en", "next": "/"})
    page = owner.post("/settings/", form).content.decode()
    assert "Only http:// and https:// URLs can receive webhooks." in page


@pytest.mark.django_db
def test_the_api_keeps_the_services_english_and_codes_whatever_language_is_asked_for(project, client_for,
                                                                                     allow_private_targets):
    from atelier_plugins.safety.blocklist import BlocklistCheck

    replace_safety_checks([BlocklistCheck()])
    api = client_for(issue_api_key(project, scopes=["admin"]).raw)
    chinese = {"format": "json", "HTTP_ACCEPT_LANGUAGE": "zh-hans"}

    answer = api.post("/api/v1/safety/allowlist/", {"entries": [{"value": "555", "kind": "phone"}]}, **chinese).json()
    assert answer["error"]["code"] == "validation_error"
    assert answer["error"]["details"] == {"entries.0.value": [
        "'555' is not a valid phone number; give it with its country code, like +1 800 555 0142"]}
    answer = api.post("/api/v1/safety/blocklist/", {"terms": [{"pattern": "(\\w+\\s?)*", "is_regex": True}]},
                      **chinese).json()
    assert answer["error"]["code"] == "validation_error"
    assert answer["error"]["details"]["terms.0.pattern"][0].startswith(
        "regular expression '(\\\\w+\\\\s?)*' has a nested quantifier (a repeated group")
    # a check's English with a % in it stays as the check wrote it
    answer = api.post("/api/v1/safety/allowlist/", {"entries": [{"value": "100%", "kind": "url"}]}, **chinese).json()
    assert answer["error"]["details"] == {"entries.0.value": [
        "'100%' is not a web address; give it with its scheme, like https://shop.example/contact"]}

    answer = api.post("/api/v1/api-keys/", {"name": "x", "scopes": ["webhooks:manage"]}, **chinese)
    assert answer.status_code == 403 and answer.json()["error"] == {
        "code": "permission_denied", "message": "You cannot grant scopes you do not hold: webhooks:manage.",
        "details": None}

    hooks = client_for(issue_api_key(project, scopes=["webhooks:manage"]).raw)
    answer = hooks.post("/api/v1/webhooks/", {"url": "ftp://hooks.example/"}, **chinese)
    message = "Only http:// and https:// URLs can receive webhooks."
    assert answer.status_code == 400 and answer.json()["error"] == {
        "code": "validation_error", "message": message, "details": {"url": [message]}}
    allow_private_targets(False)
    answer = hooks.post("/api/v1/webhooks/", {"url": "http://127.0.0.1:9000/hook"}, **chinese)
    message = ("The host '127.0.0.1' resolves to 127.0.0.1, a loopback address. Webhooks call public addresses only "
               "(an operator can allow private ones with ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true).")
    assert answer.status_code == 400 and answer.json()["error"] == {
        "code": "validation_error", "message": message, "details": {"url": [message]}}
