"""Two ended runs of one reference set side by side: how each metric moved and which cases got worse.

The API's ``GET /api/v1/evaluation/runs/{id}/compare/?to=...``, the run page's "Compare with" and the ``evaluate``
command (its ``--max-drop`` gates) all compare here. A comparison reads from ``run`` towards ``to``: a delta is
``run`` minus ``to`` (``to`` is the baseline, such as the version pinned now), and each metric says which way is
better, so that a caller needs no table of its own to tell a regression from an improvement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from atelier_platform.evaluation.models import EvaluationRun
from atelier_platform.evaluation.services import IMAGE_PLUGINS, INPUT_FINGERPRINT, EvaluationError, RunGone

HIGHER, LOWER = "higher", "lower"

#: What is compared, by the kind of run, with the direction that is better. Corpus BLEU and chrF (0-100) of text
#: answers; FID and KID (distances: 0 is the references' own distribution) and the mean cosine similarity of images.
TEXT_METRICS: tuple[tuple[str, str], ...] = (("chrf", HIGHER), ("bleu", HIGHER), ("mean_case_chrf", HIGHER))
IMAGE_METRICS: tuple[tuple[str, str], ...] = (("fid", LOWER), ("kid", LOWER), ("mean_similarity", HIGHER))
#: a text run's metrics of its cases' other references (``relevance``): the recommender's rankings against their
#: relevant items, the chatbot's cited sources against the expected ones; compared where either run has them
RELEVANCE_METRICS: tuple[tuple[str, str], ...] = (("ndcg", HIGHER), ("hit_rate", HIGHER), ("mrr", HIGHER),
                                                  ("source_recall", HIGHER), ("source_precision", HIGHER))

#: what a case's set gives it to be scored against: a case whose references changed between two runs compares
#: nothing fair; nor does one whose input or params changed (``INPUT_FINGERPRINT``, where both runs recorded it)
REFERENCE_KEYS = ("reference", "reference_items", "reference_sources", "k")
#: a case's primary score, by what its set scores (``primary_score``): (the part of its result that holds it, its name)
PRIMARY_SCORES = {"ranking": ("ranking", "ndcg"), "retrieval": ("retrieval", "recall"), "chrf": (None, "chrf"),
                  "similarity": (None, "similarity")}

#: cases listed per page of a comparison, and at most
DEFAULT_CASE_LIMIT = 50
MAX_CASE_LIMIT = 500


class RunsNotComparable(EvaluationError):
    code = "evaluation_runs_not_comparable"


class RunNotScored(EvaluationError):
    status_code = 409
    code = "evaluation_run_not_finished"


#: every run's count of failed cases (a job that failed, was blocked or cancelled): its metrics average only the
#: answered cases, so a version failing most of a set could score as well as one that answers it all
FAILED_CASES = "failed"


def compared_metrics(plugin_id: str) -> tuple[tuple[str, str], ...]:
    """Every metric a run of ``plugin_id`` may have, with the direction that is better."""
    return (IMAGE_METRICS if plugin_id in IMAGE_PLUGINS else TEXT_METRICS + RELEVANCE_METRICS) + ((FAILED_CASES, LOWER),)


def primary_score(plugin_id: str, results: list[dict]) -> str:
    """The per-case score a run's cases are ordered and compared by (a key of ``PRIMARY_SCORES``): an image's
    similarity to its reference; a ranking's NDCG where the set gives relevant items, the cited sources' recall where
    it gives expected sources; else a text's chrF."""
    from atelier_platform.evaluation.relevance import RANKING_FIELD, RETRIEVAL_FIELD

    if plugin_id in IMAGE_PLUGINS:
        return "similarity"
    if any(RANKING_FIELD in result for result in results):
        return "ranking"
    if any(RETRIEVAL_FIELD in result for result in results):
        return "retrieval"
    return "chrf"


#: A run's own figures for each primary score, as a set's runs are summed up (the settings page's evaluation section,
#: a set's page): the first two are shown, and ``TREND_METRICS`` is the one a set's trend charts (the run's mean of
#: that score, or its corpus figure): an image run's FID is null under 2 images, its mean similarity never is.
RUN_FIGURES = {"chrf": ("chrf", "bleu"), "ranking": ("ndcg", "hit_rate"), "retrieval": ("source_recall", "source_precision"),
               "similarity": ("fid", "mean_similarity")}
TREND_METRICS = {"chrf": "chrf", "ranking": "ndcg", "retrieval": "source_recall", "similarity": "mean_similarity"}


