"""A watch on the model in production: a reference set evaluated on a schedule, each run measured against the watch's
previous one.

The answers of the model a project uses change without any deploy: its knowledge base is edited, its safety policy or
default params change, another version is pinned. A watch (``EvaluationSchedule``, one per set) evaluates the set every
``interval_hours`` with the version it names, or the version the project pins when each run starts, and gates each
run with the ``evaluate`` command's limits (``gate.check``) against the watch's previous succeeded run.

Beat sends ``atelier.start_evaluation_watches`` every minute (``celery_app.EVALUATION_WATCH_TICK_S``; ``start_due``): each due watch is claimed under its
project's lock, as run starts take it, then its own row with ``FOR UPDATE SKIP LOCKED``; its ``next_run_at`` moves
past now by whole intervals in the transaction that starts its run through the API's service (``start_run_once``:
the same checks, caps, quotas and audit, and an Idempotency-Key per slot). Two beats, or one task delivered twice,
start one run per slot; a watch whose previous run still goes starts none (said on the watch and in the log); after
downtime one run starts, not one per missed slot. A start that fails (the service refuses it, or an error stops it)
is said on the watch and, the first of a streak only (``failing_since``; the next run started, or the owner changing
the watch, ends it), sent as the ``evaluation_watch.failed_to_start`` webhook: an error leaves the watch due, tried at
every tick, and a refusal comes back every slot.

A scheduled run is judged where it ends (``judge``, called by ``services.announce_finished`` under the run's lock):
its verdict (``EvaluationRun.watch``) is committed with its end, and the ``evaluation_run.finished`` webhook and the
``evaluation_watch.regressed`` one read it.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from atelier_platform.accounts.models import Project
from atelier_platform.evaluation import services
from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule, ReferenceSet, RunStatus
from atelier_platform.evaluation.services import EvaluationError
from atelier_platform.jobs.errors import JobServiceError
from atelier_platform.moderation import audit

logger = logging.getLogger("atelier.evaluation")

MIN_INTERVAL_HOURS, MAX_INTERVAL_HOURS = 1, 24 * 30
#: the watches one tick starts at most (the others are due still, and start at the next tick)
DUE_PER_TICK = 50

#: a due watch that started nothing: its previous run still goes (the service's refusals keep their own code)
SKIPPED_RUN_GOING = "previous_run_going"
#: its start raised (a bug, a database error): still due, tried again at the next tick
SKIPPED_START_FAILED = "start_failed"
#: a time given for the next run may lie this far behind the server's clock (a caller's clock a little behind, a
#: request that waited): it is "now", due at the next tick; further back it is refused, most likely a mistake
NEXT_RUN_PAST_LEEWAY = timedelta(minutes=5)

#: a scheduled run's verdict (``EvaluationRun.watch["outcome"]``)
PASSED = "passed"          # every limit held against the watch's previous succeeded run
REGRESSED = "regressed"    # a limit failed: a metric fell further than allowed, or more cases failed
FAILED = "failed"          # the run failed (every case failed, or its images could not be scored)
BASELINE = "baseline"      # no earlier succeeded run of the watch: the next is measured against this one
SET_CHANGED = "set_changed"  # the set was changed since the previous run: its figures measure other questions
CANCELLED = "cancelled"    # cancelled by a member: not gated
NOT_JUDGED = "not_judged"  # judging it failed (logged): the run's end stands
#: the verdicts ``evaluation_watch.regressed`` is sent for: the model in production got worse, or answers nothing
ALERTS = frozenset({REGRESSED, FAILED})


class ScheduleExists(EvaluationError):
    status_code = 409
    code = "evaluation_schedule_exists"


class ScheduleGone(EvaluationError):
    status_code = 404
    code = "not_found"


# --- the schedule ---------------------------------------------------------------------------------------------

def next_slot(slot: datetime, now: datetime, interval_hours: int) -> datetime:
    """The first time after ``now`` that is ``slot`` plus whole intervals: a watch keeps its hour, and a watch that
    missed ten slots (beat was down) runs once and then at its next slot, never ten times."""
    step = timedelta(hours=interval_hours)
    if slot > now:
        return slot
    missed = (now - slot) // step
    return slot + (missed + 1) * step


def _checked_interval(hours: Any) -> int:
    if isinstance(hours, bool) or not isinstance(hours, int) or not MIN_INTERVAL_HOURS <= hours <= MAX_INTERVAL_HOURS:
        raise EvaluationError(f"Run the watch every {MIN_INTERVAL_HOURS} to {MAX_INTERVAL_HOURS} hours (30 days).",
                              details={"interval_hours": [f"A whole number from {MIN_INTERVAL_HOURS} to "
                                                          f"{MAX_INTERVAL_HOURS}."]}, code="validation_error")
    return hours


def _checked_next_run(when: Any, now: datetime) -> datetime:
    if not isinstance(when, datetime) or timezone.is_naive(when):
        raise EvaluationError("next_run_at: a date and time with its offset, such as 2026-12-01T03:00:00Z.",
                              details={"next_run_at": ["A date and time with its offset."]}, code="validation_error")
    if when < now - NEXT_RUN_PAST_LEEWAY:
        leeway = int(NEXT_RUN_PAST_LEEWAY.total_seconds() // 60)
        raise EvaluationError(f"next_run_at is in the past ({when.isoformat()}; now is {now.isoformat()}): give a time "
                              "to come, or leave it out of a new watch to start its first run at once.",
                              details={"next_run_at": [f"In the past: at most {leeway} minutes before now."]},
                              code="validation_error")
    if when > now + timedelta(hours=MAX_INTERVAL_HOURS):
        raise EvaluationError(f"The first run may be at most {MAX_INTERVAL_HOURS // 24} days ahead.",
                              details={"next_run_at": [f"At most {MAX_INTERVAL_HOURS // 24} days from now."]},
                              code="validation_error")
    return when


def checked_limits(reference_set: ReferenceSet, max_drop: Any) -> dict[str, float]:
    """The gate's limits (``{"chrf": 1.5}``), checked as a promotion's are: a 400 naming ``max_drop.<metric>``."""
    from atelier_platform.evaluation import gate

    return gate.checked_max_drops(reference_set.plugin_id, max_drop, field="max_drop")


def _shown(schedule: EvaluationSchedule) -> dict[str, Any]:
    """What the audit records of a watch."""
    return {"reference_set": schedule.reference_set.name, "model_version": schedule.model_version_id,
            "interval_hours": schedule.interval_hours, "max_drop": schedule.max_drop, "enabled": schedule.enabled,
            "next_run_at": schedule.next_run_at.isoformat()}


def create_schedule(project: Project, reference_set: ReferenceSet, *, interval_hours: Any, max_drop: Any,
                    model_version_id=None, enabled: bool = True, next_run_at: Any = None, actor: str,
                    user=None) -> EvaluationSchedule:
    """A watch of ``reference_set``: the first run at ``next_run_at`` (None: at the next tick, a baseline for the
    runs after it), then every ``interval_hours``. 409 if the set has one already."""
    if reference_set.project_id != project.pk:
        raise ScheduleGone("No such reference set in this project.")
    services.evaluable_plugin(reference_set.plugin_id)
    now = timezone.now()
    interval = _checked_interval(interval_hours)
    limits = checked_limits(reference_set, max_drop)
    version = services.evaluable_model_version(project, reference_set.plugin_id, model_version_id)
    first = _checked_next_run(next_run_at, now) if next_run_at is not None else now
    with transaction.atomic():
        services._lock_project(project.pk)  # as a set's deletion takes it: the set is there, or the watch is refused
        if not ReferenceSet.objects.filter(pk=reference_set.pk).exists():
            raise ScheduleGone("No such reference set in this project.")
        if EvaluationSchedule.objects.filter(reference_set=reference_set).exists():
            raise ScheduleExists(f"Reference set {reference_set.name!r} has a watch already: change it "
                                 "(PATCH /api/v1/evaluation/schedules/{id}/) or delete it first.",
                                 details={"reference_set": ["One watch per reference set."]})
        schedule = EvaluationSchedule.objects.create(
            project=project, reference_set=reference_set, model_version=version, interval_hours=interval,
            max_drop=limits, enabled=bool(enabled), next_run_at=first, created_by=user)
        audit.record(project, actor, "evaluation_schedule_created", schedule, after=_shown(schedule))
    return schedule


#: what ``update_schedule`` changes
CHANGEABLE = frozenset({"interval_hours", "max_drop", "model_version", "enabled", "next_run_at"})


def update_schedule(schedule: EvaluationSchedule, *, actor: str, **changes: Any) -> EvaluationSchedule:
    """Change a watch (``CHANGEABLE``; ``model_version`` None: the version pinned at each run), under its row's lock
    (a claim holding it finishes first). Its runs so far keep the verdicts they had. A change ends the watch's streak of
    failed starts (``failing_since``): if the changed watch cannot start either, that is announced again."""
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise EvaluationError(f"Unknown fields: {', '.join(sorted(unknown))}.", code="validation_error",
                              details={name: ["Not a field of a watch."] for name in sorted(unknown)})
    reference_set = schedule.reference_set
    checked: dict[str, Any] = {}
    now = timezone.now()
    if "interval_hours" in changes:
        checked["interval_hours"] = _checked_interval(changes["interval_hours"])
    if "max_drop" in changes:
        checked["max_drop"] = checked_limits(reference_set, changes["max_drop"])
    if "model_version" in changes:
        checked["model_version"] = services.evaluable_model_version(schedule.project, reference_set.plugin_id,
                                                                    changes["model_version"])
    if "enabled" in changes:
        checked["enabled"] = bool(changes["enabled"])
    with transaction.atomic():
        locked = (EvaluationSchedule.objects.select_for_update().select_related("reference_set", "project")
                  .defer("reference_set__cases").filter(pk=schedule.pk, project_id=schedule.project_id).first())
        if locked is None:
            raise ScheduleGone("No such watch in this project.")
        # The watch's own value sent back, as a client read it, is no change, however long past (a watch switched
        # off, or whose start keeps failing, keeps its old one); compared under the lock, since beat moves it.
        if "next_run_at" in changes and changes["next_run_at"] != locked.next_run_at:
            checked["next_run_at"] = _checked_next_run(changes["next_run_at"], now)
        before = _shown(locked)
        for name, value in checked.items():
            setattr(locked, name, value)
        if _shown(locked) != before:
            # the owner changed the watch (read its failure, most likely): the streak ends, and the changed watch
            # failing to start too is announced again, not taken for the old streak
            locked.failing_since = None
        if checked:
            locked.save()
            audit.record(locked.project, actor, "evaluation_schedule_changed", locked, before=before,
                         after=_shown(locked))
    return locked


def delete_schedule(schedule: EvaluationSchedule, *, actor: str) -> None:
    """Delete a watch; its runs stay in the set's history (no longer scheduled), a run going goes on."""
    with transaction.atomic():
        locked = (EvaluationSchedule.objects.select_for_update().select_related("reference_set", "project")
                  .defer("reference_set__cases").filter(pk=schedule.pk).first())
        if locked is None:
            raise ScheduleGone("No such watch in this project.")
        audit.record(locked.project, actor, "evaluation_schedule_deleted", locked, before=_shown(locked))
        locked.delete()


