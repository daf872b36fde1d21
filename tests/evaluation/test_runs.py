"""Evaluation runs end to end: real chatbot jobs on tiny LMs, run by the worker's job runner, scored with sacrebleu."""

from __future__ import annotations

import pytest

from atelier_platform.catalog.models import ModelVersion
from atelier_platform.catalog.registry import get_registry
from atelier_platform.conversations.models import Conversation
from atelier_platform.evaluation import services
from atelier_platform.evaluation.models import EvaluationRun, RunStatus
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.errors import InvalidJobInput, UnknownPlugin
from atelier_platform.jobs.models import Job, JobPurpose, JobStatus
from atelier_platform.moderation.models import ReviewItem
from atelier_workers.runtime import JobRunner, ModelCache
from tests.evaluation.conftest import chat_case

pytestmark = pytest.mark.django_db(transaction=True)

QUESTIONS = ["Where is my parcel?", "How long do returns take?", "Can I change my address?"]


def make_set(project, references, name="support", questions=QUESTIONS):
    cases = [chat_case(question, reference) for question, reference in zip(questions, references)]
    return services.create_reference_set(project, plugin_id="chatbot", name=name, cases=cases, actor="test")


def run_all(run: EvaluationRun) -> EvaluationRun:
    """What the workers do: every queued job of the run, through the job runner (batches and all)."""
    runner = JobRunner(get_registry(), ModelCache("cpu"))
    for job in Job.objects.filter(evaluation_case__run=run).order_by("evaluation_case__index"):
        runner.run(str(job.pk))
    return EvaluationRun.objects.get(pk=run.pk)


def cancelled_part_way(run: EvaluationRun, answered: int = 1) -> EvaluationRun:
    """The run cancelled once its first ``answered`` cases were answered, one job at a time (a run stopped part-way)."""
    runner = JobRunner(get_registry(), ModelCache("cpu"))
    runner.max_batch_cap = 1
    for job in Job.objects.filter(evaluation_case__run=run).order_by("evaluation_case__index")[:answered]:
        runner.run(str(job.pk))
    return services.cancel_run(EvaluationRun.objects.get(pk=run.pk), actor="test")


def test_a_run_answers_every_case_through_the_queue_and_scores_the_answers(chat_project, sent_messages):
    first = services.start_run(chat_project, make_set(chat_project, ["x", "y", "z"]), actor="test")
    jobs = list(Job.objects.filter(evaluation_case__run=first).order_by("evaluation_case__index"))
    assert len(jobs) == 3 and all(j.purpose == JobPurpose.EVALUATION and j.status == JobStatus.QUEUED for j in jobs)
    assert {m["args"][0] for m in sent_messages} == {str(j.pk) for j in jobs}  # published, as any job
    assert first.status == RunStatus.QUEUED and first.cases_total == 3 and first.cases_done == 0
    first = run_all(first)
    assert first.status == RunStatus.SUCCEEDED and first.cases_done == 3 and first.cases_failed == 0
    outputs = [case["output"] for case in first.results]
    assert all(outputs) and [case["job_id"] for case in first.results] == [str(j.pk) for j in jobs]
    assert not ReviewItem.objects.exists()  # nothing for reviewers
    assert not Conversation.objects.exists()  # each case is self-contained: no thread started for it

    # The same questions again (the same seed: the same answers), against references that are the first
    # answer word for word, and text unrelated to any answer.
    unrelated = "Quartz vexing jumbo flight 0987 @@@"
    second = run_all(services.start_run(
        chat_project, make_set(chat_project, [outputs[0], unrelated, outputs[2]], name="exact"), actor="test"))
    scores = [case["chrf"] for case in second.results]
    assert [case["output"] for case in second.results] == outputs
    assert scores[0] == 100.0 and scores[2] == 100.0 and scores[1] < 20
    metrics = second.metrics
    assert metrics["cases"] == 3 and metrics["succeeded"] == 3 and metrics["failed"] == 0
    assert 0 < metrics["chrf"] < 100 and 0 <= metrics["bleu"] < 100
    assert metrics["model_versions"] == ["default"]
    assert second.started_at and second.finished_at


def test_a_run_with_a_model_version_uses_it_and_the_projects_own_jobs_keep_the_pin(chat_project):
    version = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    run = run_all(services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"]), model_version_id=version.pk,
                                     actor="test"))
    assert run.status == RunStatus.SUCCEEDED and run.model_version == version
    assert run.metrics["model_versions"] == ["v2"]
    provenance = {o.provenance["model_version"] for o in Job.objects.get(pk=run.results[0]["job_id"]).outputs.all()}
    assert provenance == {"v2"}
    current = run_all(services.start_run(chat_project, run.reference_set, actor="test"))
    assert current.metrics["model_versions"] == ["default"]
    assert [c["output"] for c in current.results] != [c["output"] for c in run.results]  # other weights