def runs_primary_score(plugin_id: str, metrics: Iterable[Any]) -> str:
    """``primary_score`` of a set's runs read from their metrics, not their results (a list of runs reads none of
    their cases): a run's metrics count ``ranking_cases`` (``retrieval_cases``) exactly when a case of it had
    relevant items (expected sources), as ``relevance.averages`` writes them."""
    if plugin_id in IMAGE_PLUGINS:
        return "similarity"
    shown = [figures for figures in metrics if isinstance(figures, dict)]
    if any("ranking_cases" in figures for figures in shown):
        return "ranking"
    if any("retrieval_cases" in figures for figures in shown):
        return "retrieval"
    return "chrf"


def score_path(primary: str) -> str:
    """Where a case's ``primary`` score is in its result: ``chrf``, ``similarity``, ``ranking.ndcg``, ``retrieval.recall``."""
    part, name = PRIMARY_SCORES[primary]
    return f"{part}.{name}" if part else name


def score_of(result: dict | None, primary: str) -> float | None:
    """A case's ``primary`` score (None: not answered, or no such reference in that case)."""
    part, name = PRIMARY_SCORES[primary]
    holder = (result or {}).get(part) if part else result
    value = holder.get(name) if isinstance(holder, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def is_scored(run: EvaluationRun) -> bool:
    """Ended, and no worker still scoring it (a cancelled image run waits for its scores after it is cancelled)."""
    return run.is_finished and run.scoring_sent_at is None


def check_comparable(run: EvaluationRun, to: EvaluationRun) -> None:
    """``run`` and ``to`` answer the same set of one project and have both ended, scored; else an error that says
    which: another project's run is none at all (404), another set's or the run itself a 400, a run going a 409."""
    if to.project_id != run.project_id:
        raise RunGone("No such evaluation run in this project.")
    if to.pk == run.pk:
        raise RunsNotComparable("A run compared with itself changes nothing: give another run of its reference set.",
                                details={"to": ["Give the id of another run of the same reference set."]})
    if to.reference_set_id != run.reference_set_id:
        raise RunsNotComparable(
            f"Run {to.pk} answered another reference set: compare runs of the same set (this one's is "
            f"{run.reference_set_id}).", details={"to": ["Give the id of a run of the same reference set."]})
    going = {name: shown for name, shown in (("run", run), ("to", to)) if not is_scored(shown)}
    if going:
        said = ", ".join(f"{shown.pk} is {_state(shown)}" for shown in going.values())
        raise RunNotScored(f"Only ended, scored runs compare: {said}. Try again once it has ended.",
                           details={name: {"id": str(shown.pk), "status": shown.status} for name, shown in going.items()})


def _state(run: EvaluationRun) -> str:
    return f"{run.status}, its images still being scored" if run.is_finished else run.status


@dataclass(frozen=True)
class MetricChange:
    name: str
    better: str
    run: float | None
    to: float | None

    @property
    def delta(self) -> float | None:
        """``run`` minus ``to``; None where either has no such figure (a run of no answered case, FID of one image)."""
        if self.run is None or self.to is None:
            return None
        return round(self.run - self.to, 6)

    @property
    def drop(self) -> float | None:
        """How much worse ``run`` is than ``to``, in the metric's units: positive worse, negative better."""
        delta = self.delta
        if delta is None:
            return None
        return round(0.0 - delta, 6) if self.better == HIGHER else delta

    @property
    def change(self) -> str | None:
        drop = self.drop
        if drop is None:
            return None
        return "regressed" if drop > 0 else "improved" if drop < 0 else "unchanged"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "better": self.better, "run": self.run, "to": self.to, "delta": self.delta,
                "change": self.change}


def figure(metrics: Any, name: str) -> float | None:
    """A run's figure ``name`` (None: it has none, a run of no answered case, FID of one image)."""
    value = metrics.get(name) if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def metric_changes(run: EvaluationRun, to: EvaluationRun) -> list[MetricChange]:
    """Each metric of the run's kind; a relevance metric only where either run has it (a set of text references alone
    has no NDCG to compare)."""
    changes = [MetricChange(name, better, figure(run.metrics, name), figure(to.metrics, name))
               for name, better in compared_metrics(run.plugin_id)]
    relevance = {name for name, _ in RELEVANCE_METRICS}
    return [change for change in changes if change.name not in relevance or change.run is not None or change.to is not None]


#: how a case moved, worst first (the order of ``worst_first``)
CASE_CHANGES = ("newly_failed", "scored", "both_failed", "fixed", "not_compared")


