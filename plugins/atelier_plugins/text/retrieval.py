"""Ranking passages for a query: embedding cosine plus a character-bigram overlap.

The bigram term matters for Chinese, which the default English embedding model reads poorly,
and for exact names and numbers ("order LL-1042") that embeddings blur.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from atelier_sdk import Passage

LEXICAL_WEIGHT = 0.35
#: The default embedding model reads Chinese mostly as unknown tokens: lean on the bigrams there.
LEXICAL_WEIGHT_CJK = 0.8
_TOKEN = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]", re.IGNORECASE)


def bigrams(text: str) -> set[str]:
    """Word unigrams for Latin text, character bigrams for CJK runs."""
    tokens = [t.lower() for t in _TOKEN.findall(text)]
    grams = {t for t in tokens if len(t) > 1 and not _is_cjk(t)}
    cjk = [t for t in tokens if _is_cjk(t)]
    grams.update(a + b for a, b in zip(cjk, cjk[1:]))
    grams.update(cjk)
    return grams


def _is_cjk(token: str) -> bool:
    return len(token) == 1 and "\u3400" <= token <= "\u9fff"


def cjk_share(text: str) -> float:
    letters = [c for c in text if c.isalnum()]
    return sum(1 for c in letters if "\u3400" <= c <= "\u9fff") / len(letters) if letters else 0.0


def lexical_weight(query: str) -> float:
    return LEXICAL_WEIGHT_CJK if cjk_share(query) > 0.5 else LEXICAL_WEIGHT


def lexical_overlap(query: str, text: str) -> float:
    q = bigrams(query)
    if not q:
        return 0.0
    return len(q & bigrams(text)) / len(q)


def passage_embedding_text(title: str, text: str) -> str:
    """What gets embedded for a passage; the index and the in-memory retriever must agree."""
    return f"{title}\n{text}"


@dataclass(frozen=True)
class IndexedPassage:
    source_id: str
    chunk_id: str
    title: str
    text: str


def rank(query: str, query_vector: np.ndarray, passages: list[IndexedPassage], vectors: np.ndarray, top_k: int) -> list[Passage]:
    """The ``top_k`` best passages by combined score, best first."""
    if not passages:
        return []
    semantic = vectors @ query_vector.astype(np.float32)
    lexical = np.array([lexical_overlap(query, f"{p.title} {p.text}") for p in passages], dtype=np.float32)
    weight = lexical_weight(query)
    scores = (1 - weight) * semantic + weight * lexical
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [
        Passage(source_id=passages[i].source_id, chunk_id=passages[i].chunk_id, title=passages[i].title,
                text=passages[i].text, score=round(float(scores[i]), 4))
        for i in order
    ]


class InMemoryRetriever:
    """A ``Retriever`` over passages held in memory (tests, evaluation, small knowledge bases)."""

    def __init__(self, embedder, passages: list[IndexedPassage]) -> None:
        self.embedder = embedder
        self.passages = passages
        texts = [passage_embedding_text(p.title, p.text) for p in passages]
        self.vectors = embedder.embed(texts) if texts else np.zeros((0, 1), dtype=np.float32)

    def __call__(self, job_id: str, query: str, top_k: int) -> list[Passage]:
        return rank(query, self.embedder.embed([query])[0], self.passages, self.vectors, top_k)