# --- beat: starting the due runs ---------------------------------------------------------------------------------

def _run_going(schedule: EvaluationSchedule) -> EvaluationRun | None:
    """The watch's run that has not ended, or ended but waits for its scores (an image run's)."""
    return (EvaluationRun.objects.filter(schedule=schedule)
            .filter(Q(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]) | Q(scoring_sent_at__isnull=False))
            .only("pk", "status").first())


def start_due(now: datetime | None = None) -> dict[str, int]:
    """Start each due watch's run (beat's task, every minute): counts of ``started``, ``skipped`` (its previous run
    still goes), ``refused`` (the service refused the run: the project's runs are busy, its quota used up, ...),
    ``taken`` (another process claimed it first) and ``errors``. One watch's failure never stops the others'."""
    now = now or timezone.now()
    counts: Counter[str] = Counter()
    # Those that started last time (no skip since) first; then those whose skip is oldest: a watch whose start keeps
    # failing stays due with its old next_run_at, and read first it held every other watch back once there were
    # DUE_PER_TICK of them; they now take turns behind the others.
    due = list(EvaluationSchedule.objects.filter(enabled=True, next_run_at__lte=now)
               .order_by(F("last_skipped_at").asc(nulls_first=True), "next_run_at", "pk")
               .values_list("pk", "project_id")[:DUE_PER_TICK])
    for schedule_id, project_id in due:
        try:
            counts[_start_one(schedule_id, project_id, now)] += 1
        except Exception:  # a database error, a bug: logged; the watch is still due and is tried at the next tick
            logger.exception("evaluation watch %s: could not start its run", schedule_id)
            counts["errors"] += 1
            _start_failed(schedule_id, now)
    return dict(counts)


