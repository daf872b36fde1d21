"""Passages a plugin can ask the platform for (a project's knowledge base), without knowing how
they are stored. The worker supplies the retriever through ``RunContext``; tests supply their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Passage:
    """One chunk of a knowledge-base document, with its retrieval score (cosine, higher is closer)."""

    source_id: str
    chunk_id: str
    title: str
    text: str
    score: float = 0.0


class Retriever(Protocol):
    def __call__(self, job_id: str, query: str, top_k: int) -> list[Passage]:
        """The ``top_k`` passages of the job's project closest to ``query``, best first."""