def test_a_failed_case_is_counted_and_the_run_still_scores_the_others(chat_project):
    run = services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"]), actor="test")
    doomed = Job.objects.get(evaluation_case__run=run, evaluation_case__index=1)
    lifecycle.cancel_job(doomed)
    run = EvaluationRun.objects.get(pk=run.pk)
    assert run.cases_done == 1 and run.cases_failed == 1 and run.status == RunStatus.RUNNING
    run = run_all(run)
    assert run.status == RunStatus.SUCCEEDED
    assert run.metrics["failed"] == 1 and run.metrics["succeeded"] == 2
    failed = run.results[1]
    assert failed["status"] == "failed" and failed["chrf"] is None and failed["error"]["code"] == "cancelled"
    assert run.results[0]["chrf"] is not None


def test_a_run_whose_every_case_fails_fails_with_each_cases_reason(chat_project):
    missing = ModelVersion.objects.create(plugin_id="chatbot", version="gone", model_dir="chat/not-there")
    run = run_all(services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"]), model_version_id=missing.pk,
                                     actor="test"))
    assert run.status == RunStatus.FAILED and run.metrics["bleu"] is None and run.metrics["failed"] == 3
    assert {case["error"]["code"] for case in run.results} == {"model_not_found"}


def test_the_sweeper_finishes_a_run_whose_finish_notice_was_missed(chat_project, monkeypatch):
    run = services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"]), actor="test")
    monkeypatch.setattr(services, "record_finished_jobs", lambda ids: None)  # the receivers' call lost
    run = run_all(run)
    assert run.status == RunStatus.QUEUED
    assert services.sweep_runs() == 1
    assert EvaluationRun.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED


def test_a_case_whose_job_an_operator_deleted_counts_as_failed_and_the_run_finishes(chat_project):
    """The admin deletes jobs (a stuck backlog cleared) and each one's case row with it: the run waited for that case
    for ever, held one of the project's 3 runs going, and kept its reference set from being deleted."""
    run = services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"]), actor="test")
    deleted = Job.objects.get(evaluation_case__run=run, evaluation_case__index=1)
    Job.objects.filter(pk=deleted.pk).delete()  # as JobAdmin.delete_queryset does
    run = run_all(run)
    assert run.status == RunStatus.SUCCEEDED and run.finished_at is not None
    assert (run.cases_done, run.cases_failed, run.metrics["failed"], run.metrics["succeeded"]) == (3, 1, 1, 2)
    assert [(case["index"], case["status"]) for case in run.results] == [(0, "succeeded"), (1, "failed"), (2, "succeeded")]
    assert run.results[1]["error"]["code"] == "job_deleted" and run.results[1]["job_id"] == str(deleted.pk)
    assert run.results[1]["reference"] == "b"

    every = services.start_run(chat_project, run.reference_set, actor="test")
    Job.objects.filter(evaluation_case__run=every).delete()
    assert services.sweep_runs() == 1  # no job left to send a finish: the sweeper
    every = EvaluationRun.objects.get(pk=every.pk)
    assert every.status == RunStatus.FAILED and [case["error"]["code"] for case in every.results] == ["job_deleted"] * 3


class TestRefused:
    def test_an_unknown_plugin(self, chat_project):
        with pytest.raises(UnknownPlugin):
            services.create_reference_set(chat_project, plugin_id="nope", name="n", cases=[chat_case("q", "r")],
                                          actor="test")

    def test_a_plugin_whose_answers_cannot_be_scored(self, chat_project):
        with pytest.raises(services.PluginNotEvaluable) as refused:  # reverse_text: installed, neither kind
            services.create_reference_set(chat_project, plugin_id="reverse_text", name="n",
                                          cases=[{"input": {"text": "a cat"}, "reference": "r"}], actor="test")
        assert "cannot be evaluated yet" in refused.value.message and "image" in refused.value.message

    def test_a_case_that_does_not_match_the_plugins_schema_names_its_index_and_field(self, chat_project):
        cases = [chat_case("fine", "r"), {"input": {"messages": []}, "reference": "r"},
                 {"input": {"messages": [{"role": "user", "content": "q"}]}, "reference": ""}]
        with pytest.raises(InvalidJobInput) as refused:
            services.create_reference_set(chat_project, plugin_id="chatbot", name="n", cases=cases, actor="test")
        assert set(refused.value.details) == {"cases.1.input.messages", "cases.2.reference"}
        assert "cases.0" not in refused.value.message and "index 1, 2" in refused.value.message

    def test_a_model_version_of_another_plugin(self, chat_project):
        other = ModelVersion.objects.create(plugin_id="image", version="v1", model_dir="image/v1")
        reference_set = make_set(chat_project, ["a"], questions=["q"])
        with pytest.raises(services.UnknownModelVersion):
            services.start_run(chat_project, reference_set, model_version_id=other.pk, actor="test")
        assert not EvaluationRun.objects.exists() and not Job.objects.exists()


def test_a_run_scores_against_the_references_it_started_with(chat_project):
    reference_set = make_set(chat_project, ["first", "second", "third"])
    run = services.start_run(chat_project, reference_set, actor="test")
    services.update_reference_set(reference_set, actor="test", cases=[chat_case("other", "changed meanwhile")])
    run = run_all(run)
    assert [case["reference"] for case in run.results] == ["first", "second", "third"]
