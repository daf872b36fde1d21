"""Adding, changing and indexing knowledge-base documents.

Indexing (chunk + embed) runs on a CPU worker (task ``atelier.index_document``); the document
row says whether it is pending, indexed or failed, and a revision number makes an indexing run
that finishes after the document changed throw its work away. A document left pending (its
message lost, its worker gone) gets a new message from the sweeper (``resend_overdue_indexing``).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Callable

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from atelier_platform.accounts.models import Project
from atelier_platform.celery_app import INDEX_DOCUMENT_TASK, QUEUE_CPU, app, publish_or_leave_to_sweeper
from atelier_platform.config import get_config
from atelier_platform.knowledge.models import DocumentFormat, IndexState, KnowledgeChunk, KnowledgeDocument

logger = logging.getLogger("atelier.knowledge")

Embed = Callable[[list[str]], np.ndarray]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _publish_index(document_id: str) -> bool:
    # posted inside a web request: a hung broker must not hold it for long (celery_app says how long)
    return publish_or_leave_to_sweeper(app, INDEX_DOCUMENT_TASK, [document_id], queue=QUEUE_CPU,
                                       what=f"indexing of document {document_id}")


@transaction.atomic
def upsert_document(project: Project, *, source_id: str, title: str, content: str, format: str = DocumentFormat.MARKDOWN,
                    index_now: Callable[[KnowledgeDocument], None] | None = None,
                    actor: str | None = None) -> tuple[KnowledgeDocument, bool]:
    """Create or update a document by ``source_id``; (re)indexes it when its content changed.

    Returns (document, changed). ``index_now`` indexes in this process instead of queueing
    (the demo preparation uses it so that the knowledge base is ready before workers start).
    Two calls at once for one source_id end as if one came after the other. With ``actor``
    (changes through the API) a creation or a change is audited: what the chatbot tells
    customers follows these documents.
    """
    digest = _sha256(f"{format}\n{title}\n{content}")
    document = _locked_document(project, source_id)
    if document is None:
        document = KnowledgeDocument(project=project, source_id=source_id)
        _fill_pending(document, title=title, content=content, format=format, digest=digest)
        try:
            # A savepoint: locking a row that does not exist yet locks nothing, so a concurrent call
            # may insert the same source_id first; then we update its row instead of failing.
            with transaction.atomic():
                document.save(force_insert=True)
        except IntegrityError:
            document = _locked_document(project, source_id)
            if document is None:  # the other row is gone again: the constraint broke on something else
                raise
        else:
            _audit(actor, "knowledge_document_created", document, after=_audit_view(document))
            _index_on_commit(document, index_now)
            return document, True
    if document.content_sha256 == digest and document.state == IndexState.INDEXED:
        return document, False
    before = _audit_view(document)
    document.revision += 1
    _fill_pending(document, title=title, content=content, format=format, digest=digest)
    document.save()
    _audit(actor, "knowledge_document_updated", document, before=before, after=_audit_view(document))
    _index_on_commit(document, index_now)
    return document, True


def _audit_view(document: KnowledgeDocument) -> dict:
    """What the audit log keeps of a document: which version it was, not its (up to 500,000 characters of) text."""
    return {"source_id": document.source_id, "title": document.title, "format": document.format,
            "revision": document.revision, "content_sha256": document.content_sha256}


def _audit(actor: str | None, action: str, document: KnowledgeDocument, **states) -> None:
    if actor is not None:
        from atelier_platform.moderation import audit

        audit.record(document.project, actor, action, document, **states)


def _locked_document(project: Project, source_id: str) -> KnowledgeDocument | None:
    return KnowledgeDocument.objects.select_for_update().filter(project=project, source_id=source_id).first()


def _fill_pending(document: KnowledgeDocument, *, title: str, content: str, format: str, digest: str) -> None:
    document.title, document.content, document.format = title, content, format
    document.content_sha256, document.state, document.error = digest, IndexState.PENDING, ""


def _index_on_commit(document: KnowledgeDocument, index_now: Callable[[KnowledgeDocument], None] | None) -> None:
    if index_now is not None:
        transaction.on_commit(lambda: index_now(document))
    else:
        document_id = str(document.pk)
        transaction.on_commit(lambda: _publish_index(document_id))


@transaction.atomic
def request_reindex(document: KnowledgeDocument, *, actor: str | None = None) -> KnowledgeDocument | None:
    """The document, pending a new indexing run; None when it is gone (deleted since it was read)."""
    # The revision is bumped in the database, not set from this (maybe older) copy: set back to a number an
    # earlier indexing run holds, it would let that run store the chunks of text the document no longer has.
    bumped = KnowledgeDocument.objects.filter(pk=document.pk).update(
        state=IndexState.PENDING, revision=F("revision") + 1, error="", updated_at=timezone.now()  # the sweeper's clock
    )
    if not bumped:
        return None
    document.refresh_from_db()
    _audit(actor, "knowledge_document_reindexed", document, after=_audit_view(document))
    document_id = str(document.pk)
    transaction.on_commit(lambda: _publish_index(document_id))
    return document


@transaction.atomic
def delete_document(document: KnowledgeDocument, *, actor: str | None = None) -> bool:
    """Its passages go with it; an indexing run still embedding it then finds nothing to store. False when
    it was gone already (two deletions at once: one of them deleted it, and only that one is audited)."""
    current = KnowledgeDocument.objects.select_for_update().filter(pk=document.pk).first()
    if current is None:
        return False
    _audit(actor, "knowledge_document_deleted", current, before=_audit_view(current))
    current.delete()
    return True


def resend_overdue_indexing(now: datetime | None = None) -> int:
    """Send the indexing message again for documents pending longer than ``ATELIER_JOB_REQUEUE_AFTER_S``:
    it was lost (the broker was down when the document was posted, or purged) or its worker died.
    A duplicate message is harmless: each run stores its chunks only if the revision is unchanged."""
    now = now or timezone.now()
    overdue_before = now - timedelta(seconds=get_config().job_requeue_after_s)
    overdue = KnowledgeDocument.objects.filter(state=IndexState.PENDING, updated_at__lt=overdue_before)
    sent = 0
    for document_id in overdue.order_by("updated_at").values_list("pk", flat=True)[:500]:
        # Marking it changed now keeps the next sweep from sending it again while this message waits.
        if KnowledgeDocument.objects.filter(pk=document_id, state=IndexState.PENDING,
                                            updated_at__lt=overdue_before).update(updated_at=now):
            logger.warning("document %s still pending; sending its indexing message again", document_id)
            if _publish_index(str(document_id)):
                sent += 1
    return sent


def plain_text(document: KnowledgeDocument) -> str:
    """The text a reader of the document sees, as Markdown: what HTML and Markdown hide (comments,
    scripts, front matter) is no passage for the chatbot to quote."""
    from atelier_plugins.text.chunking import html_to_text, markdown_to_text

    if document.format == DocumentFormat.HTML:
        return html_to_text(document.content)
    if document.format == DocumentFormat.MARKDOWN:
        return markdown_to_text(document.content)
    return document.content


class NothingToIndex(Exception):
    """The document has no text once read (markup only, a page its scripts would fill in)."""


def index_document(document_id: str, load_embedder: Callable[[], tuple[Embed, str]]) -> str:
    """Chunk and embed one document, replacing its chunks in one transaction. Returns its state.

    ``load_embedder`` returns the embedding function and the model's name; it is called here so
    that a model that cannot load fails the document like any other error instead of leaving it pending.
    """
    document = KnowledgeDocument.objects.filter(pk=document_id).first()
    if document is None:
        return "gone"
    revision = document.revision
    try:
        embed, embedding_model = load_embedder()
        return _index_revision(document, embed, embedding_model)
    except NothingToIndex as error:
        _record_failure(document_id, revision, str(error))
        return IndexState.FAILED
    except SoftTimeLimitExceeded:
        # Celery's warning that the hard limit follows: record it, then let the task end as timed out.
        _record_failure(document_id, revision, "Indexing did not finish within its time limit; POST .../reindex/ to try again.")
        logger.warning("indexing document %s ran past its soft time limit", document_id)
        raise
    except Exception as error:
        _record_failure(document_id, revision, f"Indexing failed: {type(error).__name__}: {error}")
        logger.exception("indexing document %s failed", document_id)
        return IndexState.FAILED


def _index_revision(document: KnowledgeDocument, embed: Embed, embedding_model: str) -> str:
    from atelier_plugins.text.chunking import chunk_markdown
    from atelier_plugins.text.retrieval import passage_embedding_text

    chunks = chunk_markdown(plain_text(document))
    if not chunks:
        # Indexed with no passages, it would look ready while the chatbot can never find it.
        raise NothingToIndex(f"The document has no text to index once its {document.format} is read (markup, comments "
                             "or scripts only?). Post it with its text.")
    vectors = embed([passage_embedding_text(c.heading or document.title, c.text) for c in chunks])
    with transaction.atomic():
        current = KnowledgeDocument.objects.select_for_update().filter(pk=document.pk).first()
        if current is None or current.revision != document.revision:
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


def _record_failure(document_id: str, revision: int, error: str) -> None:
    """Mark this revision failed, unless the document changed meanwhile (the newer revision's run
    decides its state) or another run of it already indexed it. If even this fails (the database is
    gone), the document stays pending and the sweeper sends it again."""
    try:
        KnowledgeDocument.objects.filter(pk=document_id, revision=revision, state=IndexState.PENDING).update(
            state=IndexState.FAILED, error=error
        )
    except Exception:
        logger.exception("could not record that indexing document %s failed", document_id)


def knowledge_signature(project_id: int) -> tuple:
    """Changes whenever the project's indexed chunks change: the worker's cache key.

    It is the indexed documents with their revisions (each indexing of new text bumps it), not their count
    and latest ``indexed_at``: deleting one document and indexing another kept those two the same when the
    new one's time was not the latest (a worker host whose clock runs behind another's, or a run that
    committed after a later one), and retrieval went on quoting the deleted document."""
    indexed = KnowledgeDocument.objects.filter(project_id=project_id, state=IndexState.INDEXED)
    return tuple(indexed.order_by("pk").values_list("pk", "revision"))


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
