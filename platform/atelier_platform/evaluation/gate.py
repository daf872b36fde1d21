"""Evaluation as a release gate: which run a new one is measured against, and whether a metric fell further than
allowed. The ``evaluate`` command (CI) asks here; so does a promotion that requires an evaluation
(``catalog.configuration.configure_plugin``'s ``require_evaluation``).

A limit is a metric's largest allowed *drop*: how much worse the new run may be than the baseline in the metric's
own units (``comparison.MetricChange.drop``: a fall for chrF, BLEU and similarity, a rise for FID and KID).
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from atelier_platform.accounts.models import Project
from atelier_platform.catalog import models as catalog_models
from atelier_platform.catalog.models import ModelVersion
from atelier_platform.evaluation import comparison
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.evaluation.services import EvaluationError

#: what a run answered with when the project pinned nothing: the plugin's default model (its outputs' provenance; no
#: registered version may take the name, so a run of "the current model" that names it ran unpinned)
DEFAULT_MODEL_NAME = catalog_models.DEFAULT_MODEL_NAME
#: the newest runs of a set read when looking for the baseline among runs of "the current model"
BASELINE_CANDIDATES = 200


class GateError(EvaluationError):
    code = "invalid_evaluation_gate"


def metric_names(plugin_id: str) -> list[str]:
    return [name for name, _ in comparison.compared_metrics(plugin_id)]


def checked_max_drops(plugin_id: str, max_drops: dict[str, Any], *, field: str = "max_drop") -> dict[str, float]:
    """``{"chrf": 1.5}`` checked: each a metric runs of the plugin have, each limit a number from 0."""
    known = metric_names(plugin_id)
    if not isinstance(max_drops, dict) or not max_drops:
        raise GateError(f"Name at least one metric and its largest allowed drop, such as {{\"{known[0]}\": 1.5}}.",
                        details={field: [f"Metrics of {plugin_id} runs: {', '.join(known)}."]})
    problems: dict[str, list[str]] = {}
    checked: dict[str, float] = {}
    for name, limit in max_drops.items():
        if name not in known:
            problems[f"{field}.{name}"] = [f"{plugin_id} runs have no metric {name!r}; they have: {', '.join(known)}."]
        elif (isinstance(limit, bool) or not isinstance(limit, (int, float))
              or not (0 <= limit <= sys.float_info.max)):  # an int past a float's range: float() raised, a 500
            problems[f"{field}.{name}"] = ["A number from 0: how much worse than the baseline the metric may be."]
        else:
            checked[name] = float(limit)
    if problems:
        raise GateError("The evaluation gate's limits were not understood: correct the metrics named.", details=problems)
    return checked


def parse_max_drops(plugin_id: str, specs: Iterable[str]) -> dict[str, float]:
    """``["chrf=1.5", "bleu=2"]`` (the command's ``--max-drop``) as ``checked_max_drops`` takes them."""
    parsed: dict[str, Any] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if name.strip().lower() in parsed:  # the later would silently win: a pipeline's typo hidden
            raise GateError(f"{name.strip().lower()} is limited twice: give each metric one --max-drop.",
                            details={"--max-drop": [f"{name.strip().lower()} named twice."]})
        try:
            parsed[name.strip().lower()] = float(value) if sep else None
        except ValueError:
            parsed[name.strip().lower()] = value
    return checked_max_drops(plugin_id, parsed, field="--max-drop")


# --- baselines ------------------------------------------------------------------------------------------------

def answered_by(run: EvaluationRun) -> str | None:
    """The name of the one model version whose answers the run scored: its own, else the one its metrics name (a run
    of "the current model" at the time); None where several or none answered."""
    if run.model_version_id is not None:
        return run.model_version.version
    names = (run.metrics or {}).get("model_versions") or []
    return names[0] if len(names) == 1 else None


def newest_succeeded_run(project: Project, reference_set: ReferenceSet, version: ModelVersion | None, *,
                         exclude=None, before: EvaluationRun | None = None) -> EvaluationRun | None:
    """The newest succeeded run of the set whose answers came from ``version`` (None: the plugin's default model),
    whether it named the version or ran "the current model" while it was pinned; started before ``before`` if given
    (the baseline a run was measured against when it started, found again for a replayed start)."""
    runs = (EvaluationRun.objects.filter(project=project, reference_set=reference_set, status=RunStatus.SUCCEEDED)
            .select_related("model_version").defer("results").order_by("-created_at", "-pk"))
    if exclude is not None:
        runs = runs.exclude(pk=exclude)
    if before is not None:
        runs = runs.filter(created_at__lt=before.created_at).exclude(pk=before.pk)
    name = version.version if version is not None else DEFAULT_MODEL_NAME
    named = runs.filter(model_version=version).first() if version is not None else None
    # a run of "the current model" answered by that version counts too; the newer of the two wins
    for run in runs.filter(model_version__isnull=True)[:BASELINE_CANDIDATES]:
        if answered_by(run) == name:
            return run if named is None or (run.created_at, str(run.pk)) > (named.created_at, str(named.pk)) else named
    return named


def pinned_version(project: Project, plugin_id: str) -> ModelVersion | None:
    from atelier_platform.catalog.configuration import plugin_configuration

    return plugin_configuration(project, plugin_id).model_version


def pinned_baseline(project: Project, reference_set: ReferenceSet, *, exclude=None,
                    before: EvaluationRun | None = None) -> EvaluationRun | None:
    """The newest succeeded run of the set on the version the project has pinned now (the default model if none)."""
    return newest_succeeded_run(project, reference_set, pinned_version(project, reference_set.plugin_id),
                                exclude=exclude, before=before)


#: the plugin's default model in words: never "default" alone, which reads as the name of a version
UNPINNED_WORDS = "the plugin's default model (not pinned)"


def version_words(version: ModelVersion | None) -> str:
    return version.version if version is not None else UNPINNED_WORDS


def answered_by_words(name: str) -> str:
    """A name ``answered_by`` gives (or a run's ``model_versions`` holds) in words: a version's, or the default."""
    return UNPINNED_WORDS if name == DEFAULT_MODEL_NAME else name


# --- limits -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answered:
    """How many of a run's cases were answered (the others failed: a job failed, timed out, was blocked or cancelled)."""

    answered: int
    cases: int

    @classmethod
    def of(cls, run: EvaluationRun) -> "Answered":
        metrics = run.metrics if isinstance(run.metrics, dict) else {}
        cases = comparison.figure(metrics, "cases")
        cases = int(cases) if cases is not None else run.cases_total
        succeeded = comparison.figure(metrics, "succeeded")
        return cls(int(succeeded) if succeeded is not None else 0, cases)

    def __str__(self) -> str:
        return f"{self.answered} of {self.cases}"


def check_gateable(run: EvaluationRun, role: str) -> None:
    """``GateError`` unless ``run`` succeeded: a cancelled run's metrics average the few cases answered before it was
    stopped (3 of 100 answered well scored as well as 100), and a failed one has none; neither is evidence, as the
    candidate nor as the baseline. ``role``: what the run is to the gate ("the run", "the baseline")."""
    if run.status == RunStatus.SUCCEEDED:
        return
    answered = Answered.of(run)
    if run.status == RunStatus.CANCELLED:
        why = f"was cancelled with {answered} cases answered"
    elif run.status == RunStatus.FAILED:
        why = f"failed ({answered} cases answered)"
    else:
        why = f"has not ended ({run.status})"
    raise GateError(f"Run {run.pk}, {role}, {why}: only a succeeded run, every case asked, can be gated; evaluate "
                    "again and gate that run.", details={"run": str(run.pk), "role": role, "status": run.status,
                                                         "answered": answered.answered, "cases": answered.cases})


@dataclass(frozen=True)
class GateResult:
    metric: str
    max_drop: float
    change: comparison.MetricChange
    #: the cases whose references (or inputs) differ between the two runs, or that one run lacks: the set was changed
    #: between them, so the two figures measure different questions
    changed_cases: tuple[int, ...] = ()
    #: (the failed cases' limit) how many cases the run and the baseline answered
    answered: tuple[Answered, Answered] | None = None

    @property
    def drop(self) -> float | None:
        return self.change.drop

    @property
    def passed(self) -> bool:
        # a figure missing on either side (no case answered, FID of one image) cannot show the metric held, nor can
        # figures of two different versions of the set (an easier set made after the baseline would pass anything)
        return self.drop is not None and self.drop <= self.max_drop and not self.changed_cases

    @property
    def reason(self) -> str:
        if self.changed_cases:
            shown = ", ".join(f"#{index}" for index in self.changed_cases[:10])
            more = f" and {len(self.changed_cases) - 10} more" if len(self.changed_cases) > 10 else ""
            return (f"{self.metric} could not be compared: the reference set was changed between the runs (cases "
                    f"{shown}{more}); evaluate the baseline's version on the set as it is now")
        if self.drop is None:
            missing = "the run" if self.change.run is None else "the baseline"
            return f"{self.metric} could not be compared: {missing} has no {self.metric}"
        if self.answered is not None:  # the failed cases: said by the cases answered, of how many
            run, to = self.answered
            if self.drop <= 0:
                return f"{self.metric} held ({run} cases answered, against {to} in the baseline)"
            return (f"{run} cases answered, against {to} in the baseline: {self.drop:g} more failed (at most "
                    f"{self.max_drop:g} more allowed)")
        worse = "rose" if self.change.better == comparison.LOWER else "dropped"
        if self.drop <= 0:
            return f"{self.metric} held ({_number(self.change.run)} against {_number(self.change.to)})"
        return (f"{self.metric} {worse} by {_number(self.drop)} ({_number(self.change.to)} to {_number(self.change.run)}; "
                f"at most {_number(self.max_drop)} allowed)")

    def as_dict(self) -> dict[str, Any]:
        said = {"metric": self.metric, "max_drop": self.max_drop, "drop": self.drop, "run": self.change.run,
                "to": self.change.to, "better": self.change.better, "passed": self.passed, "reason": self.reason,
                "set_changed": bool(self.changed_cases)}
        if self.answered is not None:
            said["answered"] = {name: {"answered": shown.answered, "cases": shown.cases}
                                for name, shown in zip(("run", "to"), self.answered)}
        return said


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}" if 0 < abs(value) < 1 else f"{value:.2f}"


