"""Ranking and retrieval references, beside the reference texts: what a ``recommender_copy`` case expects its ranking
to put first (``reference_items``: ids of its candidate items, optionally graded ``{id: gain}``), and which documents
of the project's knowledge base a ``chatbot`` case expects its answer to be grounded in (``reference_sources``: their
ids or titles, stored as ids). Checked when a set is saved (``check_*``), scored per case once its job has answered
(``score_*``) and averaged over a run's answered cases (``averages``).

The metrics, each at a cut-off k (the number of items or passages the output holds, or the case's own ``k``):

- hit rate@k: 1 when a relevant item is among the first k, else 0;
- MRR (reciprocal rank): 1 / the rank of the first relevant item among the first k, 0 when there is none;
- NDCG@k: DCG@k (the sum of each item's gain / log2(rank + 1)) over the DCG@k of the ideal order of the relevant
  items (scikit-learn's ``ndcg_score``: linear gains, ranks from 1);
- source recall@k: the expected documents among those the first k passages came from, over the expected documents;
- source precision@k: the same count over the documents the first k passages came from (0 when none came).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

#: the reference kinds besides a text, by plugin: the case's field and what its metrics measure
RANKING_FIELD, RETRIEVAL_FIELD = "reference_items", "reference_sources"
REFERENCE_FIELDS: dict[str, str] = {"recommender_copy": RANKING_FIELD, "chatbot": RETRIEVAL_FIELD}
#: the largest gain of a graded relevant item (gains are relative: 1, 2, 3 is the usual scale)
MAX_GAIN = 100
#: relevant items per case: the recommender's most candidate items (each relevant item is one of them, once)
MAX_REFERENCE_ITEMS = 200
#: expected documents per case (a chatbot retrieves at most 8 passages)
MAX_REFERENCE_SOURCES = 20
#: the largest stated cut-off (a recommender returns at most 10 items, a chatbot 8 passages)
MAX_K = 10
#: the run metrics of each kind, averaged over the answered cases that have that kind of reference
RANKING_METRICS = ("hit_rate", "mrr", "ndcg")
RETRIEVAL_METRICS = ("source_recall", "source_precision")

#: how a checker refuses a field: (path, stable code, English message, values) → nothing; the caller collects them
Refuse = Callable[..., None]


# --- checking a case's references -------------------------------------------------------------------------

def _candidate_ids(input_data: Any) -> set[str] | None:
    """The ids of a recommender case's candidate items; None when its input is not a list of items (the plugin's
    schema names that)."""
    items = input_data.get("items") if isinstance(input_data, dict) else None
    if not isinstance(items, list):
        return None
    return {item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)}


def check_reference_items(value: Any, input_data: Any, where: str, refuse: Refuse) -> Any:
    """A case's ``reference_items`` as stored: a list of distinct ids (each gain 1) or ``{id: gain}`` (gains above 0,
    at most ``MAX_GAIN``), every id one of the case's candidate items; refusals name ``cases.3.reference_items.1``
    (in a list, by position; in an object, by id)."""
    path = f"{where}.{RANKING_FIELD}"
    if isinstance(value, list):
        entries = list(enumerate(value))
    elif isinstance(value, dict):
        entries = list(value.items())
    else:
        refuse(path, "evaluation.reference_items_type", "A non-empty list of item ids, or an object of item ids and "
                                                        "their gains ({\"id\": 2}).")
        return None
    if not entries:
        refuse(path, "evaluation.reference_items_empty", "Name at least one relevant item.")
        return None
    if len(entries) > MAX_REFERENCE_ITEMS:
        # refused whole: 100,000 repeated ids were as many refusals, a request of a megabyte answered with 40
        refuse(path, "evaluation.reference_items_too_many", f"At most {MAX_REFERENCE_ITEMS} relevant items (a case "
                                                            f"has at most {MAX_REFERENCE_ITEMS} candidates).",
               limit=MAX_REFERENCE_ITEMS)
        return None
    candidates = _candidate_ids(input_data)
    seen: set[str] = set()
    fine = True
    for key, entry in entries:
        item_id = entry if isinstance(value, list) else key
        at = f"{path}.{key}"
        if not isinstance(item_id, str) or not item_id:
            refuse(at, "evaluation.reference_item_not_id", "An item id (a text).")
        elif candidates is not None and item_id not in candidates:
            refuse(at, "evaluation.reference_item_unknown", f"No candidate item of this case has the id {item_id!r}: "
                                                            "name one of the case's input items.", id=item_id[:64])
        elif item_id in seen:
            refuse(at, "evaluation.reference_item_repeated", f"{item_id!r} is named twice.", id=item_id[:64])
        elif isinstance(value, dict) and not _is_gain(entry):
            refuse(at, "evaluation.reference_item_gain", f"A gain: a number above 0, at most {MAX_GAIN}.",
                   max_gain=MAX_GAIN)
        else:
            seen.add(item_id)
            continue
        fine = False
    return value if fine else None


def _is_gain(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 < value <= MAX_GAIN)


def check_reference_sources(value: Any, input_data: Any, documents: dict[str, str], where: str,
                            refuse: Refuse) -> list[str] | None:
    """A case's ``reference_sources`` as stored: the source ids of documents of the project's knowledge base, each
    named by its id or its title (``documents``: source id → title); the case must retrieve (``use_knowledge``)."""
    path = f"{where}.{RETRIEVAL_FIELD}"
    if not isinstance(value, list) or not value:
        refuse(path, "evaluation.reference_sources_type", "A non-empty list of knowledge-base document ids or titles.")
        return None
    if len(value) > MAX_REFERENCE_SOURCES:
        refuse(path, "evaluation.reference_sources_too_many", f"At most {MAX_REFERENCE_SOURCES} documents.",
               limit=MAX_REFERENCE_SOURCES)
        return None
    if isinstance(input_data, dict) and input_data.get("use_knowledge") is False:
        refuse(path, "evaluation.reference_sources_without_knowledge", "This case does not use the knowledge base "
                                                                       "(use_knowledge is false): it retrieves no "
                                                                       "sources to score.")
        return None
    by_title: dict[str, list[str]] = {}
    for source_id, title in documents.items():
        by_title.setdefault(title.strip().casefold(), []).append(source_id)
    found: list[str] = []
    for position, named in enumerate(value):
        at = f"{path}.{position}"
        if not isinstance(named, str) or not named.strip():
            refuse(at, "evaluation.reference_source_not_text", "A document's id or title (a text).")
            continue
        if named in documents:
            source_id = named
        else:
            titled = by_title.get(named.strip().casefold(), [])
            if len(titled) > 1:
                refuse(at, "evaluation.reference_source_ambiguous", f"{len(titled)} documents have the title "
                                                                    f"{named[:100]!r}: name the one meant by its id.",
                       title=named[:100], count=len(titled))
                continue
            if not titled:
                refuse(at, "evaluation.reference_source_unknown", f"The project's knowledge base has no document with "
                                                                  f"the id or title {named[:100]!r}.", name=named[:100])
                continue
            source_id = titled[0]
        if source_id in found:
            refuse(at, "evaluation.reference_source_repeated", f"{source_id!r} is named twice.", id=source_id[:100])
            continue
        found.append(source_id)
    return found if len(found) == len(value) else None


def check_k(value: Any, where: str, refuse: Refuse) -> int | None:
    if type(value) is not int or not 1 <= value <= MAX_K:
        refuse(f"{where}.k", "evaluation.k_range", f"A whole number from 1 to {MAX_K}: the cut-off of the ranking or "
                                                   "retrieval metrics.", limit=MAX_K)
        return None
    return value


# --- scoring a case -------------------------------------------------------------------------------------------

def gains_of(reference_items: list | dict) -> dict[str, float]:
    """Each relevant item's gain: as graded, or 1 each in a list."""
    if isinstance(reference_items, dict):
        return dict(reference_items)
    return {str(item_id): 1 for item_id in reference_items}


