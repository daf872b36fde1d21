"""Adding, changing and indexing knowledge-base documents.

Indexing (chunk + embed) runs on a CPU worker (task ``atelier.index_document``); the document
row says whether it is pending, indexed or failed, and a revision number makes an indexing run
that finishes after the document changed throw its work away.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Callable

import numpy as np
from django.db import transaction
from django.utils import timezone

from atelier_platform.accounts.models import Project
from atelier_platform.celery_app import INDEX_DOCUMENT_TASK, QUEUE_CPU, app
from atelier_platform.knowledge.models import DocumentFormat, IndexState, KnowledgeChunk, KnowledgeDocument

logger = logging.getLogger("atelier.knowledge")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _publish_index(document_id: str) -> None:
    try:
        app.send_task(INDEX_DOCUMENT_TASK, args=[document_id], queue=QUEUE_CPU)
    except Exception:
        logger.exception("could not queue indexing of document %s; POST .../reindex/ to retry", document_id)


@transaction.atomic
def upsert_document(project: Project, *, source_id: str, title: str, content: str, format: str = DocumentFormat.MARKDOWN,
                    index_now: Callable[[KnowledgeDocument], None] | None = None) -> tuple[KnowledgeDocument, bool]:
    """Create or update a document by ``source_id``; (re)indexes it when its content changed.

    Returns (document, changed). ``index_now`` indexes in this process instead of queueing
    (the demo preparation uses it so that the knowledge base is ready before workers start).
    """
    digest = _sha256(f"{format}\n{title}\n{content}")
    document = KnowledgeDocument.objects.select_for_update().filter(project=project, source_id=source_id).first()
    if document is not None and document.content_sha256 == digest and document.state == IndexState.INDEXED:
        return document, False
    if document is None:
        document = KnowledgeDocument(project=project, source_id=source_id)
    else:
        document.revision += 1
    document.title, document.content, document.format = title, content, format
    document.content_sha256, document.state, document.error = digest, IndexState.PENDING, ""
    document.save()
    if index_now is not None:
        transaction.on_commit(lambda: index_now(document))
    else:
        document_id = str(document.pk)
        transaction.on_commit(lambda: _publish_index(document_id))
    return document, True


def request_reindex(document: KnowledgeDocument) -> KnowledgeDocument:
    KnowledgeDocument.objects.filter(pk=document.pk).update(state=IndexState.PENDING, revision=document.revision + 1, error="")
    document.refresh_from_db()
    document_id = str(document.pk)
    transaction.on_commit(lambda: _publish_index(document_id))
    return document


def plain_text(document: KnowledgeDocument) -> str:
    from atelier_plugins.text.chunking import html_to_text

    return html_to_text(document.content) if document.format == DocumentFormat.HTML else document.content


def index_document(document_id: str, embed: Callable[[list[str]], np.ndarray], embedding_model: str) -> str:
    """Chunk and embed one document, replacing its chunks in one transaction. Returns its state."""
    from atelier_plugins.text.chunking import chunk_markdown
    from atelier_plugins.text.retrieval import passage_embedding_text

    document = KnowledgeDocument.objects.filter(pk=document_id).first()
    if document is None:
        return "gone"
    revision = document.revision
    try:
        chunks = chunk_markdown(plain_text(document))
        vectors = embed([passage_embedding_text(c.heading or document.title, c.text) for c in chunks]) if chunks else np.zeros((0, 1))
    except Exception as error:
        logger.exception("indexing document %s failed", document_id)
        KnowledgeDocument.objects.filter(pk=document_id, revision=revision).update(
            state=IndexState.FAILED, error=f"{type(error).__name__}: {error}"
        )
        return IndexState.FAILED
    with transaction.atomic():
        current = KnowledgeDocument.objects.select_for_update().filter(pk=document_id).first()
        if current is None or current.revision != revision:
            return "stale"  # changed while we embedded: the newer revision's run will index it
        current.chunks.all().delete()
        KnowledgeChunk.objects.bulk_create(
            KnowledgeChunk(document=current, index=c.index, heading=c.heading[:500], text=c.text,
                           embedding=np.asarray(v, dtype="<f4").tobytes())
            for c, v in zip(chunks, vectors)
        )
        current.state, current.error, current.indexed_at = IndexState.INDEXED, "", timezone.now()
        current.embedding_model = embedding_model
        current.save(update_fields=["state", "error", "indexed_at", "embedding_model"])
    return IndexState.INDEXED


def knowledge_signature(project_id: int) -> tuple:
    """Changes whenever the project's indexed chunks change: the worker's cache key."""
    from django.db.models import Count, Max

    found = KnowledgeDocument.objects.filter(project_id=project_id, state=IndexState.INDEXED).aggregate(
        documents=Count("id"), latest=Max("indexed_at")
    )
    return (found["documents"], found["latest"])


def load_index(project_id: int):
    """All indexed passages of a project with their vectors, for retrieval in a worker."""
    from atelier_plugins.text.retrieval import IndexedPassage

    chunks = KnowledgeChunk.objects.filter(
        document__project_id=project_id, document__state=IndexState.INDEXED
    ).select_related("document").order_by("document__source_id", "index")
    passages, vectors = [], []
    for chunk in chunks:
        title = chunk.heading or chunk.document.title
        passages.append(IndexedPassage(source_id=chunk.document.source_id, chunk_id=chunk.chunk_id, title=title, text=chunk.text))
        vectors.append(np.frombuffer(bytes(chunk.embedding), dtype="<f4"))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
    return passages, matrix
