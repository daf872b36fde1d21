"""``manage.py evaluate``: a real run of the chatbot on tiny LMs, started through the API's service and answered by the
worker's job runner while the command waits, then compared and gated; its exit status, its stdout and stderr."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from atelier_platform.catalog.configuration import configure_plugin
from atelier_platform.catalog.models import ModelVersion
from atelier_platform.catalog.registry import get_registry
from atelier_platform.evaluation import gate, services
from atelier_platform.evaluation.management.commands import evaluate
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.moderation.models import AuditEvent
from atelier_workers.runtime import JobRunner, ModelCache
from tests.evaluation.test_runs import cancelled_part_way, make_set, run_all

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(monkeypatch):
    """A worker between the command's readings: each wait runs one queued evaluation job through the job runner (the
    job signals then move the run on, as in a worker process). ``worker.stopped`` leaves the queue alone."""

    class Worker:
        stopped = False
        waits = 0

        def __init__(self):
            self.runner = JobRunner(get_registry(), ModelCache("cpu"))

        def step(self, seconds):
            self.waits += 1
            if self.stopped:
                return
            job = Job.objects.filter(status=JobStatus.QUEUED, evaluation_case__isnull=False).order_by("created_at").first()
            if job is not None:
                self.runner.run(str(job.pk))

    made = Worker()
    monkeypatch.setattr(evaluate, "_sleep", made.step)
    monkeypatch.setattr(evaluate, "PROGRESS_EVERY_S", 0.0)  # a line for each move (the test's runs move fast)
    return made


def run_command(*args):
    """(exit status, stdout, stderr) of ``manage.py evaluate``, as run_from_argv would exit."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("evaluate", "--poll", "0.01", *args, stdout=out, stderr=err)
        status = 0
    except CommandError as error:
        status = error.returncode
        err.write(f"CommandError: {error}\n")
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def own_answers(chat_project):
    """A set whose references are the default model's own answers: it scores 100 on each, another version less."""
    probe = run_all(services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"], name="probe"), actor="t"))
    return make_set(chat_project, [case["output"] for case in probe.results], name="own answers")


@pytest.fixture
def v2():
    return ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")


def test_a_run_is_started_followed_and_reported(chat_project, worker):
    make_set(chat_project, ["It is on its way.", "Fourteen days.", "Yes."])
    status, out, err = run_command("--project", chat_project.slug, "--set", "support")
    run = EvaluationRun.objects.get(reference_set__name="support")
    assert status == 0, err
    assert run.status == RunStatus.SUCCEEDED and run.metrics["chrf"] is not None
    assert f"Started evaluation run {run.pk} of 'support' (chatbot, 3 cases)." in err
    progress = [line for line in err.splitlines() if "cases done" in line]
    assert progress[0].strip() == "queued: 0/3 cases done" and progress[-1].strip() == "succeeded: 3/3 cases done"
    assert len(progress) == len(set(progress)) <= worker.waits + 1  # a line when it moved, not one per reading
    assert f"chrf {run.metrics['chrf']:.2f}" in out and f"Result: Run {run.pk} succeeded." in out
    # the unpinned model by what it is, not as if a version were called "default"
    assert "on the current model, the plugin's default model (not pinned): succeeded" in out
    assert "model, default" not in out
    assert AuditEvent.objects.filter(action="evaluation_started", actor="cli:evaluate").count() == 1


def test_progress_is_a_line_every_few_seconds_not_one_per_move_and_always_the_end(chat_project, worker, monkeypatch):
    monkeypatch.setattr(evaluate, "PROGRESS_EVERY_S", 3600.0)
    worker.runner.max_batch_cap = 1  # a job per batch (ATELIER_MAX_BATCH_SIZE=1): the run moves case by case
    make_set(chat_project, ["a", "b", "c"])
    status, _, err = run_command("--project", chat_project.slug, "--set", "support")
    assert status == 0 and worker.waits >= 3  # it moved 1/3, 2/3, then 3/3 between readings
    assert [line.strip() for line in err.splitlines() if "cases done" in line] == [
        "queued: 0/3 cases done", "succeeded: 3/3 cases done"]


def test_a_version_that_drops_fails_the_gate_naming_the_metric_the_drop_and_the_baseline(chat_project, own_answers,
                                                                                         worker, v2):
    status, _, err = run_command("--project", chat_project.slug, "--set", str(own_answers.pk))
    assert status == 0, err
    baseline = EvaluationRun.objects.filter(reference_set=own_answers).get()
    assert baseline.metrics["chrf"] == 100.0

    status, out, err = run_command("--project", chat_project.slug, "--set", "own answers", "--model-version", "v2",
                                   "--compare-to", "pinned", "--max-drop", "chrf=1.5", "--max-drop", "bleu=100",
                                   "--json")
    assert status == 1, err
    report = json.loads(out)  # stdout: the JSON object alone
    candidate = EvaluationRun.objects.get(pk=report["run"]["id"])
    assert candidate.model_version == v2 and report["compared_to"]["id"] == str(baseline.pk)
    assert report["outcome"] == "gate_failed" and report["exit_code"] == 1
    drop = round(100.0 - candidate.metrics["chrf"], 6)
    gates = {g["metric"]: g for g in report["gates"]}
    assert gates["chrf"]["passed"] is False and gates["chrf"]["drop"] == pytest.approx(drop)
    assert gates["bleu"]["passed"] is True
    assert {m["name"]: m["better"] for m in report["metrics"]} == {"chrf": "higher", "bleu": "higher",
                                                                   "mean_case_chrf": "higher", "failed": "lower"}
    assert report["worst_cases"] and report["worst_cases"][0]["delta"] <= report["worst_cases"][-1]["delta"]
    message = report["message"]
    assert f"against run {baseline.pk}" in message and "chrf dropped by" in message and "at most 1.50 allowed" in message
    assert "bleu" not in message  # the limit that held is not named as failed
    assert "CommandError: Gate failed" in err and "FAIL  chrf dropped by" in err and "PASS  bleu" in err

    # The same candidate allowed a larger drop passes; measured against a run given by its id.
    status, out, err = run_command("--project", chat_project.slug, "--set", "own answers", "--model-version", str(v2.pk),
                                   "--compare-to", str(baseline.pk), "--max-drop", "chrf=100")
    assert status == 0, err
    assert "PASS  chrf dropped by" in out and f"2 limits held against run {baseline.pk}" in out
    assert "PASS  failed held" in out  # and no more failed cases than the baseline, checked with any limit


def test_pinned_means_the_version_pinned_now(chat_project, own_answers, worker, v2):
    default_run = run_all(services.start_run(chat_project, own_answers, actor="test"))
    configure_plugin(chat_project, "chatbot", "test", model_version=v2.pk)
    status, _, err = run_command("--project", chat_project.slug, "--set", "own answers", "--compare-to", "pinned")
    assert status == 2 and "No succeeded run of 'own answers' on the pinned version (v2)" in err
    assert EvaluationRun.objects.filter(reference_set=own_answers).count() == 1  # refused before starting one

    on_v2 = run_all(services.start_run(chat_project, own_answers, actor="test"))  # the current model: v2 now
    assert gate.answered_by(on_v2) == "v2"
    assert gate.pinned_baseline(chat_project, own_answers) == on_v2
    named = run_all(services.start_run(chat_project, own_answers, model_version_id=v2.pk, actor="test"))
    assert gate.pinned_baseline(chat_project, own_answers) == named  # the newer of the two ways of running v2
    configure_plugin(chat_project, "chatbot", "test", model_version=None)
    assert gate.pinned_baseline(chat_project, own_answers) == default_run


def test_a_failed_run_exits_2(chat_project, worker):
    missing = ModelVersion.objects.create(plugin_id="chatbot", version="gone", model_dir="chat/not-there")
    make_set(chat_project, ["a", "b", "c"])
    status, out, err = run_command("--project", chat_project.slug, "--set", "support", "--model-version", "gone",
                                   "--json")
    assert status == 2
    report = json.loads(out)
    assert report["outcome"] == "run_failed" and report["run"]["model_version"]["id"] == missing.pk
    assert "Every case failed" in report["message"] and "CommandError: Run" in err


def test_a_timeout_exits_2_and_leaves_the_run_or_cancels_it(chat_project, worker):
    worker.stopped = True
    make_set(chat_project, ["a", "b", "c"])
    status, out, err = run_command("--project", chat_project.slug, "--set", "support", "--timeout", "0.05")
    assert status == 2 and "Timed out after 0.05 s" in err and "it goes on" in err
    going = EvaluationRun.objects.get()
    assert going.status == RunStatus.QUEUED
    services.cancel_run(going, actor="test")

    status, out, err = run_command("--project", chat_project.slug, "--set", "support", "--timeout", "0.05",
                                   "--cancel-on-timeout", "--json")
    assert status == 2 and json.loads(out)["outcome"] == "timed_out"
    assert EvaluationRun.objects.exclude(pk=going.pk).get().status == RunStatus.CANCELLED


def test_the_same_key_waits_for_the_run_it_started(chat_project, worker):
    make_set(chat_project, ["a", "b", "c"])
    first = run_command("--project", chat_project.slug, "--set", "support", "--key", "build-41", "--json")
    second = run_command("--project", chat_project.slug, "--set", "support", "--key", "build-41", "--json")
    assert first[0] == second[0] == 0
    assert json.loads(first[1])["run"]["id"] == json.loads(second[1])["run"]["id"]
    assert EvaluationRun.objects.count() == 1 and "Resumed (same --key)" in second[2]


@pytest.mark.parametrize("args, said", [
    (["--project", "nope", "--set", "support"], "No project 'nope'"),
    (["--set", "nope"], "No reference set 'nope' in project"),
    (["--set", "support", "--model-version", "v9"], "No model version 'v9' of chatbot"),
    (["--set", "support", "--model-version", "9" * 20], "No model version '99999999999999999999' of chatbot"),
    (["--set", "support", "--max-drop", "chrf=1"], "--max-drop needs a baseline"),
    (["--set", "support", "--compare-to", "pinned", "--max-drop", "fid=1"], "chatbot runs have no metric 'fid'"),
    (["--set", "support", "--compare-to", "pinned", "--max-drop", "chrf=much"], "A number from 0"),
    (["--set", "support", "--compare-to", "pinned", "--max-drop", "chrf=-1"], "A number from 0"),
    (["--set", "support", "--compare-to", "yesterday"], "a run's id or 'pinned'"),
    (["--set", "support", "--compare-to", "00000000-0000-0000-0000-000000000000"], "no evaluation run"),
    (["--set", "support", "--timeout", "0"], "--timeout: a number of seconds above 0"),
    (["--set", "support", "--timeout", "-5"], "--timeout: a number of seconds above 0"),
    (["--set", "support", "--timeout", "nan"], "--timeout: a number of seconds above 0"),
    (["--set", "support", "--timeout", "inf", "--poll", "inf"], "--timeout: a number of seconds above 0, at most"),
    (["--set", "support", "--poll", "1e308"], "--poll: a number of seconds above 0, at most"),
    (["--set", "support", "--model-version", "\u00b2"], "No model version '\u00b2' of chatbot"),
    (["--set", "support", "--compare-to", "pinned", "--max-drop", "chrf=1", "--max-drop", "CHRF=5"],
     "chrf is limited twice"),
    (["--set", "support", "--compare-to", "pinned", "--max-drop", "chrf="], "A number from 0"),
    (["--set", "support", "--compare-to", "pinned", "--max-drop", "=1"], "chatbot runs have no metric ''"),
    (["--set", "support", "--compare-to", "pinned", "--max-drop", "chrf=1=2"], "A number from 0"),
    (["--set", "support", "--compare-to", "pinned", "--max-drop", "chrf=nan"], "A number from 0"),
    (["--set", "support", "--compare-to", "pinned", "--max-drop", "chrf=inf"], "A number from 0"),
    (["--set", "support", "--key", ""], "--key: 1 to"),
])
def test_bad_arguments_exit_2_saying_what_is_wrong_and_start_nothing(chat_project, worker, args, said):
    make_set(chat_project, ["a", "b", "c"])
    if args[0] != "--project":
        args = ["--project", chat_project.slug, *args]
    status, out, err = run_command(*args, "--json")
    assert status == 2 and said in err, err
    assert json.loads(out) == {"outcome": "refused", "exit_code": 2, "message": err.split("CommandError: ")[1].strip()}
    assert not EvaluationRun.objects.exists()


def test_a_baseline_of_another_set_or_still_going_is_refused(chat_project, worker):
    other = run_all(services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"], name="other"), actor="t"))
    going = services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"]), actor="t")
    for baseline, said in ((other, "answered another reference set"), (going, "has not ended (queued)")):
        status, _, err = run_command("--project", chat_project.slug, "--set", "support", "--compare-to", str(baseline.pk))
        assert status == 2 and said in err
    assert EvaluationRun.objects.count() == 2
    assert ReferenceSet.objects.count() == 2


def test_the_same_key_with_pinned_measures_against_the_baseline_of_the_first_start_never_the_run_itself(
        chat_project, worker):
    """A CI job retried after the run ended: the run is now the newest succeeded run on the pinned model itself (it ran
    the current model), so "pinned" found it and compared it with itself (a traceback, no exit status)."""
    reference_set = make_set(chat_project, ["a", "b", "c"])
    baseline = run_all(services.start_run(chat_project, reference_set, actor="test"))
    args = ("--project", chat_project.slug, "--set", "support", "--key", "build-42", "--compare-to", "pinned",
            "--max-drop", "chrf=100", "--json")
    first, second = run_command(*args), run_command(*args)
    assert first[0] == second[0] == 0, second[2]
    assert json.loads(first[1])["run"]["id"] == json.loads(second[1])["run"]["id"]
    assert json.loads(first[1])["compared_to"]["id"] == json.loads(second[1])["compared_to"]["id"] == str(baseline.pk)


def test_the_same_key_compared_to_its_own_run_by_id_is_refused(chat_project, worker):
    make_set(chat_project, ["a", "b", "c"])
    status, out, _ = run_command("--project", chat_project.slug, "--set", "support", "--key", "build-43", "--json")
    run_id = json.loads(out)["run"]["id"]
    status, out, err = run_command("--project", chat_project.slug, "--set", "support", "--key", "build-43",
                                   "--compare-to", run_id, "--json")
    assert status == 2 and "is the run this --key started" in err
    assert json.loads(out)["outcome"] == "refused"


def test_a_gate_over_a_set_changed_since_the_baseline_fails_saying_so(chat_project, worker):
    """The set was edited after the baseline ran (here: a case's reference): the figures measure different questions,
    so no limit can be shown to hold, however generous (it passed silently, a note among the lines)."""
    reference_set = make_set(chat_project, ["a", "b", "c"])
    baseline = run_all(services.start_run(chat_project, reference_set, actor="test"))
    cases = [dict(case) for case in reference_set.cases]
    cases[1]["reference"] = "Something else entirely."
    services.update_reference_set(reference_set, actor="test", cases=cases)
    status, out, err = run_command("--project", chat_project.slug, "--set", "support", "--compare-to", "pinned",
                                   "--max-drop", "chrf=100", "--json")
    assert status == 1, err
    report = json.loads(out)
    assert report["compared_to"]["id"] == str(baseline.pk) and report["set_changed"] is True
    chrf = next(gate for gate in report["gates"] if gate["metric"] == "chrf")
    assert chrf["passed"] is False and chrf["set_changed"] is True
    assert "the reference set was changed between the runs (cases #1)" in report["message"]

    # without limits the run is reported, the change said, and nothing gated
    status, out, err = run_command("--project", chat_project.slug, "--set", "support", "--compare-to", str(baseline.pk),
                                   "--json")
    assert status == 0 and json.loads(out)["set_changed"] is True


def test_a_gate_over_a_set_whose_question_was_edited_under_the_same_reference_fails_naming_the_case(chat_project,
                                                                                                   worker):
    """Only a case's input changed (its expected answer kept): each run fingerprints what each case asked, so the
    candidate's figures are seen to measure another question (it compared as unchanged, and passed)."""
    reference_set = make_set(chat_project, ["a", "b", "c"])
    baseline = run_all(services.start_run(chat_project, reference_set, actor="test"))
    assert all(len(case["input_sha256"]) == 64 for case in baseline.results)
    cases = [dict(case) for case in reference_set.cases]
    cases[2]["input"] = {**cases[2]["input"], "messages": [{"role": "user", "content": "A much easier question?"}]}
    services.update_reference_set(reference_set, actor="test", cases=cases)
    status, out, err = run_command("--project", chat_project.slug, "--set", "support", "--compare-to", "pinned",
                                   "--max-drop", "chrf=100", "--json")
    assert status == 1, err
    report = json.loads(out)
    assert report["compared_to"]["id"] == str(baseline.pk) and report["set_changed"] is True
    assert report["inputs_compared"] is True
    assert "the reference set was changed between the runs (cases #2)" in report["message"]
    run = EvaluationRun.objects.get(pk=report["run"]["id"])
    assert [a["input_sha256"] == b["input_sha256"] for a, b in zip(run.results, baseline.results)] == [True, True, False]
    assert all(a["reference"] == b["reference"] for a, b in zip(run.results, baseline.results))
    # the API shows each case's fingerprint with its result
    from atelier_platform.evaluation.serializers import RunSerializer

    assert RunSerializer(run).data["results"][2]["input_sha256"] == run.results[2]["input_sha256"]


def test_a_cancelled_run_is_no_baseline_and_one_cancelled_while_waited_for_is_not_gated(chat_project, worker,
                                                                                      monkeypatch):
    """A run cancelled part-way averages the few cases it answered: given as the baseline it was taken (a complete run
    measured against one answered case, passing or failing for nothing it did); it is refused, saying how many cases it
    answered, before a run is started. The run the command waits for, cancelled meanwhile, is reported (exit 2, its
    cases answered of how many), never gated, however generous the limits."""
    reference_set = make_set(chat_project, ["a", "b", "c"])
    baseline = run_all(services.start_run(chat_project, reference_set, actor="test"))
    cancelled = cancelled_part_way(services.start_run(chat_project, reference_set, actor="test"))
    assert cancelled.status == RunStatus.CANCELLED and cancelled.metrics["succeeded"] == 1
    generous = ("--max-drop", "chrf=100", "--max-drop", "failed=3")
    status, out, err = run_command("--project", chat_project.slug, "--set", "support", "--compare-to",
                                   str(cancelled.pk), *generous, "--json")
    assert status == 2 and json.loads(out)["outcome"] == "refused", err
    assert (f"--compare-to: run {cancelled.pk} cancelled with 1 of 3 cases answered: only a succeeded run is a "
            "baseline") in err
    assert EvaluationRun.objects.count() == 2  # nothing started

    def cancelled_after_one_case(seconds):
        waited = EvaluationRun.objects.exclude(pk__in=[baseline.pk, cancelled.pk]).get()
        if not waited.is_finished:
            cancelled_part_way(waited)

    monkeypatch.setattr(evaluate, "_sleep", cancelled_after_one_case)
    status, out, err = run_command("--project", chat_project.slug, "--set", "support", "--compare-to",
                                   str(baseline.pk), *generous, "--json")
    report = json.loads(out)
    assert status == 2 and report["outcome"] == "run_cancelled" and report["gates"] == []
    assert "the 1 of 3 cases answered before are scored, the others count as failed" in report["message"]
    assert "cancelled, 1/3 cases answered." in err  # the summary (on stderr with --json)
