"""Ranking candidate items for a profile: relevance, then MMR so near-duplicates don't crowd the list.

Relevance is the cosine between the profile's and the item's embeddings (unit vectors from the
caller), blended with word / character-bigram overlap as the knowledge-base retrieval does: the
packaged all-MiniLM-L6-v2 reads Chinese as unknown tokens, so for CJK text its cosines are noise
and the overlap must carry the ranking; for English it sharpens exact words ("teak", "linen").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from atelier_plugins.recommender_copy.checks import is_cjk
from atelier_plugins.recommender_copy.schemas import CatalogueItem, Profile
from atelier_plugins.text.retrieval import LEXICAL_WEIGHT, bigrams, lexical_overlap

#: Weight of the lexical term when the profile is mostly CJK (see the module docstring).
CJK_LEXICAL_WEIGHT = 0.9
#: Weight MMR gives redundancy at the highest diversity (1). Relevance keeps the rest, so that even
#: then the picks follow the shopper's profile, not the order the candidates came in; and diversity
#: 0.7 still keeps an item's near-twin (cosine 0.9) out of a list that has its original.
MAX_REDUNDANCY_WEIGHT = 0.8
#: Items at least this alike (``item_similarity``) are one product listed twice: the same text up to
#: case and spacing gives 1.0, while a colour or size variant ("Linen Shirt" and "Linen Shirt Blue")
#: stays below 0.98.
DUPLICATE_SIMILARITY = 0.99


def item_text(item: CatalogueItem) -> str:
    """What is embedded for an item: everything it says about itself, title first."""
    parts = [item.title.strip()]
    if item.description.strip():
        parts.append(item.description.strip())
    if item.tags:
        parts.append(", ".join(item.tags))
    values = [value.strip() for value in item.attributes.values() if value.strip()]
    if values:
        parts.append(", ".join(values))
    return ". ".join(parts)


def find_recent(profile: Profile, items: Sequence[CatalogueItem]) -> list[int]:
    """Indexes of candidates the profile lists as recent, by id or (case-insensitive) title, in profile order."""
    by_id = {item.id: index for index, item in enumerate(items)}
    by_title: dict[str, int] = {}
    for index, item in enumerate(items):
        by_title.setdefault(item.title.strip().casefold(), index)
    found: list[int] = []
    for reference in profile.recent_items:
        index = by_id.get(reference, by_title.get(reference.strip().casefold()))
        if index is not None and index not in found:
            found.append(index)
    return found


def profile_text(profile: Profile, items: Sequence[CatalogueItem], recent: Sequence[int]) -> str:
    """What is embedded for the shopper: their interests and the titles of recent items we know."""
    parts = [profile.interests.strip()] if profile.interests.strip() else []
    titles = [items[index].title.strip() for index in recent]
    if titles:
        parts.append("Recently: " + "; ".join(titles))
    return ". ".join(parts)


def mmr_select(
    relevance: np.ndarray,
    similarity: np.ndarray,
    count: int,
    *,
    diversity: float,
    pools: Sequence[Sequence[int]],
) -> list[int]:
    """Maximal marginal relevance: repeatedly take the candidate with the best
    ``lam * relevance - (1 - lam) * max similarity to what was already taken``, with
    ``lam = 1 - MAX_REDUNDANCY_WEIGHT * diversity``: diversity 0 ranks by relevance alone, higher
    values avoid near-duplicates more, and relevance always keeps some weight.

    The first pick is the most relevant candidate (nothing is taken yet that it could duplicate).
    ``pools`` are tried in order: candidates of a later pool are taken only when the earlier
    pools are used up (recently bought items come last). With any diversity, a candidate that
    duplicates one already taken (``DUPLICATE_SIMILARITY``) comes after all of them: MMR's
    redundancy term alone would let a product listed twice under two ids fill two places of a
    list at moderate diversity, with copy to match. Ties go to the earlier candidate.
    """
    lam = 1.0 - MAX_REDUNDANCY_WEIGHT * float(diversity)
    chosen: list[int] = []
    duplicates: list[int] = []

    def take_from(pool: Sequence[int], *, set_duplicates_aside: bool) -> None:
        remaining = list(pool)
        while remaining and len(chosen) < count:
            if chosen:
                redundancy = similarity[np.ix_(remaining, chosen)].max(axis=1)
                if set_duplicates_aside and (redundancy >= DUPLICATE_SIMILARITY).any():
                    duplicates.extend(index for index, r in zip(remaining, redundancy) if r >= DUPLICATE_SIMILARITY)
                    remaining = [index for index, r in zip(remaining, redundancy) if r < DUPLICATE_SIMILARITY]
                    continue
                scores = lam * relevance[remaining] - (1.0 - lam) * redundancy
            else:
                scores = relevance[remaining]
            best = int(np.argmax(scores))
            chosen.append(remaining.pop(best))

    for pool in pools:
        take_from(pool, set_duplicates_aside=diversity > 0)
    take_from(duplicates, set_duplicates_aside=False)
    return chosen


def _rescaled(relevance: np.ndarray) -> np.ndarray:
    """Relevance stretched to 0..1 over the candidates, for MMR.

    A profile and an item are different kinds of text: their cosines sit lower (0.5 is a strong
    match) than the cosines between two items (near-duplicates reach 0.9). Unscaled, the
    redundancy term would outweigh relevance at moderate diversity and push unrelated items up.
    """
    if relevance.size == 0:
        return relevance
    low, high = float(relevance.min()), float(relevance.max())
    if high - low < 1e-9:
        return np.zeros_like(relevance)
    return (relevance - low) / (high - low)


@dataclass(frozen=True)
class RankedItem:
    index: int  # position in the request's item list
    score: float  # relevance (cosine to the profile)
    recent: bool  # recommended although listed as recent: there were too few other candidates


def lexical_weight(text: str) -> float:
    cjk = sum(1 for c in text if is_cjk(c))
    letters = sum(1 for c in text if c.isalpha())
    return CJK_LEXICAL_WEIGHT if cjk and cjk * 2 >= letters else LEXICAL_WEIGHT


def relevance_scores(profile: str, profile_vector: np.ndarray | None, item_texts: Sequence[str], item_vectors: np.ndarray) -> np.ndarray:
    """Relevance of each item to the profile; all zeros without a profile."""
    if profile_vector is None or not profile.strip():
        return np.zeros(len(item_texts), dtype=np.float64)
    weight = lexical_weight(profile)
    semantic = (item_vectors @ profile_vector).astype(np.float64)
    lexical = np.array([lexical_overlap(profile, text) for text in item_texts], dtype=np.float64)
    return (1 - weight) * semantic + weight * lexical


def item_similarity(item_texts: Sequence[str], item_vectors: np.ndarray) -> np.ndarray:
    """How alike two items are, for MMR: cosine blended with the Jaccard overlap of their words."""
    semantic = (item_vectors @ item_vectors.T).astype(np.float64)
    grams = [bigrams(text) for text in item_texts]
    n = len(grams)
    jaccard = np.eye(n, dtype=np.float64)
    for i in range(n):
        for j in range(i + 1, n):
            union = len(grams[i] | grams[j])
            jaccard[i, j] = jaccard[j, i] = len(grams[i] & grams[j]) / union if union else 0.0
    weights = np.array([lexical_weight(text) for text in item_texts], dtype=np.float64)
    pair_weight = (weights[:, None] + weights[None, :]) / 2
    return (1 - pair_weight) * semantic + pair_weight * jaccard


def rank_items(
    relevance: np.ndarray,
    similarity: np.ndarray,
    count: int,
    *,
    diversity: float,
    recent: Sequence[int] = (),
) -> list[RankedItem]:
    """The ``count`` items to recommend, best first, by MMR over ``relevance`` and ``similarity``.

    Items listed in ``recent`` come only after all the others. When every item is equally
    relevant (nothing known about the shopper), the caller's order decides and MMR still
    spreads the picks.
    """
    n = len(relevance)
    recent_set = set(recent)
    fresh = [index for index in range(n) if index not in recent_set]
    again = [index for index in range(n) if index in recent_set]
    chosen = mmr_select(_rescaled(relevance), similarity, count, diversity=diversity, pools=[fresh, again])
    return [RankedItem(index, float(relevance[index]), index in recent_set) for index in chosen]