def ranked_ids(content: dict[str, Any]) -> list[str]:
    """A ``recommender_copy`` output's item ids, best first."""
    recommendations = sorted(content.get("recommendations") or [], key=lambda r: r.get("rank", 0))
    return [str(r.get("item_id")) for r in recommendations]


def ndcg_at_k(ranked_gains: list[float], left_out_gains: Iterable[float], k: int) -> float:
    """NDCG@k of a ranking whose first items have ``ranked_gains``, best first, among candidates of which the relevant
    ones the ranking left out (or put beyond k) have ``left_out_gains``, by scikit-learn's ``ndcg_score``.

    It scores every candidate, so the left-out items are given the lowest score, tied; it averages the gains of tied
    items, which would credit a left-out relevant item with part of a place within k that no item filled (a k beyond
    the items returned). Zero-gain fillers take those places, and one more keeps it above its minimum of two
    candidates: neither changes DCG or the ideal DCG."""
    from sklearn.metrics import ndcg_score  # imported here: only the process that scores a run needs it

    ranked_gains, left_out = list(ranked_gains)[:k], [gain for gain in left_out_gains if gain > 0]
    if not any(ranked_gains) and not left_out:
        return 0.0
    placed = ranked_gains + [0.0] * (k - len(ranked_gains) + 1)
    scores = [float(len(placed) - position) for position in range(len(placed))] + [0.0] * len(left_out)
    return float(ndcg_score([placed + left_out], [scores], k=k))


