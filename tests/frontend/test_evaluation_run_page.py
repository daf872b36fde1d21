"""An evaluation run's page: progress while it runs, then each case (question, answer, reference, chrF) worst
first, failed cases with their error, and another run of the same set beside it; members read it, another
project's run is not found."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from atelier_platform.catalog.models import ModelVersion
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.jobs.models import Job, JobPurpose

pytestmark = pytest.mark.django_db

QUESTIONS = ["Where is my parcel?", "Can I pay later?", "Do you ship abroad?"]


@pytest.fixture
def chatbot(project, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)


def make_run(project, reference_set, *, outputs, version=None, status=RunStatus.SUCCEEDED):
    """A run whose case i answered ``outputs[i]`` ((text, chrf) or None for a failed case)."""
    results = []
    for index, (question, answer) in enumerate(zip(QUESTIONS, outputs)):
        job = Job.objects.create(project=project, plugin_id="chatbot", status="succeeded", seed=0,
                                 purpose=JobPurpose.EVALUATION,
                                 input={"messages": [{"role": "user", "content": question}]})
        result = {"index": index, "job_id": str(job.pk), "reference": f"Reference {index}", "status": "succeeded",
                  "output": None, "chrf": None, "error": None}
        if status != RunStatus.SUCCEEDED:
            result["status"] = "pending"
        elif answer is None:
            result.update(status="failed", error={"code": "output_blocked", "message": "Screening blocked the output."})
        else:
            result.update(output=answer[0], chrf=answer[1])
        results.append(result)
    done = len(results) if status == RunStatus.SUCCEEDED else 1
    return EvaluationRun.objects.create(
        project=project, reference_set=reference_set, plugin_id="chatbot", model_version=version, status=status,
        cases_total=len(results), cases_done=done, results=results,
        finished_at=timezone.now() if status == RunStatus.SUCCEEDED else None,
        metrics={"chrf": 40.0, "bleu": 10.0, "succeeded": 2, "cases": 3, "mean_case_chrf": 41.0,
                 "model_versions": ["v1"]} if status == RunStatus.SUCCEEDED else {})


@pytest.fixture
def reference_set(project, chatbot):
    return ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="support", cases=[
        {"input": {"messages": [{"role": "user", "content": q}]}, "params": {}, "reference": f"Reference {i}"}
        for i, q in enumerate(QUESTIONS)])


def case_order(page: str) -> list[str]:
    return re.findall(r'<tr data-case="(\d+)"', page)


@pytest.mark.parametrize("role", ["owner", "editor", "reviewer", "viewer"])
def test_members_read_each_case_worst_first_with_failures_and_their_error(project, reference_set, signed_in, role):
    run = make_run(project, reference_set, outputs=[("It is on its way.", 70.0), None, ("Yes, we do.", 12.5)])
    response = signed_in(project, role).get(f"/evaluation/runs/{run.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert case_order(page) == ["1", "2", "0"]  # the failed case, then the lowest chrF
    assert "Where is my parcel?" in page and "It is on its way." in page and "Reference 0" in page and "70.0" in page
    failed = re.search(r'<tr data-case="1" data-case-status="failed">(.*?)</tr>', page, re.S).group(1)
    assert "output_blocked" in failed and "Screening blocked the output." in failed and "Can I pay later?" in failed
    ordered = signed_in(project, "viewer").get(f"/evaluation/runs/{run.pk}/?order=set").content.decode()
    assert case_order(ordered) == ["0", "1", "2"]


def test_a_run_going_shows_its_progress_and_a_part_that_refreshes(project, reference_set, signed_in):
    run = make_run(project, reference_set, outputs=[None] * 3, status=RunStatus.RUNNING)
    client = signed_in(project, "viewer")
    page = client.get(f"/evaluation/runs/{run.pk}/").content.decode()
    assert f'data-refresh="/evaluation/runs/{run.pk}/?part=live"' in page and "1 of 3 cases" in page
    assert "waiting for its answer" in page
    live = client.get(f"/evaluation/runs/{run.pk}/?part=live").content.decode()
    assert "1 of 3 cases" in live and "data-reload" not in live
    EvaluationRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, cases_done=3)
    assert "data-reload" in client.get(f"/evaluation/runs/{run.pk}/?part=live").content.decode()


def test_two_runs_of_a_set_side_by_side(project, reference_set, signed_in):
    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    a = make_run(project, reference_set, outputs=[("On its way.", 80.0), ("Yes.", 30.0), ("No.", 20.0)])
    b = make_run(project, reference_set, version=v2, outputs=[("Shipped.", 10.0), ("Yes, in 30 days.", 90.0), None])
    client = signed_in(project, "editor")
    page = client.get(f"/evaluation/runs/{a.pk}/").content.decode()
    assert f'<option value="{b.pk}"' in page and "v2 · chat/v2" in page
    page = client.get(f"/evaluation/runs/{a.pk}/?compare={b.pk}&order=difference").content.decode()
    assert "B · v2 · chat/v2" in page
    assert case_order(page) == ["0", "1", "2"]  # |−70| and |+60| first, then the one B failed
    first = re.search(r'<tr data-case="0".*?</tr>', page, re.S).group(0)
    assert "On its way." in first and "Shipped." in first and "-70.0" in first


def test_a_case_asked_with_another_input_is_said_beside_the_other_run(project, reference_set, signed_in):
    a = make_run(project, reference_set, outputs=[("On its way.", 80.0), ("Yes.", 30.0), ("No.", 20.0)])
    b = make_run(project, reference_set, outputs=[("Shipped.", 10.0), ("Yes.", 30.0), ("No.", 20.0)])
    client = signed_in(project, "viewer")
    assert "inputs-changed" not in client.get(f"/evaluation/runs/{a.pk}/?compare={b.pk}").content.decode()
    for run, fingerprint in ((a, "1" * 64), (b, "2" * 64)):
        run.results[0]["input_sha256"] = fingerprint
        run.save(update_fields=["results"])
    page = client.get(f"/evaluation/runs/{a.pk}/?compare={b.pk}").content.decode()
    assert "some cases were asked with another input or params" in page
    assert "scored against other references" not in page  # the references are the same


def test_another_projects_run_is_not_found(project, other_project, reference_set, signed_in):
    theirs_set = ReferenceSet.objects.create(project=other_project, plugin_id="chatbot", name="theirs", cases=[])
    theirs = make_run(other_project, theirs_set, outputs=[("Secret answer", 50.0)] * 3)
    client = signed_in(project, "owner")
    for url in (f"/evaluation/runs/{theirs.pk}/", f"/evaluation/runs/{theirs.pk}/?part=live"):
        response = client.get(url)
        assert response.status_code == 404 and "Secret answer" not in response.content.decode()
    ours = make_run(project, reference_set, outputs=[("Fine", 50.0)] * 3)
    # nor is it compared with one of ours
    response = client.get(f"/evaluation/runs/{ours.pk}/?compare={theirs.pk}")
    assert response.status_code == 404 and "Secret answer" not in response.content.decode()
    assert client.get(f"/evaluation/runs/{ours.pk}/?compare=not-a-uuid").status_code == 404


def test_the_settings_card_links_each_run(project, reference_set, signed_in):
    run = make_run(project, reference_set, outputs=[("On its way.", 80.0)] * 3)
    page = signed_in(project, "owner").get("/settings/").content.decode()
    assert f'href="/evaluation/runs/{run.pk}/"' in page


def test_signed_out_visitors_are_sent_to_sign_in(client, project, reference_set):
    run = make_run(project, reference_set, outputs=[("On its way.", 80.0)] * 3)
    response = client.get(f"/evaluation/runs/{run.pk}/")
    assert response.status_code == 302 and "/login/" in response["Location"]
