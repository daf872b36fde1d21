"""What the platform and its plugins know by a code, in words on the page: reject reasons, safety categories and
the built-in plugins' names and fields, translated on Chinese pages; the codes themselves unchanged for the API."""

from __future__ import annotations

import pytest
from django.utils import translation

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.moderation import review
from atelier_platform.moderation.checks import replace_safety_checks
from atelier_platform.moderation.models import DEFAULT_REJECT_REASONS, ReviewItem
from tests.frontend.test_dashboard_fixes import in_chinese, text_of
from tests.support.safety import WordCheck


def in_both_languages(label) -> tuple[str, str]:
    with translation.override("en"):
        english = label()
    with translation.override("zh-hans"):
        return english, label()


def test_every_default_reject_reason_and_safety_category_has_words_in_both_languages():
    from atelier_sdk.safety import Category

    from atelier_frontend.labels import category_label, reject_reason_label

    for reason in DEFAULT_REJECT_REASONS:
        english, chinese = in_both_languages(lambda: reject_reason_label(reason))
        assert english != reason and chinese != english, reason
    for category in Category:
        english, chinese = in_both_languages(lambda: category_label(category.value))
        assert english != category.value and chinese != english, category
    # a project's own reason and another check's category: as written
    assert in_both_languages(lambda: reject_reason_label("wrong_price")) == ("wrong_price", "wrong_price")
    assert in_both_languages(lambda: category_label("acme/weapons")) == ("acme/weapons", "acme/weapons")


