"""Knowledge bases (indexing with the real embedding model, retrieval scoped to the project)
and stored conversations continued by id."""

from __future__ import annotations

import json

import pytest

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.jobs.models import Job, Output
from atelier_platform.knowledge.models import KnowledgeDocument
from atelier_platform.knowledge.services import upsert_document
from atelier_workers import knowledge
from atelier_workers.runtime import JobRunner, ModelCache
from tests.support.plugins import EchoChat

RETURNS = """# Returns policy

## Window
Returns are accepted within 45 days of delivery. Items must be unused and in their box.

## Refunds
Refunds reach your original payment method within 5 working days.
"""
SHIPPING = """# Shipping

## Costs
Standard shipping is free on orders over $75. Express delivery costs $12.
"""


@pytest.fixture
def chat_project(project, empty_plugin_registry):
    empty_plugin_registry.register(EchoChat)
    set_plugin_enabled(project, "echo_chat", True)
    return project


def index_now(document):
    knowledge.index_document(str(document.pk))


@pytest.mark.django_db(transaction=True)
class TestKnowledge:
    def test_documents_are_chunked_embedded_and_retrieved_by_meaning(self, project, job_for):
        upsert_document(project, source_id="returns", title="Returns policy", content=RETURNS, index_now=index_now)
        upsert_document(project, source_id="shipping", title="Shipping", content=SHIPPING, index_now=index_now)
        document = KnowledgeDocument.objects.get(source_id="returns")
        assert document.state == "indexed" and document.chunks.count() == 2
        passages = knowledge.retrieve(str(job_for(project).pk), "How long do I have to send something back?", 2)
        assert passages[0].source_id == "returns" and "45 days" in passages[0].text
        assert passages[0].chunk_id == "returns#0"
        passages = knowledge.retrieve(str(job_for(project).pk), "how much is express delivery", 1)
        assert passages[0].source_id == "shipping"

    def test_retrieval_never_crosses_projects(self, project, other_project, job_for):
        upsert_document(other_project, source_id="secret", title="Other shop", content=RETURNS, index_now=index_now)
        assert knowledge.retrieve(str(job_for(project).pk), "returns window", 3) == []

    def test_changed_document_is_reindexed_and_unchanged_is_not(self, project):
        document, changed = upsert_document(project, source_id="r", title="R", content=RETURNS, index_now=index_now)
        assert changed
        _, changed = upsert_document(project, source_id="r", title="R", content=RETURNS, index_now=index_now)
        assert not changed
        document, changed = upsert_document(project, source_id="r", title="R", content=SHIPPING, index_now=index_now)
        document.refresh_from_db()
        assert changed and document.revision == 2 and "$75" in document.chunks.get().text

    def test_html_documents_are_read_as_text(self, project):
        html = "<h1>Care</h1><p>Wash wool throws <b>cold</b>.</p><script>alert(1)</script>"
        document, _ = upsert_document(project, source_id="care", title="Care", content=html, format="html", index_now=index_now)
        text = document.chunks.get().text
        assert "Wash wool throws cold ." in text.replace("  ", " ") or "Wash wool throws" in text
        assert "alert" not in text and "<" not in text


@pytest.fixture
def job_for(reverse_plugin):
    from atelier_platform.jobs.submission import JobRequest, submit_job

    def make(project):
        return submit_job(project, JobRequest("reverse_text", {"text": "x"}, {})).job

    return make


