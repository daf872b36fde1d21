"""A built-in plugin's own validation messages (its validators' refusals, not pydantic's types) in the page's
language on the dashboard: each has a stable error type and context that the frontend translates, while the
REST API keeps the plugin's English word for word. A plugin's message of a type not known here keeps its English."""

from __future__ import annotations

import pytest
from django.utils import translation
from pydantic import BaseModel, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job
from tests.frontend.test_dashboard_fixes import in_chinese, text_of


def refusals():
    """(model, data, location, the API's English, the dashboard's Chinese) of each refusal the built-in plugins'
    validators write themselves."""
    from atelier_plugins.chatbot.plugin import ChatbotInput, ChatbotParams
    from atelier_plugins.image.plugin import ImageInput
    from atelier_plugins.recommender_copy.schemas import RecommenderInput

    user = {"role": "user", "content": "hi"}
    return [
        (ImageInput, {"prompt": "   "}, ("prompt",),
         "Value error, the prompt must say what to draw; it is only whitespace",
         "提示词须写明要画什么，不能只有空白"),
        (ImageInput, {"prompt": "a lighthouse", "negative_prompt": "blurry", "guidance": 1}, ("guidance",),
         "Value error, a negative prompt needs guidance above 1 (guidance 1 or less ignores it); "
         "raise guidance or leave negative_prompt empty",
         "反向提示词（negative_prompt）需要大于 1 的引导系数（guidance），为 1 或更小时会被忽略：请调高 guidance，"
         "或清空 negative_prompt"),
        (ChatbotInput, {"messages": [user, {"role": "assistant", "content": "hello"}]}, ("messages",),
         "Value error, the last message must have role 'user' (the one to answer), not 'assistant'",
         "最后一条消息的角色须为 'user'（即要回答的那条），而不是 'assistant'"),
        (ChatbotInput, {"messages": [user], "conversation_id": "nope"}, ("conversation_id",),
         "Value error, conversation_id must be a UUID such as 3f2b9c1e-8d4a-4c1b-9e2f-6a7b8c9d0e1f",
         "conversation_id 须为 UUID，例如 3f2b9c1e-8d4a-4c1b-9e2f-6a7b8c9d0e1f"),
        (ChatbotParams, {"stop": ["END", "x" * 40]}, ("stop",),
         "Value error, each stop string must be 1 to 32 characters long",
         "每个停止字符串（stop）须为 1 到 32 个字符"),
        (RecommenderInput, {"items": [{"id": " ", "title": "Linen shirt"}]}, ("items", 0, "id"),
         "Value error, must not be blank",
         "不能只有空白"),
        (RecommenderInput, {"items": [{"id": "a1", "title": "Linen shirt"}, {"id": "a1", "title": "Straw hat"},
                                      {"id": "b2", "title": "Sandals"}, {"id": "b2", "title": "Scarf"}]}, (),
         "Value error, item ids must be unique; repeated: a1, b2",
         "商品 id 不能重复；重复的有：a1, b2"),
    ]


def the_error(model, data, location) -> dict:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(data)
    [error] = [e for e in refused.value.errors(include_url=False) if e["loc"] == location]
    return error


@pytest.mark.parametrize("case", range(7), ids=["image-prompt-blank", "image-negative-prompt-guidance",
                                               "chatbot-last-message", "chatbot-conversation-id", "chatbot-stop",
                                               "recommender-blank", "recommender-duplicate-ids"])
def test_a_built_in_plugins_own_refusal_reads_in_chinese_and_keeps_its_english(case):
    from atelier_frontend.field_errors import in_page_language

    model, data, location, english, chinese = refusals()[case]
    error = the_error(model, data, location)
    assert error["msg"] == english  # what the API says, as before
    assert error["type"] != "value_error"  # a stable type of its own, for the dashboard to know it by
    with translation.override("en"):
        assert in_page_language(error) == english
    with translation.override("zh-hans"):
        assert in_page_language(error) == chinese


def test_a_refusal_of_a_type_not_known_here_keeps_the_plugins_english():
    """A third-party plugin's own words: a plain ValueError, or a custom type the dashboard has no words for."""
    from atelier_frontend.field_errors import in_page_language

    class Plain(BaseModel):
        name: str

        @field_validator("name")
        @classmethod
        def _no_x(cls, value: str) -> str:
            if "x" in value:
                raise ValueError("no x, please")
            if "y" in value:
                raise PydanticCustomError("acme.no_y", "no {letter}, please", {"letter": "y"})
            return value

    for name, english in (("x", "Value error, no x, please"), ("y", "no y, please")):
        error = the_error(Plain, {"name": name}, ("name",))
        with translation.override("zh-hans"):
            assert in_page_language(error) == english


@pytest.mark.django_db
def test_a_chinese_job_form_shows_a_plugins_own_refusals_in_chinese_and_the_api_keeps_english(
        project, signed_in, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from atelier_plugins.image.plugin import ImagePlugin
    from atelier_platform.accounts.services import issue_api_key

    for plugin in (ChatbotPlugin, ImagePlugin):
        empty_plugin_registry.register(plugin)
        set_plugin_enabled(project, plugin.manifest.id, True)
    editor = in_chinese(signed_in(project, "editor"))
    response = editor.post("/create/image/", {"input.prompt": "a lighthouse", "input.negative_prompt": "blurry",
                                              "input.guidance": "1", "priority": "5"})
    page = text_of(response)
    assert response.status_code == 400 and not Job.objects.exists()
    guidance = page[page.index('data-field="input.guidance"'):]
    guidance = guidance[:guidance.index('<div class="field', 1)]
    assert "反向提示词（negative_prompt）需要大于 1 的引导系数" in guidance
    assert "negative prompt needs guidance" not in page

    response = editor.post("/create/chatbot/", {"input.messages.user": "hi", "input.conversation_id": "nope",
                                                "input.use_knowledge": "on", "input.top_k": "3", "priority": "5"})
    assert response.status_code == 400 and "conversation_id 须为 UUID" in text_of(response)
    assert "must be a UUID" not in text_of(response)

    key = issue_api_key(project, scopes=["jobs:write"])
    image_input = {"prompt": "a lighthouse", "negative_prompt": "blurry", "guidance": 1}
    answer = editor.post("/api/v1/jobs/", {"plugin": "image", "input": image_input},
                         content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key.raw}",
                         HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert answer.status_code == 400
    assert answer.json()["error"]["details"] == {"input.guidance": [
        "Value error, a negative prompt needs guidance above 1 (guidance 1 or less ignores it); "
        "raise guidance or leave negative_prompt empty"]}