def built_in_plugin_words() -> list[str]:
    """What the dashboard shows of the built-in plugins: names, descriptions, field titles (input, params and
    output) and the input and params fields' descriptions."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from atelier_plugins.image.plugin import ImagePlugin
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    from atelier_frontend.labels import field_title

    words = []
    for plugin in (ChatbotPlugin, ImagePlugin, RecommenderCopyPlugin):
        words += [plugin.manifest.name, plugin.manifest.description]
        for schema, described in ((plugin.input_schema(), True), (plugin.params_schema(), True),
                                  (plugin.output_schema(), False)):
            for name, prop in schema.get("properties", {}).items():
                words.append(field_title(name, prop, schema))
                if described and prop.get("description"):
                    words.append(prop["description"])
    return words


def test_every_word_the_built_in_plugins_show_is_translated():
    from atelier_frontend.labels import plugin_words

    words = built_in_plugin_words()
    assert "Max New Tokens" in words and "Negative Prompt" in words and "Profile" in words  # a guard for the guard
    with translation.override("zh-hans"):
        assert [word for word in words if plugin_words(word) == word] == []
    with translation.override("en"):
        assert [word for word in words if plugin_words(word) != word] == []


@pytest.mark.django_db
def test_a_chinese_job_page_and_review_panel_name_categories_reasons_and_fields_in_chinese(
        project, signed_in, submit, run_job):
    replace_safety_checks([WordCheck()])
    editor = signed_in(project, "editor")
    job = submit(project, text="enilredrob text", user=editor.user)  # reversed: "txet borderline"
    run_job(job)
    item = ReviewItem.objects.get(output__job=job)
    reviewer = review.Reviewer(actor="user:999")
    review.decide(review.claim(item, reviewer), reviewer, action="reject", reason="off_brand")

    page = text_of(in_chinese(editor).get(f"/jobs/{job.pk}/"))
    assert '<span class="flag-chip" data-category="harassment">骚扰</span>' in page
    assert 'title="骚扰" data-category="harassment">borderline</mark>' not in page  # rejected: the content is withheld
    assert '<span data-reason="off_brand">不符合品牌调性</span>' in page and "— off_brand" not in page

    panel = text_of(in_chinese(signed_in(project, "reviewer")).get(f"/review/items/{item.pk}/"))
    assert '<span class="flag-chip" data-category="harassment">骚扰</span>' in panel
    assert '<mark class="flag" title="骚扰" data-category="harassment">borderline</mark>' in panel
    assert '<span data-reason="off_brand">不符合品牌调性</span>' in panel


@pytest.mark.django_db
def test_the_reject_picker_names_the_default_reasons_in_chinese_and_sends_their_codes(project, signed_in):
    page = text_of(in_chinese(signed_in(project, "reviewer")).get("/review/"))
    assert 'data-reason="off_brand" data-label="不符合品牌调性"><kbd>2</kbd> 不符合品牌调性</button>' in page
    assert 'data-reason="other" data-label="其他原因"><kbd>5</kbd> 其他原因</button>' in page


@pytest.mark.django_db
def test_the_settings_name_the_categories_in_chinese_and_keep_their_codes_as_values(project, signed_in):
    owner = in_chinese(signed_in(project, "owner"))
    owner.post("/settings/", {"action": "blocklist", "terms": "knock-off", "category": "spam"})
    page = text_of(owner.get("/settings/"))
    assert '<td>自残 <code class="muted small">self-harm</code></td>' in page
    assert 'name="review:self-harm"' in page and 'aria-label="自残: ' in page
    assert '<option value="spam" >垃圾内容或不符合品牌</option>' in page
    assert '<span class="chip" title="spam">垃圾内容或不符合品牌: 1</span>' in page


@pytest.mark.django_db
def test_a_built_in_plugins_form_and_job_page_name_its_fields_in_chinese(project, signed_in, submit,
                                                                         empty_plugin_registry):
    from atelier_plugins.image.plugin import ImagePlugin

    empty_plugin_registry.register(ImagePlugin)
    set_plugin_enabled(project, "image", True)
    editor = in_chinese(signed_in(project, "editor"))
    page = text_of(editor.get("/create/image/"))
    assert "<h1>文生图</h1>" in page and '<label for="f-input-negative_prompt">反向提示词</label>' in page
    assert '<p class="help">去噪步数：越多越慢，通常也越精细。</p>' in page and "Negative Prompt" not in page
    assert 'name="input.negative_prompt"' in page  # the field's name is the plugin's, as the API's
    assert "文生图" in text_of(editor.get("/create/"))

    job = submit(project, user=editor.user)  # a job of a plugin that gives no titles: its keys as they are
    page = text_of(editor.get(f"/jobs/{job.pk}/"))
    assert '<dt title="text">Text</dt>' in page  # pydantic's title of a field without one

    from atelier_platform.jobs.models import Job

    Job.objects.filter(pk=job.pk).update(plugin_id="image", input={"prompt": "a lighthouse", "steps": 4})
    page = text_of(editor.get(f"/jobs/{job.pk}/"))
    assert '<dt title="prompt">提示词</dt>' in page and '<dt title="steps">步数</dt>' in page

    Job.objects.filter(pk=job.pk).update(plugin_id="uninstalled_plugin")
    assert "<dt>prompt</dt>" in text_of(editor.get(f"/jobs/{job.pk}/"))


@pytest.mark.django_db
def test_a_blocked_chat_message_names_the_categories_in_chinese(chat_project, signed_in):
    replace_safety_checks([WordCheck()])
    response = in_chinese(signed_in(chat_project, "editor")).post("/chat/", {"message": "a violent plan"})
    page = text_of(response)
    assert response.status_code == 400 and "这条消息被项目的安全策略拦截（暴力）：请改写后重新发送。" in page
    assert "violence" not in page and "blocked by the project" not in page
    assert ">a violent plan</textarea>" in page  # back in the box, to reword


def built_in_plugin_choices() -> list[tuple[str, str, object]]:
    """(plugin, place, value) of every fixed choice (enum, const) in the built-in plugins' input, params and output."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from atelier_plugins.image.plugin import ImagePlugin
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    from atelier_frontend.labels import fixed_choices

    return [(plugin.manifest.id, f"{name}@{place}", value)
            for plugin in (ChatbotPlugin, ImagePlugin, RecommenderCopyPlugin)
            for schema in (plugin.input_schema(), plugin.params_schema(), plugin.output_schema())
            for place, (name, values) in fixed_choices(schema).items() for value in values]