def score_ranking(content: dict[str, Any], reference_items: list | dict, k: int | None) -> dict[str, Any]:
    """A ``recommender_copy`` case's ranking against its relevant items: hit@k, reciprocal rank, NDCG@k, and what was
    ranked (each id with its gain, 0: not relevant) for the run page."""
    gains = gains_of(reference_items)
    ranked = ranked_ids(content)
    k = k or len(ranked)
    top = ranked[:k]
    first = next((position for position, item_id in enumerate(top, start=1) if gains.get(item_id, 0) > 0), None)
    ndcg = ndcg_at_k([gains.get(item_id, 0.0) for item_id in top],
                     [gain for item_id, gain in gains.items() if item_id not in top], k) if k else 0.0
    return {"k": k, "ranked": [{"id": item_id, "gain": gains.get(item_id, 0)} for item_id in ranked],
            "missed": sorted(set(gains) - set(top)), "hit": 1.0 if first else 0.0,
            "reciprocal_rank": round(1 / first, 4) if first else 0.0, "ndcg": round(ndcg, 4)}


def score_retrieval(content: dict[str, Any], reference_sources: list[str], k: int | None) -> dict[str, Any]:
    """A ``chatbot`` case's sources (the passages its answer was given, and cites) against the documents expected:
    recall@k and precision@k by document (several passages of one document count once), and the documents cited, in
    the order of their first passage, each marked expected or not."""
    sources = content.get("sources") or []
    k = k or len(sources)
    cited: list[dict[str, Any]] = []
    for source in sources[:k]:
        source_id = str(source.get("source_id"))
        if source_id not in {c["source_id"] for c in cited}:
            cited.append({"source_id": source_id, "title": str(source.get("title") or ""),
                          "expected": source_id in reference_sources})
    found = sum(1 for c in cited if c["expected"])
    return {"k": k, "cited": cited, "missed": [s for s in reference_sources if s not in {c["source_id"] for c in cited}],
            "recall": round(found / len(reference_sources), 4) if reference_sources else 0.0,
            "precision": round(found / len(cited), 4) if cited else 0.0}


def averages(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's ranking and retrieval metrics: each the mean over its answered cases that have that reference (None
    when none has), with how many cases each mean is of."""
    ranking = [r["ranking"] for r in results if r.get("ranking")]
    retrieval = [r["retrieval"] for r in results if r.get("retrieval")]

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    found: dict[str, Any] = {}
    if any(RANKING_FIELD in r for r in results):
        found.update(ranking_cases=len(ranking), hit_rate=mean([c["hit"] for c in ranking]),
                     mrr=mean([c["reciprocal_rank"] for c in ranking]), ndcg=mean([c["ndcg"] for c in ranking]))
    if any(RETRIEVAL_FIELD in r for r in results):
        found.update(retrieval_cases=len(retrieval), source_recall=mean([c["recall"] for c in retrieval]),
                     source_precision=mean([c["precision"] for c in retrieval]))
    return found