@dataclass(frozen=True)
class CasePair:
    """A case of ``run`` (its result) beside the same case of ``to`` (None: ``to`` had no case at that index, its
    set was changed between the runs)."""

    case: dict[str, Any]
    other: dict[str, Any] | None
    score: str

    @property
    def index(self) -> int:
        return self.case["index"]

    @property
    def delta(self) -> float | None:
        """``run``'s score minus ``to``'s where both answered (higher is better for every primary score)."""
        mine, theirs = score_of(self.case, self.score), score_of(self.other, self.score)
        if mine is None or theirs is None:
            return None
        return round(mine - theirs, 4)

    @property
    def reference_changed(self) -> bool:
        return self.other is not None and any(self.other.get(key) != self.case.get(key) for key in REFERENCE_KEYS)

    @property
    def input_changed(self) -> bool:
        """The two runs asked this case other questions: their fingerprints of its input and params differ. Only
        where both recorded one (a run started before they were has none: an edit there cannot be seen)."""
        mine = self.case.get(INPUT_FINGERPRINT)
        theirs = (self.other or {}).get(INPUT_FINGERPRINT)
        return bool(mine) and bool(theirs) and mine != theirs

    @property
    def change(self) -> str:
        if self.other is None:
            return "not_compared"
        failed, was_failed = self.case.get("status") == "failed", self.other.get("status") == "failed"
        if failed and was_failed:
            return "both_failed"
        if failed:
            return "newly_failed"
        if was_failed:
            return "fixed"
        return "scored"

    def as_dict(self) -> dict[str, Any]:
        other = self.other or {}
        error, other_error = self.case.get("error") or {}, other.get("error") or {}
        return {
            "index": self.index, "change": self.change, "delta": self.delta, "reference_changed": self.reference_changed,
            "input_changed": self.input_changed,
            "status": self.case.get("status"), "to_status": other.get("status"),
            "score": score_of(self.case, self.score), "to_score": score_of(other, self.score),
            "error": error.get("code"), "to_error": other_error.get("code"),
            # the answers themselves, as each run's own results show them (text runs; an image is a link there)
            "output": self.case.get("output"), "to_output": other.get("output"),
            "job_id": self.case.get("job_id"), "to_job_id": other.get("job_id"),
        }


def case_pairs(run: EvaluationRun, to: EvaluationRun) -> list[CasePair]:
    """Each case of ``run``, in the set's order, beside ``to``'s."""
    theirs = {result["index"]: result for result in to.results or []}
    score = primary_score(run.plugin_id, run.results or [])
    return [CasePair(result, theirs.get(result["index"]), score) for result in run.results or []]


def worst_first(pairs: list[CasePair]) -> list[CasePair]:
    """Regressions first: the cases ``run`` failed that ``to`` answered, then the answered ones by how much their
    score fell (the largest fall first), then those both failed, those ``run`` answers now, those not compared."""
    return sorted(pairs, key=lambda pair: (CASE_CHANGES.index(pair.change),
                                           pair.delta if pair.delta is not None else 0.0, pair.index))


@dataclass(frozen=True)
class Comparison:
    run: EvaluationRun
    to: EvaluationRun
    metrics: list[MetricChange]
    cases: list[CasePair]  # worst first

    @property
    def set_changed(self) -> bool:
        return bool(self.changed_cases())

    @property
    def inputs_compared(self) -> bool:
        """Both runs recorded each case's input fingerprint, so an input edited under the same reference shows;
        False where either started before they were recorded (compared by their references alone)."""
        return all(result.get(INPUT_FINGERPRINT) for run in (self.run, self.to) for result in run.results or [])

    def changed_cases(self) -> tuple[int, ...]:
        """The indexes of the cases the set changed between the runs: scored against other references, asked with
        another input or params (where both runs recorded them), or that only one of the runs had (a case added or
        removed)."""
        mine = {pair.index for pair in self.cases}
        changed = {pair.index for pair in self.cases
                   if pair.reference_changed or pair.input_changed or pair.other is None}
        changed |= {result["index"] for result in self.to.results or [] if result.get("index") not in mine}
        return tuple(sorted(changed))

    def metric(self, name: str) -> MetricChange:
        """The change of ``name``; one with no figures where neither run has it (a gate on NDCG of a set without
        relevant items cannot show it held)."""
        found = next((change for change in self.metrics if change.name == name), None)
        return found or MetricChange(name, dict(compared_metrics(self.run.plugin_id)).get(name, HIGHER), None, None)


def compare(run: EvaluationRun, to: EvaluationRun) -> Comparison:
    """``run`` against ``to`` (checked: ``check_comparable``)."""
    check_comparable(run, to)
    return Comparison(run, to, metric_changes(run, to), worst_first(case_pairs(run, to)))