def _start_failed(schedule_id, now: datetime) -> None:
    """Said on the watch (its page, the API's ``last_skip``), its next run left as it was: tried at the next tick."""
    message = "An error stopped the run from starting (logged on the server); it is tried again at the next tick."
    try:
        with transaction.atomic():
            EvaluationSchedule.objects.filter(pk=schedule_id).update(
                last_skipped_at=now, last_skip_code=SKIPPED_START_FAILED, last_skip_message=message)
            # tried at every tick: only the first failure of the streak is announced (one update wins, whoever races)
            if EvaluationSchedule.objects.filter(pk=schedule_id, failing_since__isnull=True).update(failing_since=now):
                _announce_failed_to_start(schedule_id, SKIPPED_START_FAILED, message, now)
    except Exception:
        logger.exception("evaluation watch %s: could not record that its run did not start", schedule_id)


def _start_one(schedule_id, project_id, now: datetime) -> str:
    with transaction.atomic():
        # The project's row first, as a run's start and a set's deletion take it, then the watch's: a deletion (the
        # project's lock, then the watch's row in cascade) never waits for this while this waits for it. Another
        # beat claiming the same watch waits here, and then finds it due no longer.
        services._lock_project(project_id)
        schedule = (EvaluationSchedule.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("project", "reference_set")
                    .filter(pk=schedule_id, enabled=True, next_run_at__lte=now).first())
        if schedule is None:  # claimed by another process, being changed, disabled or deleted meanwhile
            return "taken"
        slot = schedule.next_run_at
        schedule.next_run_at = next_slot(slot, now, schedule.interval_hours)
        going = _run_going(schedule)
        if going is not None:
            message = (f"Run {going.pk} of the watch is still {going.status}: no second run started; the next is due "
                       f"at {schedule.next_run_at.isoformat()}.")
            logger.warning("evaluation watch %s of %r skipped: %s", schedule.pk, schedule.reference_set.name, message)
            _skipped(schedule, now, SKIPPED_RUN_GOING, message)
            return "skipped"
        try:
            run = _start(schedule, slot)
        except JobServiceError as error:
            reason = _refusal_reason(error)
            logger.warning("evaluation watch %s of %r: the run was refused (%s): %s", schedule.pk,
                           schedule.reference_set.name, error.code, reason)
            _skipped(schedule, now, error.code, reason, failed=True)
            return "refused"
        schedule.last_run = run
        schedule.last_skipped_at, schedule.last_skip_code, schedule.last_skip_message = None, "", ""
        schedule.failing_since = None  # a run started: the streak of failures, if any, is over
        schedule.save(update_fields=["next_run_at", "last_run", "last_skipped_at", "last_skip_code",
                                     "last_skip_message", "failing_since"])
        logger.info("evaluation watch %s of %r started run %s; next at %s", schedule.pk, schedule.reference_set.name,
                    run.pk, schedule.next_run_at.isoformat())
        return "started"


