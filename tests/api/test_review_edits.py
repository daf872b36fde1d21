"""An "edit, then approve" decision changes the content a person would edit (a reply, the copy of an ad), never
what the plugin recorded about the run: token counts (which the usage report bills), ids, ranks and scores,
sources, seeds and hashes. Through the API, as a reviewer's tool or the dashboard sends it."""

from __future__ import annotations

import copy

import pytest
from atelier_plugins.chatbot.plugin import ChatbotPlugin
from atelier_plugins.image.plugin import ImagePlugin
from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin
from atelier_sdk import Manifest, Modality, OutputItem, Plugin, ResourceClass
from pydantic import BaseModel

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.moderation.models import ReviewDecision, ReviewItem
from tests.api.helpers import assert_envelope, build_job, build_output

pytestmark = pytest.mark.django_db

CHAT = {
    "reply": "Returns are free within 30 days.",
    "sources": [{"source_id": "returns.md", "chunk_id": "returns.md#0", "title": "Returns", "score": 0.81}],
    "usage": {"prompt_tokens": 120, "completion_tokens": 9},
    "finish_reason": "stop",
    "conversation_id": None,
}

COPY = {
    "recommendations": [
        {"rank": 1, "item_id": "lamp-1", "title": "Oak lamp", "score": 0.74, "copy": [
            {"text": "Warm light for long evenings.", "repaired": False, "issues_fixed": [], "source": "model", "attempts": 1},
            {"text": "An oak lamp that glows.", "repaired": True, "issues_fixed": ["banned word"], "source": "edited",
             "attempts": 2}]},
        {"rank": 2, "item_id": "rug-7", "title": "Wool rug", "score": 0.52, "copy": [
            {"text": "Soft underfoot.", "repaired": False, "issues_fixed": [], "source": "model", "attempts": 1}]},
    ],
    "profile_summary": "Interests: \u201creading at night\u201d.",
}

IMAGE = {
    "index": 0, "width": 64, "height": 64, "seed": 1234, "steps": 20, "guidance": 7.5,
    "prompt_sha256": "a" * 64, "negative_prompt_sha256": None, "model_version": "demo-image-digits@1a2b3c",
    "prompt_truncated": None, "negative_prompt_truncated": None, "label": "AI-generated", "model_safety_flagged": None,
}


@pytest.fixture
def built_in_plugins(project, empty_plugin_registry):
    for plugin in (ChatbotPlugin, RecommenderCopyPlugin, ImagePlugin):
        empty_plugin_registry.register(plugin)
        set_plugin_enabled(project, plugin.manifest.id, True)


@pytest.fixture
def claimed(project, owner_api, built_in_plugins):
    """A review item for an output of ``plugin`` holding ``content``, claimed by the owner (a reviewer)."""

    def make(plugin: str, content: dict) -> ReviewItem:
        output = build_output(build_job(project, plugin=plugin), content=copy.deepcopy(content))
        item = ReviewItem.objects.create(output=output, project=project, priority=5)
        assert owner_api.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
        return item

    return make


def edit(client, item: ReviewItem, content: dict):
    return client.post(f"/api/v1/reviews/{item.pk}/decision/", {"action": "edit", "content": content}, format="json")


def assert_nothing_changed(item: ReviewItem, content: dict) -> None:
    item.refresh_from_db()
    assert item.state == "open" and not ReviewDecision.objects.filter(item=item).exists()
    assert (item.output.__class__.objects.get(pk=item.output_id).content, item.output.review_state) == (content, "pending")


