"""Embeddings on the worker: indexing documents and answering a plugin's retrieval requests.

One sentence embedder per worker process, loaded on first use. A project's passages and their
vectors are cached and reloaded only when the project's knowledge base changed.
"""

from __future__ import annotations

import threading
from typing import Any

from atelier_sdk import Passage

from atelier_platform.jobs.models import Job
from atelier_platform.knowledge import services

_lock = threading.Lock()
_embedder = None
_indexes: dict[int, tuple[tuple, Any, Any]] = {}


def embedder(device: str = "cpu"):
    global _embedder
    with _lock:
        if _embedder is None:
            from atelier_plugins.text.embedding import SentenceEmbedder

            _embedder = SentenceEmbedder(device=device)
        return _embedder


def embedding_model_name() -> str:
    return embedder().model_dir.name if embedder().model_dir.name != "model" else "all-MiniLM-L6-v2"


def _loaded_embedder():
    return embedder().embed, embedding_model_name()


def index_document(document_id: str) -> str:
    # The embedder is loaded inside the indexing run, so that a model that cannot load fails the
    # document (with its error) instead of leaving it pending forever.
    return services.index_document(document_id, _loaded_embedder)


def project_index(project_id: int):
    signature = services.knowledge_signature(project_id)
    cached = _indexes.get(project_id)
    if cached is None or cached[0] != signature:
        passages, vectors = services.load_index(project_id)
        cached = (signature, passages, vectors)
        _indexes[project_id] = cached
    return cached[1], cached[2]


def retrieve(job_id: str, query: str, top_k: int) -> list[Passage]:
    """The ``Retriever`` the worker gives plugins: passages of the job's own project only."""
    from atelier_plugins.text.retrieval import rank

    project_id = Job.objects.filter(pk=job_id).values_list("project_id", flat=True).first()
    if project_id is None:
        return []
    passages, vectors = project_index(project_id)
    if not passages:
        return []
    return rank(query, embedder().embed([query])[0], passages, vectors, top_k)