def _start(schedule: EvaluationSchedule, slot: datetime) -> EvaluationRun:
    """The slot's run, through the API's service, with the watch's version or the version pinned now (named on the
    run: its jobs, queued behind the project's own, answer with it even if the pin changes while they wait). The
    slot is its Idempotency-Key: a start replayed for the same slot gives the same run."""
    from atelier_platform.evaluation import gate

    project, reference_set = schedule.project, schedule.reference_set
    version_id = schedule.model_version_id
    if version_id is None:
        pinned = gate.pinned_version(project, reference_set.plugin_id)
        version_id = pinned.pk if pinned is not None else None
    with transaction.atomic():  # a refusal rolls back the service's writes, not the claim
        run, _ = services.start_run_once(project, reference_set, idempotency_key=f"watch:{schedule.pk}:{slot.isoformat()}",
                                         model_version_id=version_id, actor=f"watch:{schedule.pk}", schedule=schedule)
    return run


def _refusal_reason(error: JobServiceError) -> str:
    """The service's refusal with its first detail: a refused case's message ("Some cases of the reference set cannot
    run as jobs") says nothing an owner can act on, its detail does (the plugin switched off for the project, a
    case's params the plugin no longer takes)."""
    details = error.details if isinstance(error.details, dict) else {}
    for field, problems in details.items():
        problem = problems[0] if isinstance(problems, list) and problems else problems
        if isinstance(problem, str) and problem:
            return f"{error.message} {field}: {problem}"[:1000]
    return error.message


def _skipped(schedule: EvaluationSchedule, now: datetime, code: str, message: str, *, failed: bool = False) -> None:
    """Said on the watch (the caller holds its row); ``failed``: a start that failed, announced if the first of its
    streak. A skip while the previous run goes is no failure, and neither starts nor ends a streak."""
    schedule.last_skipped_at, schedule.last_skip_code, schedule.last_skip_message = now, code[:40], message
    fields = ["next_run_at", "last_skipped_at", "last_skip_code", "last_skip_message"]
    if failed and schedule.failing_since is None:
        schedule.failing_since = now
        fields.append("failing_since")
        _announce_failed_to_start(schedule.pk, code[:40], message, now)
    schedule.save(update_fields=fields)


