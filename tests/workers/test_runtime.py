"""The worker runtime and the job lifecycle, in process: claims, retries, failures, sweeps."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from atelier_platform.catalog.registry import get_registry
from atelier_platform.config import get_config
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.models import Job, JobStatus, Output
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_workers.runtime import JobRunner, ModelCache
from tests.support.plugins import ReverseText as ReverseTextPlugin


def submit(project, **input_fields) -> Job:
    request = JobRequest(plugin_id="reverse_text", input={"text": "hello", **input_fields}, params={})
    return submit_job(project, request).job


@pytest.fixture
def runner(reverse_plugin):
    return JobRunner(get_registry(), ModelCache("cpu"))


def reload(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def backoff_over(job: Job) -> None:
    """A retry's backoff has passed: its countdown message is due."""
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db(transaction=True)
class TestRunning:
    def test_success_stores_outputs_pending_review_with_provenance(self, project, runner):
        job = submit(project, copies=3)
        assert runner.run(str(job.pk)) == "succeeded"
        job = reload(job)
        assert job.status == JobStatus.SUCCEEDED and job.attempts == 1 and job.progress == 1.0
        outputs = list(job.outputs.all())
        assert [o.content for o in outputs] == [{"text": "olleh", "characters": 5}] * 3
        assert {o.review_state for o in outputs} == {"pending"}
        assert outputs[0].provenance["plugin"] == "reverse_text" and outputs[0].provenance["ai_generated"] is True
        assert outputs[0].provenance["seed"] == job.seed

    def test_files_of_outputs_the_database_refused_do_not_stay_behind(self, project, runner, settings, tmp_path,
                                                                       monkeypatch):
        from django.db import DataError

        from atelier_platform.moderation import review

        settings.MEDIA_ROOT = str(tmp_path / "media")
        stored = review.open_reviews
        refusing = {"now": True}

        def open_reviews(routed):
            if refusing["now"]:  # after the files were saved, in the same transaction
                raise DataError("value too long for the column")
            return stored(routed)

        monkeypatch.setattr(review, "open_reviews", open_reviews)
        job = submit(project, copies=2, with_file=True)
        assert runner.run(str(job.pk)) == JobStatus.QUEUED  # retried, with backoff
        refused = reload(job)
        assert refused.error_code == "store_failed" and "DataError: value too long" in refused.error_message
        assert not refused.outputs.exists()
        files = lambda: sorted(p.name for p in (tmp_path / "media").rglob("*") if p.is_file())  # noqa: E731
        assert files() == []
        refusing["now"] = False
        backoff_over(job)
        assert runner.run(str(job.pk)) == "succeeded"
        assert len(files()) == 2 and sorted(f.file.name.rsplit("/", 1)[-1] for o in reload(job).outputs.all()
                                            for f in o.files.all()) == files()

    def test_the_models_own_time_leaves_out_screening_and_storing(self, project, runner):
        """``generate_seconds`` is the plugin call's time only: the benchmarks subtract it as "the model"."""
        from atelier_platform.moderation.checks import replace_safety_checks
        from tests.support.safety import WordCheck

        class SlowCheck(WordCheck):
            def check_text(self, text, context):
                time.sleep(0.3)
                return super().check_text(text, context)

        replace_safety_checks([SlowCheck()])
        job = submit(project, sleep_s=0.1)  # the input is screened here, before the model's clock starts
        assert runner.run(str(job.pk)) == "succeeded"
        provenance = reload(job).outputs.get().provenance
        assert 0.1 <= provenance["generate_seconds"] < 0.3

    def test_second_delivery_of_the_same_message_does_nothing(self, project, runner):
        job = submit(project)
        assert runner.run(str(job.pk)) == "succeeded"
        assert runner.run(str(job.pk)) == "skipped"
        assert Output.objects.filter(job=job).count() == 1
        assert reload(job).attempts == 1

    def test_concurrent_claims_have_one_winner(self, project):
        job = submit(project)
        winners, barrier = [], threading.Barrier(6)

        def claim():
            barrier.wait()
            try:
                if lifecycle.claim_job(str(job.pk), f"w{threading.get_ident()}"):
                    winners.append(1)
            finally:
                connection.close()

        threads = [threading.Thread(target=claim) for _ in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(winners) == 1
        assert reload(job).attempts == 1

    def test_permanent_error_fails_with_the_plugins_message(self, project, runner):
        job = submit(project, fail="permanent")
        assert runner.run(str(job.pk)) == "failed"
        job = reload(job)
        assert (job.status, job.error_code, job.error_message) == ("failed", "invalid_input", "This text cannot be reversed.")
        assert not job.outputs.exists()

    def test_crash_fails_the_job_and_keeps_the_worker(self, project, runner):
        job = submit(project, fail="crash")
        assert runner.run(str(job.pk)) == "failed"
        job = reload(job)
        assert job.error_code == "plugin_crashed" and "ZeroDivisionError" in job.error_message
        assert runner.run(str(submit(project).pk)) == "succeeded"

    def test_transient_error_is_retried_with_backoff_then_gives_up(self, project, runner, sent_messages, atelier_config):
        atelier_config(retry_backoff_base_s=60)  # a backoff far longer than the test takes: "too early" stays so
        job = submit(project, fail="transient")
        for attempt in (1, 2):
            assert runner.run(str(job.pk)) == JobStatus.QUEUED
            job = reload(job)
            assert job.status == "queued" and job.attempts == attempt and job.error_code == "transient_error"
            assert sent_messages[-1]["countdown"] == lifecycle.retry_delay_s(attempt)
            due_in = (job.enqueued_at - timezone.now()).total_seconds()
            assert lifecycle.DUE_TOLERANCE_S < due_in <= lifecycle.retry_delay_s(attempt)
            assert runner.run(str(job.pk)) == "skipped"  # a message before the backoff is over: dropped
            backoff_over(job)
        assert runner.run(str(job.pk)) == JobStatus.FAILED
        job = reload(job)
        assert job.status == "failed" and job.attempts == 3 and "gave up after 3 attempts" in job.error_message

    def test_transient_error_then_success(self, project, runner):
        job = submit(project, fail="transient_once")
        runner.run(str(job.pk))
        backoff_over(job)
        assert runner.run(str(job.pk)) == "succeeded"
        assert reload(job).attempts == 2 and Output.objects.filter(job=job).count() == 1

    def test_result_of_a_lost_claim_is_discarded(self, project):
        job = submit(project)
        claim = lifecycle.claim_job(str(job.pk), "slow-worker")
        # the sweeper decided the worker was dead and another worker took the job
        Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, claim_token=None)
        second = lifecycle.claim_job(str(job.pk), "new-worker")
        produced = [lifecycle.ProducedOutput(content={"text": "late"})]
        assert lifecycle.complete_job(str(job.pk), claim.token, produced, {}) == "lost"
        assert lifecycle.complete_job(str(job.pk), second.token, [lifecycle.ProducedOutput(content={"text": "x"})], {}) == "succeeded"
        assert [o.content for o in Output.objects.filter(job=job)] == [{"text": "x"}]

    def test_cancel_while_running_discards_outputs(self, project, runner):
        job = submit(project, sleep_s=3)
        outcome = []
        thread = threading.Thread(target=lambda: (outcome.append(runner.run(str(job.pk))), connection.close()))
        with override_settings():
            thread.start()
            deadline = timezone.now() + timedelta(seconds=10)
            while reload(job).status != JobStatus.RUNNING and timezone.now() < deadline:
                pass
            lifecycle.cancel_job(reload(job))
            thread.join(timeout=15)
        job = reload(job)
        assert outcome == ["cancelled"] and job.status == JobStatus.CANCELLED
        assert not job.outputs.exists()
        assert job.progress is not None and job.progress < 1.0

    def test_progress_is_visible_while_running(self, project, runner):
        job = submit(project, sleep_s=1)
        thread = threading.Thread(target=lambda: (runner.run(str(job.pk)), connection.close()))
        thread.start()
        seen = set()
        while thread.is_alive():
            progress = reload(job).progress
            if progress is not None:
                seen.add(progress)
        thread.join()
        assert any(0 < p < 1 for p in seen)

    def test_plugin_missing_on_this_worker_is_retried(self, project, empty_plugin_registry):
        job = submit(project)
        bare = JobRunner(type(empty_plugin_registry)(), ModelCache("cpu"))
        assert bare.run(str(job.pk)) == JobStatus.QUEUED
        assert reload(job).error_code == "plugin_unavailable"

    @pytest.mark.parametrize("fires_while", ["loading the model", "screening the output", "storing the result"])
    def test_the_soft_time_limit_fails_the_job_with_time_limit_wherever_it_fires(self, project, runner, monkeypatch,
                                                                                  fires_while):
        """Celery's soft limit is an ``Exception``: a handler for a broken model or a refused write must not
        take it for one (a load failure retried, an unhealthy worker, a job left running for the sweeper)."""
        from celery.exceptions import SoftTimeLimitExceeded

        from atelier_workers import runtime

        def time_is_up(*args, **kwargs):
            raise SoftTimeLimitExceeded()

        target, name = {"loading the model": (ReverseTextPlugin, "load"), "screening the output": (runtime, "screen_output"),
                        "storing the result": (lifecycle, "complete_job")}[fires_while]
        monkeypatch.setattr(target, name, time_is_up)
        job = submit(project)
        assert runner.run(str(job.pk)) == "failed"
        job = reload(job)
        assert (job.status, job.error_code) == (JobStatus.FAILED, "time_limit") and job.claim_token is None
        assert runner.state == "ready"

    def test_a_batchs_heartbeats_stop_for_a_job_whose_result_could_not_be_stored(self, project):
        """That job stays running under the batch's claim: it must fall silent, so that the sweeper queues it
        again, while the rest of its batch runs on."""
        from atelier_workers.heartbeat import BatchHeartbeat

        stored, unstorable = submit(project), submit(project)
        claim = lifecycle.claim_job(str(stored.pk), "w")
        assert lifecycle.claim_company(claim.job, claim.token, "w", 1, lambda *_: True)
        long_ago = timezone.now() - timedelta(hours=1)
        Job.objects.filter(pk__in=[stored.pk, unstorable.pk]).update(heartbeat_at=long_ago)
        with BatchHeartbeat(claim.token, [str(stored.pk), str(unstorable.pk)]) as beat:
            beat.finished(str(unstorable.pk))  # what the runner does with an outcome of "error"
            deadline = time.monotonic() + 10
            while reload(stored).heartbeat_at == long_ago and time.monotonic() < deadline:
                time.sleep(0.05)
        assert reload(stored).heartbeat_at > long_ago
        assert reload(unstorable).heartbeat_at == long_ago and reload(unstorable).status == JobStatus.RUNNING
        assert not beat.lost

    def test_a_cancel_is_noticed_before_the_next_heartbeat(self, project, atelier_config):
        """The plugin asks at every step whether its job was cancelled; the answer changed only at a heartbeat, so a
        running job stopped up to ATELIER_JOB_HEARTBEAT_S (5 s) after the cancel. It now changes within a flush."""
        from atelier_workers.heartbeat import BatchHeartbeat

        atelier_config(job_heartbeat_s=5, progress_flush_s=0.1)
        job = submit(project)
        claim = lifecycle.claim_job(str(job.pk), "w")
        with BatchHeartbeat(claim.token, [str(job.pk)]) as beat:
            time.sleep(0.15)
            assert not beat.is_cancelled(str(job.pk))
            lifecycle.cancel_job(reload(job))
            asked = time.monotonic()
            while not beat.is_cancelled(str(job.pk)) and time.monotonic() - asked < 4:
                time.sleep(0.02)
            noticed_after = time.monotonic() - asked
        assert beat.is_cancelled(str(job.pk)) and noticed_after < 4, noticed_after

    def test_a_result_refused_at_every_attempt_fails_with_the_reason(self, project, runner, monkeypatch):
        """Not "the worker stopped responding": the database said why."""
        from django.db import DataError

        def refusing(*args, **kwargs):
            raise DataError("value too long for type character varying(64)")

        monkeypatch.setattr(lifecycle, "complete_job", refusing)
        job = submit(project)
        for _ in range(job.max_attempts - 1):
            assert runner.run(str(job.pk)) == JobStatus.QUEUED
            backoff_over(job)
        assert runner.run(str(job.pk)) == JobStatus.FAILED
        job = reload(job)
        assert job.error_code == "store_failed" and "value too long" in job.error_message
        assert f"gave up after {job.max_attempts} attempts" in job.error_message

    def test_a_result_that_cannot_even_be_retried_is_left_to_the_sweeper(self, project, runner, monkeypatch):
        from django.db import OperationalError

        def database_gone(*args, **kwargs):
            raise OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(lifecycle, "complete_job", database_gone)
        monkeypatch.setattr(lifecycle, "retry_or_fail", database_gone)
        job = submit(project)
        assert runner.run(str(job.pk)) == "error"
        assert reload(job).status == JobStatus.RUNNING  # under the claim, silent: the sweeper queues it again

    def test_model_is_loaded_once_per_process(self, project, runner):
        runner.run(str(submit(project).pk))
        first = runner.cache.get(get_registry().get("reverse_text"), None).plugin
        runner.run(str(submit(project).pk))
        assert runner.cache.get(get_registry().get("reverse_text"), None).plugin is first