def check(compared: comparison.Comparison, max_drops: dict[str, float]) -> list[GateResult]:
    """Each limit asked and, with any, the failed cases: a run that answered fewer cases than its baseline (failed
    more) does not pass (its metrics average only the cases it answered) unless a ``failed`` limit allows that many
    more. Only succeeded runs are gated (``check_gateable``: ``GateError`` for a cancelled or failed one)."""
    if not max_drops:
        return []
    check_gateable(compared.run, "the run")
    check_gateable(compared.to, "the baseline")
    changed = compared.changed_cases()
    answered = (Answered.of(compared.run), Answered.of(compared.to))
    limits = {comparison.FAILED_CASES: 0.0, **max_drops}
    return [GateResult(name, limit, compared.metric(name), changed,
                       answered if name == comparison.FAILED_CASES else None) for name, limit in limits.items()]


# --- waiting for a run ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    status: str
    done: int
    failed: int
    total: int
    scoring: bool  # every case answered, a worker scoring its images


def progress_of(run: EvaluationRun) -> Progress:
    return Progress(run.status, run.cases_done, run.cases_failed, run.cases_total,
                    run.scoring_sent_at is not None)


def wait_for_end(run_id: uuid.UUID, *, timeout_s: float, poll_s: float, on_progress: Callable[[Progress], None],
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> EvaluationRun | None:
    """Read the run every ``poll_s`` seconds until it has ended, scored (``comparison.is_scored``), and return it;
    None when ``timeout_s`` passed first. ``on_progress`` hears each reading. The workers move the run on (the job
    signals, the sweeper); this only reads."""
    deadline = clock() + timeout_s
    while True:
        run = EvaluationRun.objects.select_related("reference_set", "model_version").defer("reference_set__cases") \
            .get(pk=run_id)
        on_progress(progress_of(run))
        if comparison.is_scored(run):
            return run
        left = deadline - clock()
        if left <= 0:
            return None
        sleep(min(poll_s, left))


# --- a promotion that requires an evaluation ------------------------------------------------------------------------

class PromotionRefused(EvaluationError):
    """The version's evaluation is missing, or fell further than allowed: the pin stays as it was."""

    status_code = 409
    code = "evaluation_gate_failed"


@dataclass(frozen=True)
class Requirement:
    reference_set: ReferenceSet
    max_drops: dict[str, float]


def promotion_requirement(project: Project, plugin_id: str, asked: Any) -> Requirement:
    """``{"reference_set": name or id, "max_drop": {"chrf": 1.5}}`` of a promotion, checked (400 naming the field)."""
    field = "require_evaluation"
    if not isinstance(asked, dict) or set(asked) - {"reference_set", "max_drop"} or "reference_set" not in asked:
        raise GateError("require_evaluation takes reference_set (a set's name or id) and max_drop (a metric's largest "
                        "allowed drop, such as {\"chrf\": 1.5}).", details={field: ["Give reference_set and max_drop."]})
    named = asked["reference_set"]
    sets = ReferenceSet.objects.filter(project=project).defer("cases")
    found = None
    if isinstance(named, str):
        try:
            found = sets.filter(pk=uuid.UUID(named)).first()
        except ValueError:
            pass
        found = found or sets.filter(name=named).first()
    if found is None:
        raise GateError(f"No reference set {named!r} in this project.",
                        details={f"{field}.reference_set": ["Give the name or id of one of the project's reference sets."]})
    if found.plugin_id != plugin_id:
        raise GateError(f"Reference set {found.name!r} is for {found.plugin_id}, not {plugin_id}.",
                        details={f"{field}.reference_set": [f"Give a reference set of {plugin_id}."]})
    return Requirement(found, checked_max_drops(plugin_id, asked.get("max_drop"), field=f"{field}.max_drop"))


def check_promotion(project: Project, requirement: Requirement, *, candidate: ModelVersion | None,
                    current: ModelVersion | None) -> dict[str, Any]:
    """The evidence that ``candidate`` may replace ``current``: its newest succeeded run of the set, measured against
    the current version's newest, within every limit; else ``PromotionRefused`` with the numbers. The evidence is
    what the audit records."""
    reference_set = requirement.reference_set
    run = newest_succeeded_run(project, reference_set, candidate)
    baseline = newest_succeeded_run(project, reference_set, current)
    missing = [(words, version) for words, version, found in (("the version promoted", candidate, run),
                                                              ("the version pinned now", current, baseline))
               if found is None]
    if missing:
        said = " and ".join(f"{words} ({version_words(version)})" for words, version in missing)
        raise PromotionRefused(
            f"No succeeded evaluation run of {reference_set.name!r} on {said}: evaluate "
            f"{'them' if len(missing) > 1 else 'it'} first (POST /api/v1/evaluation/runs/, or manage.py evaluate).",
            details={"reference_set": str(reference_set.pk), "run": str(run.pk) if run else None,
                     "to": str(baseline.pk) if baseline else None}, code="evaluation_required")
    results = check(comparison.compare(run, baseline), requirement.max_drops)
    evidence = {"reference_set": str(reference_set.pk), "run": str(run.pk), "to": str(baseline.pk),
                "gates": [result.as_dict() for result in results]}
    failed = [result for result in results if not result.passed]
    if failed:
        raise PromotionRefused(f"{version_words(candidate)} was not pinned: against run {baseline.pk} of "
                               f"{version_words(current)}, " + "; ".join(result.reason for result in failed) + ".",
                               details=evidence)
    return evidence
