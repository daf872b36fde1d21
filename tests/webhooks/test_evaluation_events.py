"""``evaluation_run.finished``: real evaluation runs (the chatbot on a tiny LM, the image plugin on a tiny pipeline,
answered by the worker's job runner) end, and their end becomes one delivery per subscribed endpoint, sent by the
real delivery task to a real receiver."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook

from atelier_platform.evaluation import services
from atelier_platform.evaluation.models import EvaluationRun, RunStatus
from atelier_platform.evaluation.signals import evaluation_run_finished
from atelier_platform.jobs.models import Job
from atelier_platform.webhooks.models import WebhookDelivery
from tests.evaluation.conftest import (  # noqa: F401 - fixtures
    chat_case,
    chat_project,
    chatbot,
    image_case,
    image_models_root,
    image_project,
    png_bytes,
    tiny_models_root,
)
from tests.evaluation.test_runs import run_all

pytestmark = pytest.mark.django_db(transaction=True)

EVENT = "evaluation_run.finished"


def chat_set(project, references=("It is on its way.", "Fourteen days.")):
    questions = ["Where is my parcel?", "How long do returns take?"]
    return services.create_reference_set(project, plugin_id="chatbot", name="support", actor="test",
                                         cases=[chat_case(q, r) for q, r in zip(questions, references)])


def deliveries(**filters):
    return list(WebhookDelivery.objects.filter(event_type=EVENT, **filters).order_by("created_at"))


def test_a_finished_run_is_delivered_once_with_its_metrics_and_no_answer(chat_project, endpoint_for, receiver,
                                                                        deliver_all):
    hooked = endpoint_for(chat_project, receiver.url, event_types=[EVENT])
    endpoint_for(chat_project, receiver.url + "&jobs-only", event_types=["job.succeeded"])  # not subscribed
    run = services.start_run(chat_project, chat_set(chat_project), actor="test")
    assert not deliveries()  # nothing while it goes
    run = run_all(run)
    assert run.status == RunStatus.SUCCEEDED

    [delivery] = deliveries()
    assert delivery.endpoint == hooked
    data = delivery.payload["data"]
    assert delivery.payload["type"] == EVENT and data["project"] == chat_project.slug
    shown = data["evaluation_run"]
    assert shown == {
        "id": str(run.pk), "status": "succeeded", "plugin": "chatbot",
        "reference_set": {"id": str(run.reference_set_id), "name": "support"},
        "model_version": None, "answered_by": ["default"],
        "progress": {"done": 2, "failed": 0, "total": 2},
        "metrics": run.metrics, "error": "",
        "created_at": run.created_at.isoformat(), "finished_at": run.finished_at.isoformat(),
        "url": f"/api/v1/evaluation/runs/{run.pk}/",
    }
    assert shown["metrics"]["chrf"] is not None and "bleu" in shown["metrics"]

    assert deliver_all() == ["succeeded"]
    [request] = receiver.requests
    Webhook(hooked.secret).verify(request.body, request.headers)
    for case in run.results:  # the answers stay behind the API
        assert case["output"].encode() not in request.body

    # The sweeper and a finish notice arriving late, and the signal sent once more: still one delivery.
    assert services.finish_if_done(run.pk).status == RunStatus.SUCCEEDED
    services.sweep_runs()
    evaluation_run_finished.send(sender=EvaluationRun, run_id=run.pk)
    assert len(deliveries()) == 1


def test_each_way_a_run_ends_is_announced_exactly_once(chat_project, monkeypatch):
    """Counted at the signal (not at the deliveries, whose key would hide a second send)."""
    sent = []
    monkeypatch.setattr(evaluation_run_finished, "send", lambda sender, run_id: sent.append(run_id))
    reference_set = chat_set(chat_project)

    finished = run_all(services.start_run(chat_project, reference_set, actor="test"))
    services.finish_if_done(finished.pk)
    services.sweep_runs()
    assert sent == [finished.pk]

    sent.clear()
    going = services.start_run(chat_project, reference_set, actor="test")
    services.finish_if_done(going.pk)  # nothing finished yet: no end
    assert sent == []
    services.cancel_run(going, actor="test")
    services.finish_if_done(going.pk)
    with pytest.raises(services.RunFinished):
        services.cancel_run(going, actor="test")
    assert sent == [going.pk]


def test_a_cancelled_run_is_delivered_with_its_status(chat_project, endpoint_for, receiver):
    endpoint_for(chat_project, receiver.url)  # every event
    run = services.start_run(chat_project, chat_set(chat_project), actor="test")
    services.cancel_run(run, actor="test")
    [delivery] = deliveries()
    shown = delivery.payload["data"]["evaluation_run"]
    assert shown["status"] == "cancelled" and shown["error"].startswith("Cancelled")
    assert shown["progress"]["total"] == 2 and shown["metrics"]["succeeded"] == 0


def test_another_projects_endpoint_hears_nothing(chat_project, other_project, endpoint_for, receiver):
    endpoint_for(other_project, receiver.url, event_types=[EVENT])
    run_all(services.start_run(chat_project, chat_set(chat_project), actor="test"))
    assert not deliveries()


def test_an_image_run_ends_when_its_images_are_scored_cancelled_or_not(image_project, endpoint_for, receiver,
                                                                      sent_messages):
    from tests.evaluation.test_images import score

    endpoint_for(image_project, receiver.url, event_types=[EVENT])
    cases = [image_case(prompt, png_bytes(i)) for i, prompt in enumerate(["a red cat", "a blue dog"])]
    reference_set = services.create_reference_set(image_project, plugin_id="image", name="pictures", cases=cases,
                                                  actor="test")
    run = run_all(services.start_run(image_project, reference_set, actor="test"))
    assert run.status == RunStatus.RUNNING and run.metrics["scoring"] == "pending"
    assert not deliveries()  # every job finished, but not scored yet
    run = score(run)
    [delivery] = deliveries()
    shown = delivery.payload["data"]["evaluation_run"]
    assert shown["status"] == "succeeded" and shown["metrics"]["scoring"] == "done"
    assert shown["metrics"]["mean_similarity"] == run.metrics["mean_similarity"] is not None
    score(run)  # a second delivery of the scoring task finds it scored
    assert len(deliveries()) == 1

    # Cancelled while a worker scores it: cancelled at once, announced once scored.
    second = run_all(services.start_run(image_project, reference_set, actor="test"))
    second = services.cancel_run(second, actor="test")
    assert second.status == RunStatus.CANCELLED and len(deliveries()) == 1
    score(second)
    [_, cancelled] = deliveries()
    assert cancelled.payload["data"]["evaluation_run"]["id"] == str(second.pk)
    assert cancelled.payload["data"]["evaluation_run"]["status"] == "cancelled"
    assert cancelled.payload["data"]["evaluation_run"]["metrics"]["scoring"] == "done"


def test_an_image_run_whose_scoring_is_given_up_is_announced_failed(image_project, endpoint_for, receiver):
    from atelier_platform.evaluation import image_scoring

    endpoint_for(image_project, receiver.url, event_types=[EVENT])
    cases = [image_case("a red cat", png_bytes(0))]
    reference_set = services.create_reference_set(image_project, plugin_id="image", name="one", cases=cases,
                                                  actor="test")
    run = run_all(services.start_run(image_project, reference_set, actor="test"))
    assert image_scoring.give_up(run.pk, "the extractor crashed")
    assert not image_scoring.give_up(run.pk, "again")
    [delivery] = deliveries()
    shown = delivery.payload["data"]["evaluation_run"]
    assert shown["status"] == "failed" and "the extractor crashed" in shown["error"]
    assert Job.objects.filter(evaluation_case__run=run).count() == 1
