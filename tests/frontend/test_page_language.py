"""A page in the person's language throughout: a job form's field errors (pydantic's, which the API keeps in
English), how long ago something happened, counts with their digit groups, and a heading on every page."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone, translation
from pydantic import ValidationError

from atelier_platform.jobs.models import Job
from atelier_platform.moderation.models import ReviewItem
from tests.frontend.test_dashboard_fixes import in_chinese, text_of

pytestmark = pytest.mark.django_db


def field_errors(page: str, field: str) -> str:
    """The text of a field's block on the create form (its label, widget and errors)."""
    start = page.index(f'data-field="{field}"')
    return page[start:page.index('<div class="field', start + 1)]


def test_a_chinese_job_forms_field_errors_are_in_chinese_with_their_limits_and_the_api_keeps_english(
        project, signed_in):
    from atelier_platform.accounts.services import issue_api_key

    editor = in_chinese(signed_in(project, "editor"))
    response = editor.post("/create/reverse_text/", {"input.text": "", "input.copies": "9", "input.sleep_s": "-1",
                                                     "priority": "5"})
    page = text_of(response)
    assert response.status_code == 400 and not Job.objects.exists()
    assert "至少需要 1 个字符" in field_errors(page, "input.text")
    assert "应小于或等于 5" in field_errors(page, "input.copies")
    assert "应大于或等于 0" in field_errors(page, "input.sleep_s")
    assert "should" not in page  # "String should have at least 1 character", "Input should be less than ..."
    # what the form reads before the plugin does, in Chinese too
    page = text_of(editor.post("/create/reverse_text/", {"input.text": "x", "input.copies": "2.5", "priority": "5"}))
    assert "请输入整数。" in field_errors(page, "input.copies") and "Enter a whole number." not in page

    key = issue_api_key(project, scopes=["jobs:write"])
    answer = editor.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "", "copies": 9}},
                         content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key.raw}")
    assert answer.status_code == 400
    assert answer.json()["error"]["details"] == {"input.text": ["String should have at least 1 character"],
                                                 "input.copies": ["Input should be less than or equal to 5"]}


def test_a_refused_chat_message_says_why_in_chinese(chat_project, signed_in):
    response = in_chinese(signed_in(chat_project, "editor")).post("/chat/", {"message": "Can I return these shoes? " * 80})
    page = text_of(response)
    assert response.status_code == 400 and "这条消息无法按原样发送：" in page and "最多 2000 个字符" in page
    assert "does not match" not in page and "should" not in page


def built_in_plugin_errors() -> list[dict]:
    """The errors the built-in plugins' input and params models give for wrong values of each field."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from atelier_plugins.image.plugin import ImagePlugin
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    wrong = [None, "", "x", "abc" * 5000, "nan", "2", 1.5, -1e12, 1e12, 0, True, [], [{}], [""], [1] * 300, {}, "x" * 100,
             {"": "y" * 300}, float("inf"), [{"role": "bogus", "content": ""}],
             [{"id": "", "title": "t" * 300, "price": "inf", "currency": "usd", "tags": [""] * 30, "attributes": "x", "z": 1}]]
    errors = {}
    for plugin in (ChatbotPlugin, ImagePlugin, RecommenderCopyPlugin):
        for model in (plugin.Input, plugin.Params):
            for name in [*model.model_json_schema()["properties"], "not_a_field"]:
                for value in wrong:
                    try:
                        model.model_validate({name: value})
                    except ValidationError as exc:
                        for error in exc.errors(include_url=False):
                            errors.setdefault((error["type"], error["msg"]), error)
    return list(errors.values())


def test_every_error_the_built_in_plugins_give_reads_in_chinese_and_as_pydantic_wrote_it_in_english():
    from atelier_frontend.field_errors import in_page_language

    errors = built_in_plugin_errors()
    assert {"missing", "extra_forbidden", "string_too_short", "string_too_long", "too_short", "too_long", "less_than_equal",
            "greater_than", "int_parsing", "float_parsing", "literal_error", "string_pattern_mismatch",
            "chatbot.stop_string_length"} <= {e["type"] for e in errors}  # a guard for the guard
    untranslated = []
    for error in errors:
        with translation.override("en"):
            assert in_page_language(error) == error["msg"]
        with translation.override("zh-hans"):
            shown = in_page_language(error)
        # a plugin's own refusal too (atelier_sdk.input_error, not a plain ValueError's "value_error")
        if shown == error["msg"] or "should" in shown:
            untranslated.append(f"{error['type']}: {error['msg']}")
    assert untranslated == []
    with translation.override("zh-hans"):
        assert in_page_language({"type": "literal_error", "ctx": {"expected": "'friendly', 'premium' or 'concise'"},
                                 "msg": "Input should be 'friendly', 'premium' or 'concise'"}) == \
            "应为 'friendly'、'premium'或'concise'"
        assert in_page_language({"type": "string_too_long", "ctx": {"max_length": 2000},
                                 "msg": "String should have at most 2000 characters"}) == "最多 2000 个字符"
        # a type not known here keeps pydantic's English
        assert in_page_language({"type": "uuid_parsing", "ctx": {"error": "x"}, "msg": "Input should be a valid UUID"}) == \
            "Input should be a valid UUID"


def test_recent_prompts_and_the_review_panel_say_just_now_not_0_minutes(project, signed_in, submit, run_job):
    editor = signed_in(project, "editor")
    earlier = submit(project, text="an earlier prompt", user=editor.user)
    Job.objects.filter(pk=earlier.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=5, seconds=3))
    latest = submit(project, text="a prompt of a moment ago", user=editor.user)
    run_job(latest)
    page = text_of(editor.get("/create/reverse_text/")).replace("\xa0", " ")  # timesince's "5\xa0minutes"
    assert "just now ·" in page and "5 minutes ago ·" in page and "0 minutes" not in page
    page = text_of(in_chinese(editor).get("/create/reverse_text/")).replace("\xa0", " ")
    assert "刚刚 ·" in page and "5 分钟前 ·" in page and "0 分钟" not in page

    item = ReviewItem.objects.get(output__job=latest)
    panel = text_of(in_chinese(signed_in(project, "reviewer")).get(f"/review/items/{item.pk}/")).replace("\xa0", " ")
    assert "· 刚刚</span>" in panel and "0 分钟" not in panel


def test_the_usage_pages_counts_have_their_digit_groups(project, signed_in, monkeypatch):
    from atelier_frontend import usage

    real = usage.summary
    monkeypatch.setattr(usage, "summary", lambda project: {
        **real(project), "now": {"queued": 12345, "running": 1200, "review_open": 7}})
    viewer = signed_in(project, "viewer")
    page = text_of(viewer.get("/usage/"))
    assert '<strong id="now-queued">12,345</strong>' in page and '<strong id="now-running">1,200</strong>' in page
    assert '<strong id="now-review">7</strong>' in page
    assert '<strong id="now-queued">12,345</strong>' in text_of(in_chinese(viewer).get("/usage/"))


def test_every_page_has_one_main_heading(project, signed_in, submit):
    """Screen readers go from heading to heading; the chat page had none."""
    owner = signed_in(project, "owner")
    job = submit(project, text="a job to look at", user=owner.user)
    for path in ("/create/", "/create/reverse_text/", "/jobs/", f"/jobs/{job.pk}/", "/chat/", "/review/", "/usage/",
                 "/settings/", "/workers/"):
        assert text_of(owner.get(path)).count("<h1") == 1, path
    assert "<h1>对话</h1>" in text_of(in_chinese(owner).get("/chat/"))