def _announce_failed_to_start(schedule_id, code: str, message: str, failed_at: datetime) -> None:
    """``evaluation_watch_failed_to_start`` once the failure is committed (never for one rolled back)."""
    from atelier_platform.evaluation.signals import evaluation_watch_failed_to_start

    transaction.on_commit(lambda: evaluation_watch_failed_to_start.send(
        sender=EvaluationSchedule, schedule_id=schedule_id, code=code, message=message, failed_at=failed_at),
        robust=True)


# --- judging a scheduled run ---------------------------------------------------------------------------------------

def previous_run(run: EvaluationRun) -> EvaluationRun | None:
    """The watch's newest succeeded run started before ``run``: what it is measured against."""
    return (EvaluationRun.objects.filter(schedule_id=run.schedule_id, status=RunStatus.SUCCEEDED,
                                         created_at__lte=run.created_at)
            .exclude(pk=run.pk).select_related("model_version").order_by("-created_at", "-pk").first())


def judge(run: EvaluationRun) -> None:
    """A scheduled run that has just ended (the caller holds its row, in the transaction that ends it): its verdict
    against the watch's previous succeeded run, with the watch's limits, kept on the run (``run.watch``). Judging
    never undoes the run's end: a failure is logged and the verdict says ``not_judged``."""
    if run.schedule_id is None:
        return
    try:
        with transaction.atomic():  # a savepoint: a database error here leaves the caller's transaction usable
            verdict = _verdict(run)
    except Exception:
        logger.exception("evaluation run %s: its watch's verdict could not be reached", run.pk)
        verdict = {"schedule": str(run.schedule_id), "outcome": NOT_JUDGED, "passed": None,
                   "reason": "The watch's verdict could not be reached (see the server's log).", "max_drop": {},
                   "gates": [], "failed_metrics": [], "compared_to": None}
    verdict["judged_at"] = timezone.now().isoformat()
    run.watch = verdict
    EvaluationRun.objects.filter(pk=run.pk).update(watch=verdict)


def _verdict(run: EvaluationRun) -> dict[str, Any]:
    from atelier_platform.evaluation import comparison, gate

    schedule = EvaluationSchedule.objects.filter(pk=run.schedule_id).only("pk", "max_drop").first()
    limits = dict(schedule.max_drop) if schedule is not None else {}
    verdict: dict[str, Any] = {"schedule": str(run.schedule_id), "max_drop": limits, "gates": [], "failed_metrics": [],
                               "compared_to": None}
    if schedule is None:  # deleted while its run ended
        return {**verdict, "outcome": NOT_JUDGED, "passed": None, "reason": "The watch was deleted: not gated."}
    if run.status == RunStatus.CANCELLED:
        return {**verdict, "outcome": CANCELLED, "passed": None,
                "reason": "The run was cancelled before every case was answered: not gated."}
    if run.status != RunStatus.SUCCEEDED:
        return {**verdict, "outcome": FAILED, "passed": False,
                "reason": f"The run failed: {run.error_message or 'no case was answered'}",
                "failed_metrics": [comparison.FAILED_CASES]}
    baseline = previous_run(run)
    if baseline is None:
        return {**verdict, "outcome": BASELINE, "passed": None,
                "reason": "The watch's first succeeded run: the next run is measured against it."}
    compared = comparison.compare(run, baseline)
    results = gate.check(compared, limits)
    failed = [result for result in results if not result.passed]
    verdict.update(compared_to=str(baseline.pk), gates=[result.as_dict() for result in results],
                   failed_metrics=[result.metric for result in failed])
    if compared.set_changed:
        cases = compared.changed_cases()
        shown = ", ".join(f"#{index}" for index in cases[:10]) + (f" and {len(cases) - 10} more" if len(cases) > 10 else "")
        return {**verdict, "outcome": SET_CHANGED, "passed": None, "failed_metrics": [],
                "reason": f"The reference set was changed since run {baseline.pk} (cases {shown}): its figures measure "
                          "other questions; the next run is measured against this one."}
    if failed:
        return {**verdict, "outcome": REGRESSED, "passed": False,
                "reason": f"Against run {baseline.pk}: " + "; ".join(result.reason for result in failed) + "."}
    return {**verdict, "outcome": PASSED, "passed": True,
            "reason": f"Every limit held against run {baseline.pk}."}
