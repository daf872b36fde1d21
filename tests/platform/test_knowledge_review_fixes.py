"""Knowledge-base documents index as a reader sees them (headings by level, code, hidden HTML and Markdown),
a document with no text says so, retrieval forgets deleted documents whatever the workers' clocks, a late
reindex request never lets an old indexing run win, and an owner's changes are audited."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from django.utils import timezone

from atelier_platform.knowledge.models import KnowledgeDocument
from atelier_platform.knowledge.services import request_reindex, upsert_document
from atelier_platform.moderation.models import AuditEvent
from atelier_plugins.text.chunking import chunk_markdown, html_to_text
from atelier_workers import knowledge as worker_knowledge
from atelier_workers.knowledge_tasks import index_document
from tests.api.helpers import build_job

DOCUMENTS = "/api/v1/knowledge/documents/"


def ones(texts):
    return np.ones((len(texts), 4), dtype=np.float32)


@pytest.fixture
def embedder(monkeypatch):
    """The worker's embedder without a model (every passage alike: the word overlap ranks them), and an
    empty cache of projects' passages."""
    fake = SimpleNamespace(embed=ones, model_dir=Path("fake-embedder"))
    monkeypatch.setattr(worker_knowledge, "_embedder", fake)
    monkeypatch.setattr(worker_knowledge, "_indexes", {})
    return fake


@pytest.fixture
def owner(project, make_key, client_for):
    key = make_key(project, ["jobs:read", "admin"])
    client = client_for(key.raw)
    client.prefix = key.api_key.prefix
    return client


def passages(document: KnowledgeDocument) -> list[tuple[str, str]]:
    return list(document.chunks.order_by("index").values_list("heading", "text"))


def indexed(project, content: str, format: str = "markdown") -> KnowledgeDocument:
    document, _ = upsert_document(project, source_id="doc", title="Doc", content=content, format=format)
    assert index_document(str(document.pk)) == "indexed"
    return document


class TestHeadings:
    def test_sections_of_a_document_without_a_top_heading_are_not_nested_in_each_other(self):
        text = "## Window\nReturns within 45 days.\n\n## Refunds\nRefunds in 5 days.\n\n## Exchanges\nFree."
        assert [(c.heading, c.text) for c in chunk_markdown(text)] == [
            ("Window", "Returns within 45 days."), ("Refunds", "Refunds in 5 days."), ("Exchanges", "Free.")]

    def test_a_heading_replaces_the_one_of_its_level_when_levels_are_skipped(self):
        text = "# Care\n### Wool\nCold.\n### Linen\nWarm.\n## Storage ##\nDry.\n#### Moths\nCedar."
        assert [c.heading for c in chunk_markdown(text)] == ["Care > Wool", "Care > Linen", "Care > Storage",
                                                             "Care > Storage > Moths"]

    def test_underlined_headings_are_headings_and_a_rule_is_no_text(self):
        text = "Returns\n=======\n\nWithin 45 days.\n\nRefunds\n-------\n\n5 days.\n\n***\n\nBy card."
        assert [(c.heading, c.text) for c in chunk_markdown(text)] == [
            ("Returns", "Within 45 days."), ("Returns > Refunds", "5 days.\nBy card.")]

    def test_a_comment_in_a_code_block_is_no_heading(self):
        text = "# Setup\n\n```bash\n# install the package\npip install atelier\n```\n\nThen start it."
        assert [(c.heading, c.text) for c in chunk_markdown(text)] == [
            ("Setup", "# install the package pip install atelier\nThen start it.")]


class TestHtml:
    def test_a_heading_written_over_several_lines_or_with_a_line_break_is_one_heading(self):
        page = "<h2>\n  Refunds\n</h2>\n<p>Refunds reach your card in 5 days.</p><h3>By <br>card</h3><p>Visa.</p>"
        assert [(c.heading, c.text) for c in chunk_markdown(html_to_text(page))] == [
            ("Refunds", "Refunds reach your card in 5 days."), ("Refunds > By card", "Visa.")]

    def test_what_a_browser_never_shows_is_no_passage(self):
        page = ("<html><head><title>Lumen & Loom | Returns</title></head><body><h1>Returns</h1>"
                "<!-- <p>Old policy: returns within 90 days.</p> --><p>Returns within 45 days.</p>"
                "<template><p>Loading…</p></template></body></html>")
        assert [(c.heading, c.text) for c in chunk_markdown(html_to_text(page))] == [("Returns", "Returns within 45 days.")]

    def test_text_that_looks_like_markdown_is_read_as_text(self):
        page = ("<h2>Install</h2><pre><code>pip install atelier\n# then start it\natelier start</code></pre>"
                "<p>Title</p><p>=====</p>")
        assert [(c.heading, c.text) for c in chunk_markdown(html_to_text(page))] == [
            ("Install", "pip install atelier # then start it atelier start\nTitle\n=====")]

    @pytest.mark.timeout(60, method="signal")
    @pytest.mark.parametrize("hostile", ["<!--" * 120_000, "<title" * 80_000, "<h2>\n" * 100_000])
    def test_unclosed_comments_titles_and_headings_are_read_in_one_pass(self, hostile):
        assert isinstance(html_to_text(hostile), str)


