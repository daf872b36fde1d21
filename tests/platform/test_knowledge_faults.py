"""Knowledge-base documents are never left pending for good: not when the broker is down as they
are posted, not when indexing breaks anywhere, and not when one source_id is posted twice at once."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, connection
from django.utils import timezone

from atelier_platform.config import get_config
from atelier_platform.jobs.tasks import sweep_jobs
from atelier_platform.knowledge.models import KnowledgeChunk, KnowledgeDocument
from atelier_platform.knowledge.services import upsert_document
from atelier_workers import knowledge as worker_knowledge
from atelier_workers.knowledge_tasks import index_document

DOCUMENTS = "/api/v1/knowledge/documents/"
RETURNS = {"source_id": "en/returns", "title": "Returns", "content": "# Returns\n\nReturns are accepted within 30 days."}


@pytest.fixture
def owner(project, make_key, client_for):
    return client_for(make_key(project, ["jobs:read", "admin"]).raw)


@pytest.fixture
def embedder(monkeypatch):
    """The worker's embedder, without loading a model: ``embed`` can be replaced per test."""
    fake = SimpleNamespace(embed=lambda texts: np.ones((len(texts), 4), dtype=np.float32), model_dir=Path("fake-embedder"))
    monkeypatch.setattr(worker_knowledge, "_embedder", fake)
    return fake


@pytest.fixture
def broker(monkeypatch, sent_messages):
    """The broker the platform publishes to; ``broker.up = False`` makes every send fail."""
    state = SimpleNamespace(up=True)

    def send_task(name, args=None, **options):
        if not state.up:
            raise ConnectionError("broker unreachable")
        sent_messages.append({"task": name, "args": args, **options})

    monkeypatch.setattr("atelier_platform.knowledge.services.app.send_task", send_task)
    return state


def index_messages(sent_messages):
    return [m["args"] for m in sent_messages if m["task"] == "atelier.index_document"]


@pytest.mark.django_db
def test_a_document_posted_while_the_broker_is_down_is_indexed_after_the_sweeper_sends_it_again(
        project, owner, broker, sent_messages, embedder, django_capture_on_commit_callbacks):
    broker.up = False
    with django_capture_on_commit_callbacks(execute=True):
        created = owner.post(DOCUMENTS, RETURNS, format="json")
    assert created.status_code == 201 and created.json()["state"] == "pending"
    document_id = created.json()["id"]
    broker.up = True

    sweep_jobs()
    assert index_messages(sent_messages) == [], "not overdue yet: its message may still be on its way"

    overdue = timezone.now() - timedelta(seconds=get_config().job_requeue_after_s + 1)
    KnowledgeDocument.objects.filter(pk=document_id).update(updated_at=overdue)
    counts = sweep_jobs()
    assert index_messages(sent_messages) == [[document_id]]
    assert counts["republished_documents"] == 1
    sweep_jobs()
    assert index_messages(sent_messages) == [[document_id]], "the next sweep must not resend while that message waits"

    index_document(document_id)
    index_document(document_id)  # a duplicate message (the sweeper raced the lost one) is harmless
    document = owner.get(f"{DOCUMENTS}{document_id}/").json()
    assert (document["state"], document["chunk_count"], document["revision"]) == ("indexed", 1, 1)


@pytest.mark.django_db
def test_a_document_whose_embedding_model_cannot_load_is_failed_with_the_reason(project, owner, monkeypatch):
    document, _ = upsert_document(project, **RETURNS)
    changing, _ = upsert_document(project, source_id="en/shipping", title="Shipping", content="Free over $75.")

    class MissingModel:
        def __init__(self, *args, **kwargs):
            raise OSError("model directory missing")

    monkeypatch.setattr(worker_knowledge, "_embedder", None)
    monkeypatch.setattr("atelier_plugins.text.embedding.SentenceEmbedder", MissingModel)
    index_document(str(document.pk))
    shown = owner.get(f"{DOCUMENTS}{document.pk}/").json()
    assert shown["state"] == "failed" and "OSError: model directory missing" in shown["error"]

    class ModelLoadingWhileTheDocumentChanges:
        def __init__(self, *args, **kwargs):
            upsert_document(project, source_id="en/shipping", title="Shipping", content="Free over $50.")
            raise OSError("model directory missing")

    monkeypatch.setattr("atelier_plugins.text.embedding.SentenceEmbedder", ModelLoadingWhileTheDocumentChanges)
    index_document(str(changing.pk))
    shown = owner.get(f"{DOCUMENTS}{changing.pk}/").json()
    assert (shown["state"], shown["revision"], shown["error"]) == ("pending", 2, ""), "the newer revision waits for its own run"