@pytest.mark.django_db
class TestSweeper:
    def test_running_job_of_a_dead_worker_is_queued_again(self, project, sent_messages, django_capture_on_commit_callbacks):
        job = submit(project)
        lifecycle.claim_job(str(job.pk), "dead-worker")
        later = timezone.now() + timedelta(seconds=get_config().job_stale_after_s + 1)
        sent_before = len(sent_messages)
        with django_capture_on_commit_callbacks(execute=True):
            assert lifecycle.sweep(now=later)["requeued_lost_workers"] == 1
        job = reload(job)
        assert job.status == "queued" and job.claim_token is None and job.error_code == "worker_lost"
        assert len(sent_messages) == sent_before + 1

    def test_live_worker_is_left_alone(self, project):
        job = submit(project)
        lifecycle.claim_job(str(job.pk), "live-worker")
        assert lifecycle.sweep()["requeued_lost_workers"] == 0
        assert reload(job).status == "running"

    def test_last_attempt_of_a_dead_worker_fails_the_job(self, project):
        job = submit(project)
        Job.objects.filter(pk=job.pk).update(attempts=2)
        lifecycle.claim_job(str(job.pk), "dead-worker")
        later = timezone.now() + timedelta(seconds=get_config().job_stale_after_s + 1)
        assert lifecycle.sweep(now=later)["failed_lost_workers"] == 1
        job = reload(job)
        assert job.status == "failed" and job.error_code == "worker_lost"

    def test_past_its_time_limit_fails(self, project):
        job = submit(project)
        lifecycle.claim_job(str(job.pk), "stuck")
        last_beat = timezone.now() + timedelta(seconds=job.time_limit_s + 1)
        Job.objects.filter(pk=job.pk).update(heartbeat_at=last_beat)
        lifecycle.sweep(now=last_beat + timedelta(seconds=get_config().job_stale_after_s + 1))
        assert reload(job).error_code == "time_limit"

    def test_cancel_requested_on_a_dead_worker_cancels(self, project):
        job = submit(project)
        lifecycle.claim_job(str(job.pk), "dead-worker")
        lifecycle.cancel_job(reload(job))
        later = timezone.now() + timedelta(seconds=get_config().job_stale_after_s + 1)
        assert lifecycle.sweep(now=later)["cancelled"] == 1
        assert reload(job).status == "cancelled"

    def test_queued_job_whose_message_was_lost_is_published_again(self, project, sent_messages, django_capture_on_commit_callbacks):
        job = submit(project)
        assert lifecycle.sweep()["republished"] == 0
        later = timezone.now() + timedelta(seconds=get_config().job_requeue_after_s + 1)
        sent_before = len(sent_messages)
        with django_capture_on_commit_callbacks(execute=True):
            assert lifecycle.sweep(now=later)["republished"] == 1
        assert sent_messages[sent_before]["args"] == [str(job.pk)]
        assert reload(job).enqueue_count == 2

    def test_a_sweep_stops_publishing_at_the_first_message_the_broker_does_not_take(self, project, monkeypatch):
        """On a broker that does not answer, each lost job waited out its own publish timeout (500 of them, about
        40 minutes, and the sweep's other repairs with them); the rest now wait for the next sweep."""
        from atelier_platform.jobs import queueing

        jobs = [submit(project) for _ in range(3)]
        tried = []
        monkeypatch.setattr(queueing, "publish_run_job", lambda job_id, **_: tried.append(job_id) or False)
        later = timezone.now() + timedelta(seconds=get_config().job_requeue_after_s + 1)
        assert lifecycle.sweep(now=later)["republished"] == 0
        assert len(tried) == 1
        assert all(reload(job).status == JobStatus.QUEUED for job in jobs)  # still queued, for the next sweep

        monkeypatch.setattr(queueing, "publish_run_job", lambda job_id, **_: tried.append(job_id) or True)
        even_later = later + timedelta(seconds=get_config().job_requeue_after_s + 1)
        assert lifecycle.sweep(now=even_later)["republished"] == 3  # the broker is back: every one goes

    def test_finished_jobs_are_never_touched(self, project):
        job = submit(project)
        Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, heartbeat_at=timezone.now() - timedelta(days=1))
        counts = lifecycle.sweep(now=timezone.now() + timedelta(days=1))
        assert set(counts.values()) == {0}


def test_unknown_job_id_is_skipped(transactional_db, runner):
    assert runner.run(str(uuid.uuid4())) == "skipped"


@pytest.mark.django_db(transaction=True)
def test_output_files_are_stored_and_served_only_to_their_project(project, other_project, runner, make_key, client_for):
    job = submit(project, with_file=True)
    runner.run(str(job.pk))
    api = client_for(make_key(project).raw)
    output = api.get(f"/api/v1/jobs/{job.pk}/").json()["outputs"][0]
    [file] = output["files"]
    assert (file["role"], file["media_type"], file["size"]) == ("primary", "text/plain", 5)
    response = api.get(file["url"])
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"olleh"
    assert response["Content-Type"] == "text/plain"
    stranger = client_for(make_key(other_project).raw)
    assert stranger.get(file["url"]).status_code == 404
    assert client_for(None).get(file["url"]).status_code == 401