def test_every_fixed_choice_of_the_built_in_plugins_has_words_in_both_languages():
    from atelier_frontend.labels import choice_label

    choices = built_in_plugin_choices()
    assert ("recommender_copy", "tone@tone", "friendly") in choices and ("chatbot", "role@messages.*.role", "user") in choices
    assert ("recommender_copy", "source@recommendations.*.copy.*.source", "template") in choices  # a guard for the guard
    unnamed = []
    for plugin, place, value in choices:
        name = place.split("@")[0]
        english, chinese = in_both_languages(lambda: choice_label(name, value))
        if chinese == english or (english == value and value != "AI-generated"):  # that one is words already
            unnamed.append((plugin, place, value, english, chinese))
    assert unnamed == []
    # another plugin's choice, or a value not known here: as it is, in both languages
    assert in_both_languages(lambda: choice_label("tone", "grumpy")) == ("grumpy", "grumpy")
    assert in_both_languages(lambda: choice_label("fail", "none")) == ("none", "none")


@pytest.mark.django_db
def test_a_built_in_plugins_choices_are_named_in_the_form_and_on_the_job_page_and_sent_as_their_values(
        project, signed_in, sent_messages, empty_plugin_registry):
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    from atelier_platform.jobs.models import Job, Output

    empty_plugin_registry.register(RecommenderCopyPlugin)
    set_plugin_enabled(project, "recommender_copy", True)
    editor = signed_in(project, "editor")
    page = text_of(editor.get("/create/recommender_copy/"))
    assert '<option value="friendly" selected>Friendly</option><option value="premium" >Premium</option>' in page
    assert '<option value="en" selected>English</option><option value="zh" >Chinese</option>' in page
    page = text_of(in_chinese(editor).get("/create/recommender_copy/"))
    assert '<option value="friendly" selected>亲切</option><option value="premium" >高端</option>' in page
    assert '<option value="en" selected>英文</option><option value="zh" >中文</option>' in page

    response = editor.post("/create/recommender_copy/", {
        "input.items": '[{"id": "lamp", "title": "Desk lamp"}]', "input.profile": "{}", "input.count": "1",
        "input.variants": "1", "input.tone": "playful", "input.language": "zh", "priority": "5"})
    job = Job.objects.get()
    assert response.status_code == 302 and (job.input["tone"], job.input["language"]) == ("playful", "zh")

    Job.objects.filter(pk=job.pk).update(status="succeeded")
    Output.objects.create(job=job, index=0, content={
        "recommendations": [{"rank": 1, "item_id": "lamp", "title": "Desk lamp", "score": 0.5, "copy": [
            {"text": "A lamp to read by.", "repaired": True, "issues_fixed": [], "source": "template", "attempts": 3}]}],
        "profile_summary": ""})
    page = text_of(editor.get(f"/jobs/{job.pk}/"))
    assert '<span class="v-choice" data-path="input.tone" data-value="playful" title="playful">俏皮</span>' in page
    assert '<span class="v-choice" data-path="input.language" data-value="zh" title="zh">中文</span>' in page
    assert '<span class="chip" title="template">根据商品信息生成</span>' in page
    editor.post("/language/", {"language": "en", "next": "/"})
    page = text_of(editor.get(f"/jobs/{job.pk}/"))
    assert 'data-value="playful" title="playful">Playful</span>' in page and 'title="zh">Chinese</span>' in page
    assert '<span class="chip" title="template">Built from the item&#x27;s facts</span>' in page


@pytest.mark.django_db
def test_a_chat_jobs_roles_and_finish_reason_are_named_in_the_review_panel(project, signed_in, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    from atelier_platform.jobs.models import Job, Output

    empty_plugin_registry.register(ChatbotPlugin)
    job = Job.objects.create(project=project, plugin_id="chatbot", status="succeeded", seed=1, input={"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is my parcel?"}]}, params={})
    output = Output.objects.create(job=job, index=0, content={
        "reply": "On its way.", "sources": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4},
        "finish_reason": "length"})
    item = ReviewItem.objects.create(project=project, output=output)
    panel = text_of(in_chinese(signed_in(project, "reviewer")).get(f"/review/items/{item.pk}/"))
    assert 'data-path="input.messages.0.role" data-value="system" title="system">系统</span>' in panel
    assert 'data-path="input.messages.1.role" data-value="user" title="user">用户</span>' in panel
    assert 'data-path="content.finish_reason" data-value="length" title="length">达到长度上限被截断</span>' in panel
    assert '<span class="v-text" data-path="content.reply">On its way.</span>' in panel  # written text stays text