@pytest.mark.django_db
def test_a_document_whose_chunks_cannot_be_stored_is_failed_with_the_reason(project, owner, embedder, monkeypatch):
    document, _ = upsert_document(project, **RETURNS)

    def refuse(*args, **kwargs):
        raise DatabaseError("could not extend file: No space left on device")

    monkeypatch.setattr(KnowledgeChunk.objects, "bulk_create", refuse)
    index_document(str(document.pk))
    shown = owner.get(f"{DOCUMENTS}{document.pk}/").json()
    assert shown["state"] == "failed" and "No space left on device" in shown["error"]
    assert shown["chunk_count"] == 0


@pytest.mark.django_db
def test_indexing_past_its_soft_time_limit_fails_the_document_and_ends_the_task_as_timed_out(project, owner, embedder):
    document, _ = upsert_document(project, **RETURNS)

    def too_slow(texts):
        raise SoftTimeLimitExceeded()

    embedder.embed = too_slow
    with pytest.raises(SoftTimeLimitExceeded):
        index_document(str(document.pk))
    shown = owner.get(f"{DOCUMENTS}{document.pk}/").json()
    assert shown["state"] == "failed" and "time limit" in shown["error"]


@pytest.mark.django_db(transaction=True)
def test_two_posts_of_one_new_source_id_at_once_end_as_if_one_came_after_the_other(project, make_key, client_for,
                                                                                   sent_messages, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs write transactions one at a time (BEGIN IMMEDIATE): no race there")
    raw = make_key(project, ["jobs:read", "admin"]).raw
    both_looked = threading.Barrier(2, timeout=10)
    one_answered = threading.Event()
    original_save = KnowledgeDocument.save

    def save(self, *args, **kwargs):
        if self._state.adding:
            try:
                both_looked.wait()  # both requests found no document with this source_id
            except threading.BrokenBarrierError:
                pass
        else:
            # The update waits for the other post's answer, as one after the other: the view reads the
            # document again after upserting, and would show this newer revision in that answer.
            one_answered.wait(10)
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(KnowledgeDocument, "save", save)
    answers = {}

    def post(title):
        try:
            client = client_for(raw)
            client.raise_request_exception = False
            response = client.post(DOCUMENTS, {**RETURNS, "title": title}, format="json")
            answers[title] = (response.status_code, response.json())
            one_answered.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(title,)) for title in ("Returns", "Returns policy")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(status for status, _ in answers.values()) == [200, 201], answers
    first = next(body for status, body in answers.values() if status == 201)
    second = next(body for status, body in answers.values() if status == 200)
    assert first["id"] == second["id"] and (first["revision"], second["revision"]) == (1, 2)
    document = KnowledgeDocument.objects.get(project=project, source_id="en/returns")
    assert (document.title, document.revision, document.state) == (second["title"], 2, "pending")
    assert index_messages(sent_messages) == [[first["id"]], [first["id"]]]


@pytest.mark.timeout(60, method="signal")
def test_a_document_posted_while_the_broker_hangs_is_stored_without_asking_the_broker_again(
        project, monkeypatch, atelier_config, hanging_redis, django_capture_on_commit_callbacks):
    """The indexing message is published inside the owner's web request: on a Redis that took the connection
    and never answers, Celery's default retries (three, each on a new connection) held the request for each
    one's socket timeout. A publish that got no answer gives up; the sweeper sends the message later."""
    from atelier_platform.celery_app import create_app
    from atelier_platform.knowledge import services as knowledge_services
    from tests.support.hanging_redis import messages_for

    monkeypatch.setenv("BROKER_URL", hanging_redis.url)
    atelier_config()  # read afresh
    monkeypatch.setattr(knowledge_services, "app", create_app())
    posted = []
    try:
        with django_capture_on_commit_callbacks(execute=True):  # Redis answers: the pool keeps a connection
            posted.append(upsert_document(project, source_id="en/first", title="First", content="Hello.")[0])
        hanging_redis.hang()
        with django_capture_on_commit_callbacks(execute=True):
            posted.append(upsert_document(project, source_id="en/second", title="Second", content="Hi.")[0])
        assert hanging_redis.connections_while_hung == 0  # no new connection, no second wait for an answer
        assert KnowledgeDocument.objects.get(pk=posted[1].pk).state == "pending"  # stored, for the sweeper
    finally:
        hanging_redis.restart()
        for document in posted:
            messages_for(hanging_redis.direct_url, str(document.pk), take=True)