@pytest.mark.django_db
class TestIndexing:
    def test_markdown_comments_and_front_matter_are_not_indexed(self, project, embedder):
        document = indexed(project, "---\ntitle: Returns\nlayout: page\n---\n# Returns\n\n<!-- TODO: old policy was 90 days -->\n"
                                    "Returns within 45 days.\n")
        assert passages(document) == [("Returns", "Returns within 45 days.")]

    def test_a_document_with_no_text_fails_with_the_reason_instead_of_indexing_to_nothing(self, project, owner, embedder):
        document, _ = upsert_document(project, source_id="app", title="Help centre",
                                      content='<div id="app"></div><script>render("help")</script>', format="html")
        assert index_document(str(document.pk)) == "failed"
        shown = owner.get(f"{DOCUMENTS}{document.pk}/").json()
        assert shown["state"] == "failed" and "no text to index" in shown["error"] and shown["chunk_count"] == 0

    def test_a_blank_document_is_refused_and_a_bad_source_id_says_what_to_use(self, project, owner):
        response = owner.post(DOCUMENTS, {"source_id": "blank", "title": "Blank", "content": " \n\t\n "}, format="json")
        assert response.status_code == 400 and "content" in response.json()["error"]["details"]
        response = owner.post(DOCUMENTS, {"source_id": "en returns", "title": "R", "content": "x"}, format="json")
        assert response.status_code == 400 and "letters, digits" in response.json()["error"]["details"]["source_id"][0]
        assert not KnowledgeDocument.objects.exists()


@pytest.mark.django_db
def test_retrieval_forgets_a_deleted_document_though_a_faster_clock_indexed_another(project, owner, embedder):
    """Worker hosts' clocks differ. The cache key was the count of indexed documents and the latest indexed_at:
    a document indexed on a host a minute ahead held the latest time, so deleting one document and indexing
    another left the key as it was, and the chatbot went on quoting the deleted one."""
    job = str(build_job(project).pk)
    care = indexed(project, "Wash wool cold.")
    KnowledgeDocument.objects.filter(pk=care.pk).update(indexed_at=timezone.now() + timedelta(minutes=1))
    old, _ = upsert_document(project, source_id="warranty-2025", title="Warranty", content="The warranty lasts 1 year.")
    index_document(str(old.pk))
    assert "The warranty lasts 1 year." in [p.text for p in worker_knowledge.retrieve(job, "warranty", 2)]

    assert owner.delete(f"{DOCUMENTS}{old.pk}/").status_code == 204
    new, _ = upsert_document(project, source_id="warranty-2026", title="Warranty", content="The warranty lasts 2 years.")
    index_document(str(new.pk))

    texts = [p.text for p in worker_knowledge.retrieve(job, "warranty", 2)]
    assert "The warranty lasts 1 year." not in texts and "The warranty lasts 2 years." in texts


@pytest.mark.django_db
def test_a_reindex_request_that_read_an_older_revision_never_lets_an_old_run_store_its_text(project, embedder):
    """The reindex request set the revision to the one it read plus one: read before two changes, that is the
    number the run of the first change holds, and that run stored its text as the indexed document's."""
    document, _ = upsert_document(project, source_id="returns", title="Returns", content="Returns within 30 days.")
    as_the_reindex_request_read_it = KnowledgeDocument.objects.get(pk=document.pk)
    upsert_document(project, source_id="returns", title="Returns", content="Returns within 45 days.")

    def embed_while_the_document_changes(texts):
        upsert_document(project, source_id="returns", title="Returns", content="Returns within 60 days.")
        request_reindex(as_the_reindex_request_read_it)
        return ones(texts)

    embedder.embed = embed_while_the_document_changes
    index_document(str(document.pk))  # the run of the 45-day text finishes after both
    document.refresh_from_db()
    assert (document.state, document.revision, passages(document)) == ("pending", 4, [])

    embedder.embed = ones
    assert index_document(str(document.pk)) == "indexed"
    assert passages(document) == [("", "Returns within 60 days.")]


@pytest.mark.django_db
def test_an_owners_changes_to_the_knowledge_base_are_audited(project, owner, sent_messages):
    actor = f"key:{owner.prefix}"
    body = {"source_id": "en/returns", "title": "Returns", "content": "Returns within 30 days."}
    created = owner.post(DOCUMENTS, body, format="json").json()
    owner.post(DOCUMENTS, {**body, "content": "Returns within 45 days."}, format="json")
    owner.post(f"{DOCUMENTS}{created['id']}/reindex/")
    assert owner.delete(f"{DOCUMENTS}{created['id']}/").status_code == 204

    events = list(AuditEvent.objects.filter(project=project).order_by("id"))
    assert [(e.action, e.actor, e.object_id) for e in events] == [
        ("knowledge_document_created", actor, created["id"]), ("knowledge_document_updated", actor, created["id"]),
        ("knowledge_document_reindexed", actor, created["id"]), ("knowledge_document_deleted", actor, created["id"]),
    ]
    assert (events[1].before["revision"], events[1].after["revision"]) == (1, 2)
    assert events[3].before["source_id"] == "en/returns" and "content" not in events[3].before


@pytest.mark.django_db
@pytest.mark.parametrize("method, suffix", [("post", "reindex/"), ("delete", "")])
def test_a_document_deleted_by_another_request_meanwhile_is_a_404_not_a_500(project, owner, monkeypatch, method, suffix):
    """Another request's DELETE lands between this request finding the document and acting on it: reindexing
    it failed reading it back (a 500), and a second deletion was audited as if it had deleted it too."""
    from atelier_platform.api.knowledge_views import KnowledgeDocumentViewSet

    document, _ = upsert_document(project, source_id="returns", title="Returns", content="Returns within 30 days.")
    found = KnowledgeDocumentViewSet.get_object

    def found_then_deleted_by_another_request(view):
        found_document = found(view)
        KnowledgeDocument.objects.filter(pk=found_document.pk).delete()
        return found_document

    monkeypatch.setattr(KnowledgeDocumentViewSet, "get_object", found_then_deleted_by_another_request)
    owner.raise_request_exception = False
    response = getattr(owner, method)(f"{DOCUMENTS}{document.pk}/{suffix}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", response.content
    assert not AuditEvent.objects.filter(project=project).exists()