class TestChatbot:
    def test_an_edit_of_the_token_counts_is_refused_and_the_usage_report_keeps_the_plugins(self, claimed, owner_api):
        item = claimed("chatbot", CHAT)
        inflated = {**CHAT, "reply": "Free returns, 30 days.", "usage": {"prompt_tokens": 900_000_000_000, "completion_tokens": 9}}
        error = assert_envelope(edit(owner_api, item, inflated), 400, "field_not_editable")
        assert error["details"] == {"content.usage.prompt_tokens": [error["details"]["content.usage.prompt_tokens"][0]]}
        assert "content.usage.prompt_tokens" in error["message"] and "reply" in error["message"]
        assert_nothing_changed(item, CHAT)
        # the bill: what the plugin counted, before and after an edit of the reply
        assert owner_api.get("/api/v1/usage/").json()["totals"]["tokens"] == {"prompt": 120, "completion": 9, "total": 129}
        fixed = edit(owner_api, item, {**CHAT, "reply": "Free returns, 30 days."})
        assert fixed.status_code == 200, fixed.content
        assert fixed.json()["output"]["content"] == {**CHAT, "reply": "Free returns, 30 days."}
        assert fixed.json()["output"]["review_state"] == "approved"
        assert owner_api.get("/api/v1/usage/").json()["totals"]["tokens"] == {"prompt": 120, "completion": 9, "total": 129}

    def test_every_recorded_field_is_named_not_only_the_first(self, claimed, owner_api):
        item = claimed("chatbot", CHAT)
        # what the schema refuses is still a validation error, and comes first
        error = assert_envelope(edit(owner_api, item, {**CHAT, "usage": {"prompt_tokens": "many"}}), 400, "validation_error")
        assert "content.usage.prompt_tokens" in error["details"]
        changed = {**CHAT, "conversation_id": "x", "finish_reason": "length",
                   "sources": [{**CHAT["sources"][0], "title": "Warranty"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
        error = assert_envelope(edit(owner_api, item, changed), 400, "field_not_editable")
        assert list(error["details"]) == ["content.sources.0.title", "content.usage.prompt_tokens",
                                          "content.usage.completion_tokens", "content.finish_reason", "content.conversation_id"]
        assert_nothing_changed(item, CHAT)

    def test_a_source_added_or_dropped_is_refused(self, claimed, owner_api):
        item = claimed("chatbot", CHAT)
        error = assert_envelope(edit(owner_api, item, {**CHAT, "sources": []}), 400, "field_not_editable")
        assert list(error["details"]) == ["content.sources"]

    def test_a_field_left_out_is_not_taken_for_its_default(self, claimed, owner_api):
        """The whole output as output.content shows it: a conversation id dropped would detach the reply."""
        content = {**CHAT, "conversation_id": "3f2b9c1e-8d4a-4c1b-9e2f-6a7b8c9d0e1f"}
        item = claimed("chatbot", content)
        without = {key: value for key, value in content.items() if key != "conversation_id"}
        error = assert_envelope(edit(owner_api, item, {**without, "reply": "Hi"}), 400, "field_not_editable")
        assert list(error["details"]) == ["content.conversation_id"]


class TestRecommenderCopy:
    def test_the_copy_may_be_rewritten_and_nothing_else_with_it(self, claimed, owner_api):
        item = claimed("recommender_copy", COPY)
        edited = copy.deepcopy(COPY)
        edited["recommendations"][0]["copy"][1]["text"] = "An oak lamp with a soft glow."
        edited["recommendations"][1]["copy"][0]["text"] = "Soft under bare feet."
        edited["recommendations"][1]["copy"][0]["attempts"] = 0  # as if the model had not written it
        error = assert_envelope(edit(owner_api, item, edited), 400, "field_not_editable")
        assert list(error["details"]) == ["content.recommendations.1.copy.0.attempts"]
        edited["recommendations"][1]["copy"][0]["attempts"] = 1
        response = edit(owner_api, item, edited)
        assert response.status_code == 200, response.content
        assert response.json()["output"]["content"] == edited

    @pytest.mark.parametrize("change, paths", [
        (lambda c: c["recommendations"][0].update(rank=2), ["content.recommendations.0.rank"]),
        (lambda c: c["recommendations"][1].update(score=0.99), ["content.recommendations.1.score"]),
        (lambda c: c["recommendations"][0].update(item_id="lamp-2", title="Brass lamp"),
         ["content.recommendations.0.item_id", "content.recommendations.0.title"]),
        (lambda c: c["recommendations"][0]["copy"][1].update(source="model", issues_fixed=[]),
         ["content.recommendations.0.copy.1.issues_fixed", "content.recommendations.0.copy.1.source"]),
        (lambda c: c["recommendations"][0]["copy"].pop(), ["content.recommendations.0.copy"]),
        (lambda c: c["recommendations"].reverse(), [
            "content.recommendations.0.rank", "content.recommendations.0.item_id", "content.recommendations.0.title",
            "content.recommendations.0.score", "content.recommendations.0.copy", "content.recommendations.1.rank",
            "content.recommendations.1.item_id", "content.recommendations.1.title", "content.recommendations.1.score",
            "content.recommendations.1.copy"]),
        (lambda c: c.update(profile_summary="Loves lamps."), ["content.profile_summary"]),
    ], ids=["rank", "score", "item", "how-a-variant-was-made", "variant-dropped", "reordered", "profile-summary"])
    def test_the_ranking_and_how_the_copy_was_made_stay(self, claimed, owner_api, change, paths):
        item = claimed("recommender_copy", COPY)
        edited = copy.deepcopy(COPY)
        edited["recommendations"][0]["copy"][0]["text"] = "Changed copy, which alone would be fine."
        change(edited)
        error = assert_envelope(edit(owner_api, item, edited), 400, "field_not_editable")
        assert list(error["details"]) == paths
        assert "recommendations[].copy[].text" in error["message"]
        assert_nothing_changed(item, COPY)


class TestImage:
    def test_nothing_of_an_images_record_can_be_edited(self, claimed, owner_api):
        item = claimed("image", IMAGE)
        error = assert_envelope(edit(owner_api, item, {**IMAGE, "seed": 1, "label": "AI-generated"}), 400,
                                "field_not_editable")
        assert list(error["details"]) == ["content.seed"]
        assert "marks no field of its outputs as editable" in error["message"]
        assert_nothing_changed(item, IMAGE)
        # the same content is no change: it approves, as the decision says
        response = edit(owner_api, item, IMAGE)
        assert response.status_code == 200 and response.json()["output"]["review_state"] == "approved"


class UnmarkedOutput(BaseModel):
    text: str
    tokens: int


class Unmarked(Plugin):
    """A third-party plugin written before editable fields existed: it marks none."""

    manifest = Manifest(id="unmarked", version="1.0.0", name="Unmarked", modality=Modality.TEXT,
                        resource_class=ResourceClass.CPU)
    Input = UnmarkedOutput
    Output = UnmarkedOutput

    def generate(self, batch, context):
        return [[OutputItem(UnmarkedOutput(text="x", tokens=1))] for _ in batch]


def test_a_plugin_that_marks_no_field_has_outputs_nobody_edits(project, owner_api, empty_plugin_registry):
    empty_plugin_registry.register(Unmarked)
    set_plugin_enabled(project, "unmarked", True)
    content = {"text": "Draft", "tokens": 3}
    item = ReviewItem.objects.create(output=build_output(build_job(project, plugin="unmarked"), content=content),
                                     project=project, priority=5)
    owner_api.post(f"/api/v1/reviews/{item.pk}/claim/")
    error = assert_envelope(edit(owner_api, item, {"text": "Better", "tokens": 3}), 400, "field_not_editable")
    assert list(error["details"]) == ["content.text"]
    assert "'unmarked' marks no field of its outputs as editable" in error["message"]
    listed = {p["id"]: p for p in owner_api.get("/api/v1/plugins/").json()}
    assert listed["unmarked"]["editable_output_fields"] == []


def test_an_output_of_a_plugin_no_longer_installed_is_not_edited(project, owner_api):
    """Without the plugin there is no knowing which fields are its records: before, any content was stored as sent."""
    content = {"reply": "Hi", "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    item = ReviewItem.objects.create(output=build_output(build_job(project, plugin="gone"), content=content),
                                     project=project, priority=5)
    owner_api.post(f"/api/v1/reviews/{item.pk}/claim/")
    forged = {"reply": "Hi", "usage": {"prompt_tokens": 900_000_000_000, "completion_tokens": 1}}
    assert_envelope(edit(owner_api, item, forged), 400, "validation_error")
    assert_nothing_changed(item, content)
    assert owner_api.post(f"/api/v1/reviews/{item.pk}/decision/", {"action": "approve"}, format="json").status_code == 200


def test_the_plugins_list_names_what_a_reviewer_may_edit(owner_api, built_in_plugins):
    listed = {p["id"]: p for p in owner_api.get("/api/v1/plugins/").json()}
    assert listed["chatbot"]["editable_output_fields"] == ["reply"]
    assert listed["recommender_copy"]["editable_output_fields"] == ["recommendations[].copy[].text"]
    assert listed["image"]["editable_output_fields"] == []
    assert listed["reverse_text"]["editable_output_fields"] == ["text"]
    chat = listed["chatbot"]["output_schema"]["properties"]
    assert chat["reply"]["editable"] is True and "editable" not in chat["usage"]
