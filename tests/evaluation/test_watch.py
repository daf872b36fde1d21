"""Watches: a reference set evaluated on a schedule by beat (``watch.start_due``, the clock moved by hand), each run
started once per slot through the API's service, none while the previous goes, one after downtime; each scheduled
run judged against the watch's previous succeeded run with the watch's limits. Real runs of the chatbot on tiny LMs,
on the real database (PostgreSQL: two claims at once on two connections)."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from atelier_platform.catalog.configuration import configure_plugin
from atelier_platform.catalog.models import ModelVersion
from atelier_platform.evaluation import services, watch
from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule, RunStatus
from atelier_platform.jobs.models import Job
from atelier_platform.moderation.models import AuditEvent
from tests.evaluation.test_runs import make_set, run_all

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = timedelta(hours=1)


@pytest.fixture
def start():
    """A moment in the future (the first run's time may be at most 30 days ahead) the tests move the clock from."""
    return (timezone.now() + timedelta(days=1)).replace(microsecond=0)


@pytest.fixture
def own_answers(chat_project):
    """References that are the default model's own answers: it scores 100 on each, v2 less."""
    probe = run_all(services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"], name="probe"), actor="t"))
    return make_set(chat_project, [case["output"] for case in probe.results], name="own answers")


@pytest.fixture
def v2():
    return ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")


def watch_of(reference_set, at, *, hours=24, max_drop=None, **options) -> EvaluationSchedule:
    return watch.create_schedule(reference_set.project, reference_set, interval_hours=hours,
                                 max_drop=max_drop or {"chrf": 1.5}, next_run_at=at, actor="test", **options)


def runs_of(schedule) -> list[EvaluationRun]:
    return list(EvaluationRun.objects.filter(schedule=schedule).order_by("created_at"))


def fresh(schedule) -> EvaluationSchedule:
    return EvaluationSchedule.objects.get(pk=schedule.pk)


# --- when runs start ---------------------------------------------------------------------------------------------

def test_a_watch_starts_its_run_at_its_time_not_before_and_once(chat_project, own_answers, start):
    schedule = watch_of(own_answers, start, hours=6)
    assert watch.start_due(start - timedelta(seconds=1)) == {} and not runs_of(schedule)

    assert watch.start_due(start + timedelta(seconds=30)) == {"started": 1}
    [run] = runs_of(schedule)
    assert run.reference_set == own_answers and run.status == RunStatus.QUEUED and run.cases_total == 3
    assert Job.objects.filter(evaluation_case__run=run).count() == 3  # through the service: a job per case
    schedule = fresh(schedule)
    assert schedule.next_run_at == start + 6 * HOUR and schedule.last_run == run
    # the run's start is audited as any start, by the watch
    assert AuditEvent.objects.filter(action="evaluation_started", object_id=str(run.pk),
                                     actor=f"watch:{schedule.pk}").exists()

    assert watch.start_due(start + 6 * HOUR - timedelta(seconds=1)) == {}  # the same tick again, and later: not due
    assert len(runs_of(schedule)) == 1


def test_a_disabled_watch_starts_nothing_and_once_enabled_starts_one_run(chat_project, own_answers, start):
    schedule = watch_of(own_answers, start, enabled=False)
    assert watch.start_due(start + 3 * 24 * HOUR) == {} and not runs_of(schedule)
    watch.update_schedule(schedule, actor="test", enabled=True)
    assert watch.start_due(start + 3 * 24 * HOUR) == {"started": 1}
    assert fresh(schedule).next_run_at == start + 4 * 24 * HOUR


def test_after_downtime_one_run_starts_and_the_next_keeps_the_watchs_hour(chat_project, own_answers, start):
    """Beat was down for ten slots and a half: one run, not ten, and the next at the slot after now."""
    schedule = watch_of(own_answers, start, hours=6)
    late = start + 60 * HOUR + 3 * HOUR
    assert watch.start_due(late) == {"started": 1}
    assert fresh(schedule).next_run_at == start + 66 * HOUR > late
    assert watch.start_due(late) == {} and len(runs_of(schedule)) == 1


def test_no_second_run_while_the_previous_goes_and_the_watch_says_so(chat_project, own_answers, start, caplog):
    schedule = watch_of(own_answers, start, hours=1)
    watch.start_due(start)
    [first] = runs_of(schedule)
    with caplog.at_level(logging.WARNING, logger="atelier.evaluation"):
        assert watch.start_due(start + HOUR) == {"skipped": 1}
    assert len(runs_of(schedule)) == 1
    schedule = fresh(schedule)
    assert schedule.next_run_at == start + 2 * HOUR and schedule.last_run == first
    assert schedule.last_skip_code == watch.SKIPPED_RUN_GOING and schedule.last_skipped_at == start + HOUR
    assert f"Run {first.pk} of the watch is still queued" in schedule.last_skip_message
    assert any("skipped" in record.getMessage() and str(first.pk) in record.getMessage() for record in caplog.records)

    run_all(first)
    assert watch.start_due(start + 2 * HOUR) == {"started": 1}
    schedule = fresh(schedule)
    assert len(runs_of(schedule)) == 2 and schedule.last_skipped_at is None and schedule.last_skip_code == ""


def test_a_run_the_service_refuses_is_said_on_the_watch_and_the_next_slot_comes(chat_project, own_answers, start):
    """The project's 3 runs going are the cap for a watch's run too."""
    for _ in range(services.MAX_ACTIVE_RUNS):
        EvaluationRun.objects.create(project=chat_project, reference_set=own_answers, plugin_id="chatbot",
                                     status=RunStatus.RUNNING, cases_total=1)
    schedule = watch_of(own_answers, start)
    assert watch.start_due(start) == {"refused": 1}
    schedule = fresh(schedule)
    assert not runs_of(schedule) and schedule.last_skip_code == "evaluation_runs_busy"
    assert "evaluation runs going" in schedule.last_skip_message and schedule.next_run_at == start + 24 * HOUR


def test_a_plugin_switched_off_for_the_project_is_the_reason_the_watch_gives_once_a_slot(chat_project, own_answers,
                                                                                          start):
    """The service refuses each case (400 ``cases.N.plugin``): the watch said only "Some cases of the reference set
    cannot run as jobs", which is no reason an owner can act on."""
    from atelier_platform.catalog.services import set_plugin_enabled

    schedule = watch_of(own_answers, start)
    set_plugin_enabled(chat_project, "chatbot", False)
    assert watch.start_due(start) == {"refused": 1}
    schedule = fresh(schedule)
    assert not runs_of(schedule) and schedule.last_skip_code == "validation_error"
    assert "'chatbot' is not enabled for project" in schedule.last_skip_message, schedule.last_skip_message
    assert watch.start_due(start + HOUR) == {}  # refused once in its slot, not at every tick
    assert fresh(schedule).next_run_at == start + 24 * HOUR


def test_a_watch_of_the_current_model_runs_the_version_pinned_when_the_run_starts(chat_project, own_answers, v2, start):
    schedule = watch_of(own_answers, start, hours=1)
    watch.start_due(start)
    [first] = runs_of(schedule)
    assert first.model_version is None  # nothing pinned: the plugin's default model

    run_all(first)
    configure_plugin(chat_project, "chatbot", "test", model_version=v2.pk)  # re-pinned, no deploy
    watch.start_due(start + HOUR)
    second = runs_of(schedule)[1]
    assert second.model_version == v2
    # its jobs answer with the version pinned at the start, even if the pin changes before they run
    configure_plugin(chat_project, "chatbot", "test", model_version=None)
    assert set(Job.objects.filter(evaluation_case__run=second).values_list("model_version", flat=True)) == {v2.pk}
    assert run_all(second).metrics["model_versions"] == ["v2"]


def test_a_watch_of_a_version_runs_that_version_whatever_is_pinned(chat_project, own_answers, v2, start):
    schedule = watch_of(own_answers, start, model_version_id=v2.pk)
    watch.start_due(start)
    assert runs_of(schedule)[0].model_version == v2


def test_the_beat_task_delivered_twice_starts_one_run(chat_project, own_answers):
    from atelier_platform.evaluation.tasks import start_evaluation_watches

    schedule = watch_of(own_answers, timezone.now() - timedelta(minutes=1))
    assert start_evaluation_watches() == {"started": 1}
    assert start_evaluation_watches() == {}
    assert len(runs_of(schedule)) == 1


def a_watch_whose_start_raises_and_another(chat_project, own_answers, start, monkeypatch):
    """Two watches due from ``start``; starting the first raises (a bug), the second starts as usual."""
    broken = watch_of(own_answers, start)
    other = watch_of(make_set(chat_project, ["x", "y"], name="other"), start + timedelta(seconds=1))
    real = watch._start

    def failing(schedule, slot):
        if schedule.pk == broken.pk:
            raise RuntimeError("a bug")
        return real(schedule, slot)

    monkeypatch.setattr(watch, "_start", failing)
    return broken, other


def test_one_watch_failing_does_not_stop_the_others(chat_project, own_answers, start, monkeypatch):
    broken, other = a_watch_whose_start_raises_and_another(chat_project, own_answers, start, monkeypatch)
    assert watch.start_due(start + HOUR) == {"errors": 1, "started": 1}
    assert fresh(broken).next_run_at == start  # rolled back: still due, tried at the next tick
    assert len(runs_of(other)) == 1


# --- exactly once, on two connections ------------------------------------------------------------------------------

def _until_another_session_waits_on_a_lock() -> None:
    with connection.cursor() as cursor:
        for _ in range(600):
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # else read once per transaction
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND pid <> pg_backend_pid() AND datname = current_database()")
            if cursor.fetchone()[0]:
                return
            cursor.execute("SELECT pg_sleep(0.05)")


def test_two_beats_claiming_the_same_due_watch_at_once_start_one_run(chat_project, own_answers, start, monkeypatch):
    """The first claim holds the watch while it starts the run (paused there until the second waits on its lock);
    the second, once the first commits, finds the watch due no longer."""
    if connection.vendor != "postgresql":
        pytest.skip("two connections at once: PostgreSQL")
    schedule = watch_of(own_answers, start)
    real, claimed, outcomes = watch._start, threading.Event(), {}

    def start_then_hold(schedule, slot):
        run = real(schedule, slot)
        if threading.current_thread().name == "first":
            claimed.set()
            _until_another_session_waits_on_a_lock()
        return run

    monkeypatch.setattr(watch, "_start", start_then_hold)

    def beat(name):
        try:
            outcomes[name] = watch.start_due(start + timedelta(minutes=1))
        finally:
            connection.close()

    first = threading.Thread(target=beat, args=("first",), name="first")
    first.start()
    assert claimed.wait(60)
    second = threading.Thread(target=beat, args=("second",), name="second")
    second.start()
    first.join()
    second.join()
    assert outcomes == {"first": {"started": 1}, "second": {"taken": 1}}
    assert len(runs_of(schedule)) == 1 and fresh(schedule).next_run_at == start + 24 * HOUR


def test_watches_that_keep_failing_to_start_say_so_and_do_not_hold_the_others_back(chat_project, own_answers, start,
                                                                                   monkeypatch):
    """A watch whose start raises (a bug) stays due and is tried at every tick; the earliest due were read first, so
    ``DUE_PER_TICK`` such watches, in any projects, stopped every other watch for good, and their pages said nothing."""
    broken, other = a_watch_whose_start_raises_and_another(chat_project, own_answers, start, monkeypatch)
    monkeypatch.setattr(watch, "DUE_PER_TICK", 1)
    assert watch.start_due(start + HOUR) == {"errors": 1}
    failed = fresh(broken)
    assert failed.next_run_at == start and failed.last_skip_code == watch.SKIPPED_START_FAILED
    assert "tried again" in failed.last_skip_message
    assert watch.start_due(start + HOUR + timedelta(minutes=1)) == {"started": 1}
    assert len(runs_of(other)) == 1
    assert watch.start_due(start + HOUR + timedelta(minutes=2)) == {"errors": 1}  # its turn again


def test_a_watch_being_changed_is_skipped_not_waited_for(chat_project, own_answers, start):
    """Its row locked by another transaction (an owner's change, another beat): this tick leaves it and goes on."""
    if connection.vendor != "postgresql":
        pytest.skip("two connections at once: PostgreSQL")
    schedule = watch_of(own_answers, start)
    locked, release = threading.Event(), threading.Event()

    def hold_the_row():
        try:
            with transaction.atomic():
                list(EvaluationSchedule.objects.select_for_update().filter(pk=schedule.pk))
                locked.set()
                release.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert locked.wait(60)
    try:
        assert watch.start_due(start) == {"taken": 1}
    finally:
        release.set()
        holder.join()
    assert not runs_of(schedule) and fresh(schedule).next_run_at == start
    assert watch.start_due(start) == {"started": 1}


# --- the verdict ---------------------------------------------------------------------------------------------------

def test_each_scheduled_run_is_judged_against_the_watchs_previous_succeeded_run(chat_project, own_answers, v2, start):
    schedule = watch_of(own_answers, start, hours=1, max_drop={"chrf": 1.5})
    watch.start_due(start)
    first = run_all(runs_of(schedule)[0])
    assert first.watch["outcome"] == watch.BASELINE and first.watch["passed"] is None
    assert first.watch["compared_to"] is None and first.watch["schedule"] == str(schedule.pk)

    # a run someone starts between is no baseline of the watch
    run_all(services.start_run(chat_project, own_answers, model_version_id=v2.pk, actor="test"))

    watch.start_due(start + HOUR)
    second = run_all(runs_of(schedule)[1])
    assert second.watch["outcome"] == watch.PASSED and second.watch["passed"] is True
    assert second.watch["compared_to"] == str(first.pk) and second.watch["failed_metrics"] == []
    assert {gate["metric"]: gate["passed"] for gate in second.watch["gates"]} == {"chrf": True, "failed": True}
    assert second.watch["max_drop"] == {"chrf": 1.5}

    configure_plugin(chat_project, "chatbot", "test", model_version=v2.pk)  # production's model changes
    watch.start_due(start + 2 * HOUR)
    third = run_all(runs_of(schedule)[2])
    assert third.metrics["chrf"] < 100.0 - 1.5
    assert third.watch["outcome"] == watch.REGRESSED and third.watch["passed"] is False
    assert third.watch["compared_to"] == str(second.pk) and third.watch["failed_metrics"] == ["chrf"]
    [chrf] = [gate for gate in third.watch["gates"] if gate["metric"] == "chrf"]
    assert chrf["passed"] is False and chrf["drop"] == pytest.approx(100.0 - third.metrics["chrf"])
    assert "chrf dropped by" in third.watch["reason"] and str(second.pk) in third.watch["reason"]
    # the watch's last run is the regressed one
    assert fresh(schedule).last_run == third


def test_a_run_that_failed_regressed_a_cancelled_one_is_not_gated(chat_project, own_answers, start):
    schedule = watch_of(own_answers, start, hours=1)
    watch.start_due(start)
    cancelled = services.cancel_run(runs_of(schedule)[0], actor="test")
    assert EvaluationRun.objects.get(pk=cancelled.pk).watch["outcome"] == watch.CANCELLED
    assert cancelled.watch["passed"] is None

    missing = ModelVersion.objects.create(plugin_id="chatbot", version="gone", model_dir="chat/not-there")
    watch.update_schedule(schedule, actor="test", model_version=missing.pk)  # a version whose files went
    watch.start_due(start + HOUR)
    failed = run_all(runs_of(schedule)[1])
    assert failed.status == RunStatus.FAILED
    assert failed.watch["outcome"] == watch.FAILED and failed.watch["passed"] is False
    assert failed.watch["failed_metrics"] == ["failed"] and "Every case failed" in failed.watch["reason"]


def test_a_set_changed_between_two_runs_is_not_taken_for_a_regression(chat_project, own_answers, start):
    schedule = watch_of(own_answers, start, hours=1)
    watch.start_due(start)
    first = run_all(runs_of(schedule)[0])
    cases = [dict(case) for case in own_answers.cases]
    cases[1]["reference"] = "something else entirely"
    services.update_reference_set(own_answers, actor="test", cases=cases)
    watch.start_due(start + HOUR)
    second = run_all(runs_of(schedule)[1])
    assert second.watch["outcome"] == watch.SET_CHANGED and second.watch["passed"] is None
    assert second.watch["compared_to"] == str(first.pk) and "#1" in second.watch["reason"]
    assert second.watch["failed_metrics"] == []


def test_a_run_someone_starts_has_no_verdict(chat_project, own_answers):
    run = run_all(services.start_run(chat_project, own_answers, actor="test"))
    assert run.schedule is None and run.watch == {}


def test_deleting_a_watch_keeps_its_runs_and_deleting_the_set_deletes_the_watch(chat_project, own_answers, start):
    schedule = watch_of(own_answers, start)
    watch.start_due(start)
    run = run_all(runs_of(schedule)[0])
    watch.delete_schedule(schedule, actor="test")
    run.refresh_from_db()
    assert run.schedule is None and run.watch["outcome"] == watch.BASELINE  # its verdict stays
    assert AuditEvent.objects.filter(action="evaluation_schedule_deleted", object_id=str(schedule.pk)).exists()

    again = watch_of(own_answers, start)
    services.delete_reference_set(own_answers, actor="test")
    assert not EvaluationSchedule.objects.filter(pk=again.pk).exists()


@pytest.mark.parametrize("hours, slot_offset, now_offset, expected", [
    (1, 0, 0, 1),            # due exactly at its slot: the next slot
    (24, 0, 23.5, 24),       # late within the interval
    (24, 0, 24, 48),         # exactly one interval late: the slot after
    (6, 0, 63, 66),          # ten slots missed: the first after now
])
def test_next_slot(hours, slot_offset, now_offset, expected, start):
    slot = start + slot_offset * HOUR
    assert watch.next_slot(slot, start + timedelta(hours=now_offset), hours) == start + expected * HOUR