@pytest.mark.django_db(transaction=True)
class TestConversations:
    def post(self, api, **input_fields):
        body = {"plugin": "echo_chat", "input": input_fields}
        return api.post("/api/v1/jobs/", json.dumps(body), content_type="application/json")

    @staticmethod
    def approve(job_id):
        from atelier_platform.moderation import review

        reviewer = review.Reviewer(actor="user:reviewer-1")
        item = review.claim(Output.objects.get(job_id=job_id).review, reviewer)
        review.decide(item, reviewer, action="approve")

    def test_a_thread_is_stored_and_continued_by_id(self, chat_project, api):
        runner = JobRunner(__import__("atelier_platform.catalog.registry", fromlist=["x"]).get_registry(), ModelCache("cpu"))
        first = self.post(api, messages=[{"role": "user", "content": "Hello"}]).json()
        conversation_id = first["input"]["conversation_id"]
        assert conversation_id
        runner.run(first["id"])
        # Held for review: the reply is not in the thread, nor fed back to the model, until approved.
        assert [m["role"] for m in api.get(f"/api/v1/conversations/{conversation_id}/").json()["messages"]] == ["user"]
        self.approve(first["id"])
        second = self.post(api, messages=[{"role": "user", "content": "And then?"}], conversation_id=conversation_id).json()
        assert [m["content"] for m in second["input"]["messages"]] == ["Hello", "you said: Hello", "And then?"]
        runner.run(second["id"])
        self.approve(second["id"])
        thread = api.get(f"/api/v1/conversations/{conversation_id}/").json()
        assert [(m["role"], m["content"]) for m in thread["messages"]] == [
            ("user", "Hello"), ("assistant", "you said: Hello"), ("user", "And then?"), ("assistant", "you said: And then?"),
        ]
        assert Job.objects.get(pk=second["id"]).outputs.get().content["turns"] == 3

    def test_a_reply_released_at_once_is_in_the_thread_when_the_finish_is_announced(self, chat_project, api, monkeypatch):
        from django.db import transaction

        from atelier_platform.moderation.policies import update_policy

        update_policy(chat_project, "test", {"review_mode": "release_after_screening", "audit_sample_percent": 0})
        thread_when_announced = []

        def announce_finished(job_id):  # what a client woken by the notice would find
            transaction.on_commit(lambda: thread_when_announced.append(
                [m.role for m in ConversationMessage.objects.filter(job_id=job_id).order_by("index")]))

        monkeypatch.setattr("atelier_platform.jobs.lifecycle.waiting.announce_finished", announce_finished)
        job = self.post(api, messages=[{"role": "user", "content": "Hello"}]).json()
        runner = JobRunner(__import__("atelier_platform.catalog.registry", fromlist=["x"]).get_registry(), ModelCache("cpu"))
        assert runner.run(job["id"]) == "succeeded"
        assert thread_when_announced == [["user", "assistant"]]

    def test_several_new_turns_are_stored_in_order_when_a_thread_starts_and_when_it_goes_on(self, chat_project, api):
        turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Price?"}]
        first = self.post(api, messages=turns).json()
        conversation_id = first["input"]["conversation_id"]
        more = [{"role": "user", "content": "In euros?"}, {"role": "user", "content": "Please."}]
        second = self.post(api, messages=more, conversation_id=conversation_id).json()
        stored = ConversationMessage.objects.filter(conversation_id=conversation_id).order_by("index")
        assert [(m.index, m.role, m.content, str(m.job_id)) for m in stored] == [
            (0, "user", "Hi", first["id"]), (1, "assistant", "Hello!", first["id"]), (2, "user", "Price?", first["id"]),
            (3, "user", "In euros?", second["id"]), (4, "user", "Please.", second["id"]),
        ]

    def test_unknown_or_foreign_conversation_is_refused(self, chat_project, other_project, api):
        foreign = Conversation.objects.create(project=other_project, plugin_id="echo_chat")
        for conversation_id in (str(foreign.pk), "5d8f7a1e-0000-4000-8000-000000000000"):
            response = self.post(api, messages=[{"role": "user", "content": "hi"}], conversation_id=conversation_id)
            assert response.status_code == 400
            assert "input.conversation_id" in response.json()["error"]["details"]
        assert not Job.objects.exists() and Conversation.objects.filter(project=chat_project).count() == 0

    def test_foreign_conversation_is_not_readable(self, chat_project, other_project, api):
        foreign = Conversation.objects.create(project=other_project, plugin_id="echo_chat")
        assert api.get(f"/api/v1/conversations/{foreign.pk}/").status_code == 404


@pytest.mark.django_db
class TestKnowledgeApi:
    def test_owner_uploads_lists_and_deletes(self, project, make_key, client_for, django_capture_on_commit_callbacks, sent_messages):
        admin = client_for(make_key(project, ["jobs:read", "admin"]).raw)
        body = {"source_id": "en/returns", "title": "Returns", "content": RETURNS}
        with django_capture_on_commit_callbacks(execute=True):
            created = admin.post("/api/v1/knowledge/documents/", body, format="json")
        assert created.status_code == 201 and created.json()["state"] == "pending"
        assert sent_messages[-1]["task"] == "atelier.index_document" and sent_messages[-1]["queue"] == "cpu"
        assert [d["source_id"] for d in admin.get("/api/v1/knowledge/documents/").json()["results"]] == ["en/returns"]
        assert admin.delete(f"/api/v1/knowledge/documents/{created.json()['id']}/").status_code == 204
        assert not KnowledgeDocument.objects.exists()

    def test_editor_key_cannot_change_the_knowledge_base(self, api):
        response = api.post("/api/v1/knowledge/documents/", {"source_id": "x", "title": "X", "content": "y"}, format="json")
        assert response.status_code == 403

    @pytest.mark.parametrize("body", [{"source_id": "../etc", "title": "X", "content": "y"}, {"title": "X", "content": "y"},
                                      {"source_id": "a", "title": "X", "content": "y", "format": "pdf"}])
    def test_bad_documents_are_refused(self, project, make_key, client_for, body):
        admin = client_for(make_key(project, ["jobs:read", "admin"]).raw)
        assert admin.post("/api/v1/knowledge/documents/", body, format="json").status_code == 400
        assert not KnowledgeDocument.objects.exists()
