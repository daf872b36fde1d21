"""A reference set's history: its runs newest first, a page at a time, and the trend of its primary metric across its
succeeded runs, one series per model version that answered them; which version the project pins now. The
dashboard's set page reads it; the settings page's evaluation section attributes runs to versions the same way
(``answered_by``).

A few queries whatever the number of runs: a page of runs, the trend's runs (their metrics, not their results), the
plugin's versions and the project's pin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from atelier_platform.accounts.models import Project
from atelier_platform.catalog.models import ModelVersion
from atelier_platform.evaluation import comparison
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.evaluation.services import evaluable_model_versions

RUNS_PER_PAGE = 25
#: past this page (2.5 million runs in) the list is empty: an unbounded page number overflows the database's OFFSET
MAX_PAGE = 100_000
#: the newest succeeded runs a trend charts: enough for a year of weekly runs of a few versions, and a chart that reads
TREND_RUNS = 100
#: the versions of a plugin read to name the model that answered a run of "the current model"
VERSIONS_READ = 500

#: the series of a run of "the current model" answered by the plugin's default model (no version pinned)
DEFAULT = "default"
#: the series of a run of "the current model" not answered by one model (the pin changed while it ran), or going
CURRENT = "current"


def answered_by(run: EvaluationRun, by_name: dict[tuple[str, str], int]) -> str:
    """The model a run's scores belong to, as a series key: ``v<id>``, the version it named; else (a run of "the
    current model") the one that answered it, which its metrics name ("default" or a version's name, looked up in
    ``by_name``: (plugin, name) -> id), since the current model may have changed since and its scores must not be
    taken for the new one's; ``gone:<name>`` for a version no longer known; ``current`` for a run going or answered
    by several."""
    if run.model_version_id is not None:
        return f"v{run.model_version_id}"
    names = (run.metrics or {}).get("model_versions") or []
    if len(names) == 1:
        if names[0] == DEFAULT:
            return DEFAULT
        found = by_name.get((run.plugin_id, names[0]))
        return f"v{found}" if found is not None else f"gone:{names[0]}"
    return CURRENT


def versions_by_name(versions) -> dict[tuple[str, str], int]:
    return {(version.plugin_id, version.version): version.pk for version in versions}


@dataclass
class Series:
    """The succeeded runs of one model in a set's trend, oldest first, with the trend metric's value of each."""

    key: str
    version: ModelVersion | None  # None: the default model, a version gone, or several
    name: str  # a gone version's name; "" otherwise
    pinned: bool
    points: list[tuple[EvaluationRun, float]] = field(default_factory=list)


@dataclass
class SetHistory:
    reference_set: ReferenceSet
    runs: list[EvaluationRun]  # this page's, newest first
    page: int
    has_next: bool
    primary: str  # comparison.PRIMARY_SCORES' key
    figures: tuple[str, str]  # the two figures each run shows (comparison.RUN_FIGURES)
    trend_metric: str
    better: str  # comparison.HIGHER or LOWER
    trend: list[EvaluationRun]  # the succeeded runs charted, oldest first
    series: list[Series]  # in the order each first appears in the trend
    answered: dict[Any, str]  # each run's series key, by run id (this page's and the trend's)
    evaluable: list[ModelVersion]  # the plugin's versions the project may evaluate (and pin), newest first
    versions: dict[int, ModelVersion]  # those and any other a run of this page named, by id
    pinned_key: str  # the series key of the model the project uses now: its pin, else the default model
    pinned: ModelVersion | None


def set_history(project: Project, reference_set: ReferenceSet, page: int = 1) -> SetHistory:
    """``reference_set``'s runs (page ``page``, 1 the newest) and its trend. The caller looked the set up in
    ``project``."""
    from atelier_platform.catalog.configuration import pins

    page = min(max(1, page), MAX_PAGE)
    start = (page - 1) * RUNS_PER_PAGE
    runs = list(EvaluationRun.objects.filter(project=project, reference_set=reference_set)
                .select_related("model_version", "created_by").defer("results")
                .order_by("-created_at", "-id")[start:start + RUNS_PER_PAGE + 1])
    has_next = len(runs) > RUNS_PER_PAGE
    runs = runs[:RUNS_PER_PAGE]
    scored = list(EvaluationRun.objects.filter(project=project, reference_set=reference_set, status=RunStatus.SUCCEEDED)
                  .only("id", "plugin_id", "model_version_id", "metrics", "created_at", "finished_at", "status")
                  .order_by("-created_at", "-id")[:TREND_RUNS])[::-1]
    plugin_id = reference_set.plugin_id
    evaluable = list(evaluable_model_versions(project, plugin_id).order_by("-created_at")[:VERSIONS_READ])
    versions = {version.pk: version for version in evaluable}
    for run in runs:  # a version the project may no longer use still names its runs
        if run.model_version is not None:
            versions.setdefault(run.model_version.pk, run.model_version)
    by_name = versions_by_name(versions.values())
    pin_id = pins(project).get(plugin_id)
    pinned = versions.get(pin_id) if pin_id is not None else None
    pinned_key = f"v{pin_id}" if pin_id is not None else DEFAULT

    primary = comparison.runs_primary_score(plugin_id, [run.metrics for run in [*scored, *runs]])
    metric = comparison.TREND_METRICS[primary]
    answered = {run.pk: answered_by(run, by_name) for run in [*runs, *scored]}
    series: dict[str, Series] = {}
    trend = []
    for run in scored:
        value = comparison.figure(run.metrics, metric)
        if value is None:  # a run of no answered case with that reference has no such figure
            continue
        key = answered[run.pk]
        if key not in series:
            version = versions.get(int(key[1:])) if key.startswith("v") else None
            series[key] = Series(key=key, version=version, name=key[5:] if key.startswith("gone:") else "",
                                 pinned=key == pinned_key)
        series[key].points.append((run, value))
        trend.append(run)
    return SetHistory(reference_set=reference_set, runs=runs, page=page, has_next=has_next, primary=primary,
                      figures=comparison.RUN_FIGURES[primary], trend_metric=metric,
                      better=dict(comparison.compared_metrics(plugin_id))[metric], trend=trend,
                      series=list(series.values()), answered=answered, evaluable=evaluable, versions=versions, pinned_key=pinned_key,
                      pinned=pinned)
