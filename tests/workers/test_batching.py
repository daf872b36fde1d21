"""Dynamic batching in the worker runtime: who shares a batch, and how a batch fails."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from atelier_sdk import PluginError, TransientPluginError
from django.core.management import call_command
from django.utils import timezone

from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.config import get_config
from atelier_platform.jobs.models import Job, JobStatus, Output
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_workers import runtime
from atelier_workers.runtime import JobRunner, ModelCache
from tests.factories import ProjectFactory
from tests.support.plugins import BatchProbe, ModelDirProbe

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def probe_project(project, empty_plugin_registry):
    empty_plugin_registry.register(BatchProbe)
    set_plugin_enabled(project, "batch_probe", True)
    return project


@pytest.fixture
def runner(probe_project):
    return JobRunner(get_registry(), ModelCache("cpu"))


def submit(project, text="a", **fields) -> Job:
    return submit_job(project, JobRequest("batch_probe", {"text": text, **fields}, {})).job


def reload(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def batch_of(job: Job) -> set[str]:
    return set(reload(job).outputs.get().content["batch"])


def test_queued_compatible_jobs_run_in_one_call(probe_project, runner):
    jobs = [submit(probe_project, text=f"job {n}") for n in range(5)]
    assert runner.run(str(jobs[2].pk)) == "succeeded"
    ids = {str(j.pk) for j in jobs}
    for job in jobs:
        job = reload(job)
        assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
        assert set(job.outputs.get().content["batch"]) == ids
        assert job.outputs.get().provenance["batch_size"] == 5
    # their own messages arrive later and find nothing to do
    assert [runner.run(str(j.pk)) for j in jobs] == ["skipped"] * 5


def test_only_compatible_jobs_share_a_batch(probe_project, runner, empty_plugin_registry):
    small = [submit(probe_project, size=1) for _ in range(3)]
    large = [submit(probe_project, size=2) for _ in range(2)]
    other_plugin = submit_job(probe_project, JobRequest("reverse_text", {"text": "x"}, {})).job
    runner.run(str(small[0].pk))
    assert batch_of(small[0]) == {str(j.pk) for j in small}
    assert all(reload(j).status == JobStatus.QUEUED for j in [*large, other_plugin])
    runner.run(str(large[1].pk))
    assert batch_of(large[0]) == {str(j.pk) for j in large}
    assert reload(other_plugin).status == JobStatus.QUEUED


def test_jobs_of_other_projects_share_a_batch_when_they_use_the_same_model(probe_project, runner):
    elsewhere = ProjectFactory()
    set_plugin_enabled(elsewhere, "batch_probe", True)
    mine, theirs = submit(probe_project), submit(elsewhere)
    runner.run(str(mine.pk))
    assert batch_of(mine) == batch_of(theirs) == {str(mine.pk), str(theirs.pk)}


def test_a_project_pinned_to_another_model_version_gets_its_own_batch(project, empty_plugin_registry, tmp_path, monkeypatch):
    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: tmp_path))
    (tmp_path / "probe" / "default").mkdir(parents=True)
    (tmp_path / "probe" / "v2").mkdir(parents=True)
    empty_plugin_registry.register(ModelDirProbe)
    pinned = ProjectFactory()
    for p in (project, pinned):
        set_plugin_enabled(p, "model_probe", True)
    call_command("register_model", "--plugin", "model_probe", "--name", "v2", "--dir", "probe/v2", "--pin", pinned.slug,
                 stdout=io.StringIO())
    jobs = [submit_job(p, JobRequest("model_probe", {"text": "x"}, {})).job for p in (project, pinned, project)]
    JobRunner(get_registry(), ModelCache("cpu")).run(str(jobs[0].pk))
    assert [reload(j).status for j in jobs] == [JobStatus.SUCCEEDED, JobStatus.QUEUED, JobStatus.SUCCEEDED]
    assert reload(jobs[0]).outputs.get().provenance["batch_size"] == 2


def test_a_batch_never_exceeds_the_plugins_max_batch_size(probe_project, runner):
    jobs = [submit(probe_project) for _ in range(11)]
    runner.run(str(jobs[0].pk))
    statuses = [reload(j).status for j in jobs]
    assert statuses.count(JobStatus.SUCCEEDED) == BatchProbe.manifest.max_batch_size
    assert statuses.count(JobStatus.QUEUED) == 11 - BatchProbe.manifest.max_batch_size


def test_urgent_company_is_taken_first(probe_project, runner):
    leader = submit(probe_project)
    waiting = [submit(probe_project) for _ in range(8)]
    urgent = submit_job(probe_project, JobRequest("batch_probe", {"text": "now"}, {}, priority=9)).job
    runner.run(str(leader.pk))
    assert reload(urgent).status == JobStatus.SUCCEEDED
    assert [reload(j).status for j in waiting].count(JobStatus.QUEUED) == 2


def test_a_retry_waiting_out_its_backoff_is_not_taken_early(probe_project, runner):
    leader, backing_off = submit(probe_project), submit(probe_project)
    Job.objects.filter(pk=backing_off.pk).update(enqueued_at=timezone.now() + timedelta(minutes=5))
    runner.run(str(leader.pk))
    assert reload(backing_off).status == JobStatus.QUEUED


def test_a_batch_companion_retried_after_a_transient_error_waits_out_its_backoff(probe_project, runner, atelier_config):
    """Its own message, still on the broker when it ran as company, comes after the batch: too early."""
    atelier_config(retry_backoff_base_s=60)  # far longer than the test takes
    leader, companion = submit(probe_project), submit(probe_project, fail="transient")
    runner.run(str(leader.pk))
    companion = reload(companion)
    assert (companion.status, companion.attempts, companion.error_code) == (JobStatus.QUEUED, 1, "transient_error")
    assert runner.run(str(companion.pk)) == "skipped"
    assert reload(companion).attempts == 1
    Job.objects.filter(pk=companion.pk).update(enqueued_at=timezone.now() - timedelta(seconds=1))  # the countdown's over
    assert runner.run(str(companion.pk)) == "failed"  # its second and last attempt (the probe allows 2)
    assert reload(companion).attempts == 2


def test_one_failing_item_fails_alone(probe_project, runner):
    good = [submit(probe_project) for _ in range(3)]
    bad = submit(probe_project, fail="item")
    runner.run(str(good[0].pk))
    bad = reload(bad)
    assert bad.status == JobStatus.FAILED and bad.error_code == "invalid_input" and not bad.outputs.exists()
    assert all(reload(j).status == JobStatus.SUCCEEDED for j in good)


def test_a_plugin_crashing_on_the_batch_fails_only_the_job_that_crashes_it(probe_project, runner):
    good = [submit(probe_project, text=f"ok {n}") for n in range(5)]
    culprit = submit(probe_project, fail="raise")
    runner.run(str(good[0].pk))
    culprit = reload(culprit)
    assert culprit.status == JobStatus.FAILED and culprit.error_code == "plugin_crashed"
    assert "wrong shape" in culprit.error_message
    for job in good:
        assert reload(job).status == JobStatus.SUCCEEDED
        assert str(culprit.pk) not in batch_of(job)  # the stored result came from a call without the culprit


def test_jobs_whose_worker_died_run_alone_so_that_one_killer_cannot_fail_its_whole_batch(probe_project, runner):
    """A job that kills its worker process (a segfault, the out-of-memory killer) cannot be split out in
    process: its batch comes back from the sweeper, and each of its jobs runs alone."""
    from atelier_platform.jobs import lifecycle

    died_in = [submit(probe_project, text=f"died {n}") for n in range(3)]
    claim = lifecycle.claim_job(str(died_in[0].pk), "worker-that-dies")
    assert len(lifecycle.claim_company(claim.job, claim.token, "worker-that-dies", 7, lambda *_: True)) == 2
    # ... the process dies here: no result, no heartbeat; the sweeper finds them silent.
    later = timezone.now() + timedelta(seconds=get_config().job_stale_after_s + 1)
    assert lifecycle.sweep(now=later)["requeued_lost_workers"] == 3
    Job.objects.filter(pk__in=[j.pk for j in died_in]).update(enqueued_at=timezone.now())  # due now
    assert {reload(j).error_code for j in died_in} == {"worker_lost"}

    newcomer = submit(probe_project, text="new")
    runner.run(str(newcomer.pk))
    assert batch_of(newcomer) == {str(newcomer.pk)}  # none of them joined a healthy job's batch
    assert {reload(j).status for j in died_in} == {JobStatus.QUEUED}
    for job in died_in:
        assert runner.run(str(job.pk)) == "succeeded"
        assert batch_of(job) == {str(job.pk)}  # nor took company
        assert reload(job).error_code == ""
    again = [submit(probe_project, text=f"again {n}") for n in range(2)]
    runner.run(str(again[0].pk))
    assert batch_of(again[0]) == {str(j.pk) for j in again}  # batching as before for the rest


def test_the_time_limit_reached_in_a_split_batch_fails_only_the_jobs_without_a_result(probe_project, runner,
                                                                                    monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    jobs = [submit(probe_project, text="done in time"), submit(probe_project, text="too slow", fail="raise")]
    generate = BatchProbe.generate

    def time_is_up_for_the_slow_one(self, batch, context):
        if len(batch) == 1 and batch[0].input.text == "too slow":
            raise SoftTimeLimitExceeded()
        return generate(self, batch, context)  # the pair crashes ("raise"): split in two

    monkeypatch.setattr(BatchProbe, "generate", time_is_up_for_the_slow_one)
    runner.run(str(jobs[0].pk))
    done, slow = reload(jobs[0]), reload(jobs[1])
    assert done.status == JobStatus.SUCCEEDED and batch_of(done) == {str(done.pk)}
    assert (slow.status, slow.error_code) == (JobStatus.FAILED, "time_limit")


def with_time_limit_of_one_second(*jobs: Job) -> None:
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(time_limit_s=1)


def test_errors_a_plugin_returns_once_its_time_is_up_fail_as_the_time_limit_and_its_results_are_kept(probe_project,
                                                                                                     runner):
    """What a plugin that caught the soft limit in its own ``except Exception`` hands back (here: a
    retryable error) is not retried: the time is up. What it made is stored."""
    made, gave_up = submit(probe_project, text="made", sleep_s=1.1), submit(probe_project, fail="transient")
    with_time_limit_of_one_second(made, gave_up)
    runner.run(str(made.pk))
    made, gave_up = reload(made), reload(gave_up)
    assert made.status == JobStatus.SUCCEEDED and batch_of(made) == {str(made.pk), str(gave_up.pk)}
    assert (gave_up.status, gave_up.error_code, gave_up.attempts) == (JobStatus.FAILED, "time_limit", 1)
    assert gave_up.error_message == "Exceeded its time limit of 1 s."


@pytest.fixture
def billiards_soft_limit_handler():
    """What billiard installs in each pool child: SIGUSR1 raises ``SoftTimeLimitExceeded`` wherever the task is."""
    import signal

    from billiard.pool import soft_timeout_sighandler

    before = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)
    yield
    signal.signal(signal.SIGUSR1, before)


@pytest.mark.usefixtures("billiards_soft_limit_handler")
def test_a_soft_limit_the_plugin_swallows_before_the_workers_own_clock_says_so_is_still_the_time_limit(
        probe_project, runner, monkeypatch):
    """Celery's timer starts before the task's own clock does: the limit may fire while ``deadline`` is still
    ahead. What the plugin hands back after catching it is not retried (the job failed this way in CI)."""
    import os
    import signal

    generate = BatchProbe.generate

    def swallows_the_limit(self, batch, context):
        if batch[0].input.text != "slow":
            return generate(self, batch, context)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)  # the pool's parent: the time is up
            time.sleep(1)
        except Exception as error:
            return [TransientPluginError(f"Gave up: {type(error).__name__}", code="gave_up")] * len(batch)
        return [PluginError("the limit never fired", code="test_broken")] * len(batch)

    monkeypatch.setattr(BatchProbe, "generate", swallows_the_limit)
    job = submit(probe_project, text="slow")  # a time limit of 120 s: by the clock, far from up
    runner.run(str(job.pk))
    job = reload(job)
    assert (job.status, job.error_code, job.attempts) == (JobStatus.FAILED, "time_limit", 1)
    # the next task starts with its whole time: the flag is the last task's, not the process's
    again = submit(probe_project, text="in time")
    runner.run(str(again.pk))
    assert reload(again).status == JobStatus.SUCCEEDED


def test_a_batch_that_crashes_once_its_time_is_up_is_not_split_and_run_again(probe_project, runner, monkeypatch):
    calls = []

    def crashes_late(self, batch, context):
        calls.append(len(batch))
        time.sleep(1.05)
        raise RuntimeError("a swallowed time limit left the model half-way")

    monkeypatch.setattr(BatchProbe, "generate", crashes_late)
    jobs = [submit(probe_project, text=f"late {n}") for n in range(2)]
    with_time_limit_of_one_second(*jobs)
    runner.run(str(jobs[0].pk))
    assert calls == [2]
    assert [(reload(job).status, reload(job).error_code) for job in jobs] == [(JobStatus.FAILED, "time_limit")] * 2


def test_out_of_memory_splits_the_batch_until_it_fits(probe_project, runner):
    jobs = [submit(probe_project, oom_above=2) for _ in range(6)]
    runner.run(str(jobs[0].pk))
    for job in jobs:
        assert reload(job).status == JobStatus.SUCCEEDED
        assert len(batch_of(job)) <= 2
    assert runner.stats.snapshot()["counters"]["oom_splits"] >= 2


def test_out_of_memory_alone_fails_the_job_clearly(probe_project, runner):
    job = submit(probe_project, oom_above=0)
    runner.run(str(job.pk))
    job = reload(job)
    assert job.status == JobStatus.FAILED and job.error_code == "out_of_memory"
    assert "ran out of memory" in job.error_message
    assert runner.state == "unhealthy"


def test_an_idle_worker_starts_a_lone_job_without_waiting(probe_project, runner, monkeypatch):
    naps = []
    monkeypatch.setattr(runtime.time, "sleep", naps.append)
    runner.max_wait_s = 30  # would be felt if the worker waited for company that is not coming
    job = submit(probe_project)
    assert runner.run(str(job.pk)) == "succeeded"
    assert naps == []


def test_the_worker_waits_for_company_while_it_keeps_arriving(probe_project, runner, monkeypatch):
    arriving = iter(range(3))

    def nap(seconds):
        # each pause for company sees one more job submitted, as a burst of API calls would
        if next(arriving, None) is not None:
            submit(probe_project, text="late")

    monkeypatch.setattr(runtime.time, "sleep", nap)
    # The arrivals come within milliseconds, far inside the deadline; once they stop, the wait ends after its
    # quiet time (a quarter of max_wait_s), which at 30 s here had the test wait out 7.5 s of nothing.
    runner.max_wait_s = 6
    first, second = submit(probe_project), submit(probe_project)
    runner.run(str(first.pk))
    assert len(batch_of(first)) == 5  # the two queued, then the three that arrived while it waited
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 0


def test_batch_metrics_are_counted(probe_project, runner):
    jobs = [submit(probe_project) for _ in range(4)] + [submit(probe_project, fail="item")]
    runner.run(str(jobs[0].pk))
    stats = runner.stats.snapshot()
    assert stats["counters"]["batches"] == 1
    assert stats["counters"]["jobs_succeeded"] == 4 and stats["counters"]["jobs_failed"] == 1
    assert stats["histograms"]["batch_size"]["count"] == 1 and stats["histograms"]["batch_size"]["sum"] == 5
    assert stats["histograms"]["run_seconds"]["count"] == 5


@pytest.fixture(scope="module")
def tiny_models_root(tmp_path_factory):
    """A models root with a tiny chat LM at the chatbot's default model directory, built once for the module
    (only read: each test's runner loads it into a model cache of its own)."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from tests.support.tiny_lm import build_tiny_chat_lm

    root = tmp_path_factory.mktemp("models")
    build_tiny_chat_lm(root / ChatbotPlugin.manifest.default_model_dir, n_positions=512)
    return root


@pytest.fixture
def chat_project(project, empty_plugin_registry, tiny_models_root, monkeypatch):
    """The real chatbot plugin on a tiny LM in the default model directory, knowledge off."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: tiny_models_root))
    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    return project


def submit_chat(project, text: str, **params) -> Job:
    data = {"messages": [{"role": "user", "content": text}], "use_knowledge": False}
    return submit_job(project, JobRequest("chatbot", data, params)).job


def reply_of(job: Job) -> dict:
    content = reload(job).outputs.get().content
    return {"reply": content["reply"], "tokens": content["usage"]["completion_tokens"]}


def test_same_seed_gives_the_same_reply_alone_and_in_a_mixed_batch(chat_project):
    runner = JobRunner(get_registry(), ModelCache("cpu"))
    asked = [("Where is my parcel?", {"seed": 11, "temperature": 0.9, "max_new_tokens": 24}),
             ("How long do returns take?", {"seed": 0, "max_new_tokens": 16}),  # greedy
             ("Hello", {"seed": 3, "temperature": 1.2, "top_p": 0.8, "max_new_tokens": 8})]
    alone = []
    for text, params in asked:
        job = submit_chat(chat_project, text, **params)
        runner.run(str(job.pk))
        alone.append(reply_of(job))
    others = [submit_chat(chat_project, f"Something else entirely, number {n}", seed=n, temperature=1.0, max_new_tokens=40)
              for n in range(3)]
    together = [submit_chat(chat_project, text, **params) for text, params in asked]
    runner.run(str(others[0].pk))
    assert reload(together[0]).outputs.get().provenance["batch_size"] == 6
    assert [reply_of(job) for job in together] == alone


def test_a_short_reply_is_stored_before_the_longest_in_its_batch_finishes(chat_project):
    # The long one leads the batch: results stored in batch order would store it first.
    long = submit_chat(chat_project, "Tell me everything", seed=2, max_new_tokens=300, stop=["\u2603"])
    short = submit_chat(chat_project, "Hi", seed=1, max_new_tokens=2)
    JobRunner(get_registry(), ModelCache("cpu")).run(str(long.pk))
    short, long = reload(short), reload(long)
    assert short.outputs.get().provenance["batch_size"] == long.outputs.get().provenance["batch_size"] == 2
    assert long.outputs.get().content["usage"]["completion_tokens"] > 20
    assert short.finished_at < long.finished_at


def test_a_nul_character_in_generated_text_does_not_stop_the_job_being_stored(probe_project, runner):
    job = submit(probe_project, text="before~after")
    assert runner.run(str(job.pk)) == "succeeded"
    assert reload(job).outputs.get().content["text"] == "BEFOREAFTER"


# -- storing a batch's results together --------------------------------------------------------------

def statements(captured, start: str) -> int:
    return sum(1 for query in captured if query["sql"].startswith(start))


def test_the_results_of_a_batch_are_stored_together(probe_project, runner):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    jobs = [submit(probe_project, text=f"job {n}") for n in range(6)]
    with CaptureQueriesContext(connection) as captured:
        runner.run(str(jobs[0].pk))
    assert [reload(j).status for j in jobs] == [JobStatus.SUCCEEDED] * 6
    assert [reload(j).outputs.get().content["text"] for j in jobs] == [f"JOB {n}" for n in range(6)]
    # one statement each for the six jobs' rows, outputs, review items and audit records
    assert statements(captured, 'INSERT INTO "jobs_output"') == 1
    assert statements(captured, 'INSERT INTO "moderation_reviewitem"') == 1
    assert statements(captured, 'INSERT INTO "moderation_auditevent"') == 1
    assert sum(1 for q in captured if q["sql"].startswith('UPDATE "jobs_job" SET "status" = \'succeeded\'')) == 1
    assert Output.objects.filter(job__in=jobs).count() == 6
    assert runner.stats.snapshot()["counters"]["jobs_succeeded"] == 6


@pytest.fixture
def while_screening(monkeypatch):
    """Runs ``action(job)`` while each job's output is screened: after the plugin call, before storing."""
    actions = {}
    screen = runtime.screen_output

    def screened(job, produced, policy):
        if str(job.pk) in actions:
            actions[str(job.pk)](job)
        return screen(job, produced, policy)

    monkeypatch.setattr(runtime, "screen_output", screened)
    return actions


def test_a_cancel_asked_while_a_batch_is_stored_cancels_that_job_alone(probe_project, runner, while_screening):
    jobs = [submit(probe_project, text=f"job {n}") for n in range(4)]
    while_screening[str(jobs[2].pk)] = lambda job: Job.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
    runner.run(str(jobs[0].pk))
    assert [reload(j).status for j in jobs] == [JobStatus.SUCCEEDED] * 2 + [JobStatus.CANCELLED, JobStatus.SUCCEEDED]
    assert not reload(jobs[2]).outputs.exists()
    assert Output.objects.filter(job__in=jobs).count() == 3


def test_a_claim_lost_while_a_batch_is_stored_stores_the_others(probe_project, runner, while_screening):
    import uuid

    jobs = [submit(probe_project, text=f"job {n}") for n in range(3)]
    elsewhere = uuid.uuid4()  # the sweeper gave it to another worker meanwhile
    while_screening[str(jobs[1].pk)] = lambda job: Job.objects.filter(pk=job.pk).update(claim_token=elsewhere)
    runner.run(str(jobs[0].pk))
    taken = reload(jobs[1])
    assert taken.status == JobStatus.RUNNING and taken.claim_token == elsewhere and not taken.outputs.exists()
    assert reload(jobs[0]).status == reload(jobs[2]).status == JobStatus.SUCCEEDED


def test_a_result_the_database_refuses_fails_alone_and_the_rest_of_its_batch_is_stored(probe_project, runner, monkeypatch):
    from django.db import DataError

    jobs = [submit(probe_project, text=f"job {n}") for n in range(3)] + [submit(probe_project, text="refused")]
    bulk_create = Output.objects.bulk_create

    def refusing(objs, *args, **kwargs):
        if any(output.content.get("text") == "REFUSED" for output in objs):
            raise DataError("value too long for the column")
        return bulk_create(objs, *args, **kwargs)

    monkeypatch.setattr(Output.objects, "bulk_create", refusing)
    runner.run(str(jobs[0].pk))
    assert [reload(j).status for j in jobs[:3]] == [JobStatus.SUCCEEDED] * 3
    refused = reload(jobs[3])
    assert (refused.status, refused.error_code) == (JobStatus.QUEUED, "store_failed") and not refused.outputs.exists()


def test_a_batchs_progress_is_written_in_one_statement_each_job_its_own(probe_project):
    import uuid

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from atelier_platform.jobs import lifecycle

    jobs = [submit(probe_project, text=str(i)) for i in range(4)]
    token, others = uuid.uuid4(), uuid.uuid4()
    Job.objects.filter(pk__in=[j.pk for j in jobs[:3]]).update(status=JobStatus.RUNNING, claim_token=token)
    Job.objects.filter(pk=jobs[3].pk).update(status=JobStatus.RUNNING, claim_token=others)  # another worker's
    progress = {str(job.pk): (0.25 * (i + 1), {"tokens": 8 * (i + 1)}) for i, job in enumerate(jobs)}

    with CaptureQueriesContext(connection) as captured:
        lifecycle.record_progress(token, progress)

    assert len([q for q in captured.captured_queries if q["sql"].startswith("UPDATE")]) == 1
    assert [(reload(j).progress, reload(j).progress_detail) for j in jobs[:3]] == [
        (0.25, {"tokens": 8}), (0.5, {"tokens": 16}), (0.75, {"tokens": 24})]
    assert reload(jobs[3]).progress is None and reload(jobs[3]).progress_detail == {}  # not this claim's


def test_a_job_naming_a_model_version_never_shares_a_batch_with_one_on_its_projects_model(project, empty_plugin_registry,
                                                                                        tmp_path, monkeypatch):
    """An evaluation job runs with the version it names; its project's other jobs with the project's pin (here the
    default): the two resolve to different models and must not share the batch (nor each other's model)."""
    from atelier_platform.catalog.models import ModelVersion

    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: tmp_path))
    (tmp_path / "probe" / "default").mkdir(parents=True)
    (tmp_path / "probe" / "v2").mkdir(parents=True)
    empty_plugin_registry.register(ModelDirProbe)
    set_plugin_enabled(project, "model_probe", True)
    call_command("register_model", "--plugin", "model_probe", "--name", "v2", "--dir", "probe/v2", stdout=io.StringIO())
    version = ModelVersion.objects.get(plugin_id="model_probe", version="v2")
    plain = [submit_job(project, JobRequest("model_probe", {"text": "x"}, {})).job for _ in range(2)]
    naming = [submit_job(project, JobRequest("model_probe", {"text": "x"}, {})).job for _ in range(2)]
    Job.objects.filter(pk__in=[j.pk for j in naming]).update(model_version=version)
    runner = JobRunner(get_registry(), ModelCache("cpu"))
    runner.run(str(plain[0].pk))
    assert [reload(j).status for j in plain + naming] == [JobStatus.SUCCEEDED] * 2 + [JobStatus.QUEUED] * 2
    assert {reload(j).outputs.get().content["text"] for j in plain} == {"default"}
    runner.run(str(naming[1].pk))
    for job in naming:
        output = reload(job).outputs.get()
        assert output.content["text"] == "v2" and output.provenance["model_version"] == "v2"
        assert output.provenance["batch_size"] == 2
