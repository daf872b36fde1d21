"""Indexing knowledge-base documents on a CPU worker."""

from atelier_platform.celery_app import INDEX_DOCUMENT_TASK
from atelier_platform.tasking import atelier_task
from atelier_workers import knowledge


@atelier_task(INDEX_DOCUMENT_TASK)
def index_document(task, document_id: str) -> str:
    return knowledge.index_document(document_id)
