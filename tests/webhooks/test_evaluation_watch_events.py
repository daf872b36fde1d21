"""A watch's runs over webhooks: ``evaluation_run.finished`` says a run was scheduled and the watch's verdict (the
failing metrics, the run it was measured against, the comparison's URL), and ``evaluation_watch.regressed`` is sent
once for a scheduled run that regressed or failed, never for one that passed. Real runs of the chatbot on tiny LMs,
re-pinned between two scheduled runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from atelier_platform.catalog.configuration import configure_plugin
from atelier_platform.catalog.models import ModelVersion
from atelier_platform.evaluation import services, watch
from atelier_platform.evaluation.models import EvaluationRun
from atelier_platform.evaluation.signals import evaluation_run_finished
from atelier_platform.webhooks.models import WebhookDelivery
from tests.evaluation.conftest import chat_project, chatbot, tiny_models_root  # noqa: F401 - fixtures
from tests.evaluation.test_runs import make_set, run_all

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED, REGRESSED = "evaluation_run.finished", "evaluation_watch.regressed"


def deliveries(event_type, **filters):
    return list(WebhookDelivery.objects.filter(event_type=event_type, **filters).order_by("created_at"))


@pytest.fixture
def own_answers(chat_project):
    probe = run_all(services.start_run(chat_project, make_set(chat_project, ["a", "b", "c"], name="probe"), actor="t"))
    return make_set(chat_project, [case["output"] for case in probe.results], name="own answers")


def test_a_scheduled_run_says_its_verdict_and_a_regression_is_its_own_event(chat_project, own_answers, endpoint_for,
                                                                            receiver, deliver_all):
    everything = endpoint_for(chat_project, receiver.url, event_types=[FINISHED, REGRESSED])
    alerts = endpoint_for(chat_project, receiver.url + "&alerts", event_types=[REGRESSED])
    start = timezone.now() + timedelta(days=1)
    schedule = watch.create_schedule(chat_project, own_answers, interval_hours=1, max_drop={"chrf": 1.5},
                                     next_run_at=start, actor="test")

    watch.start_due(start)
    first = run_all(EvaluationRun.objects.get(schedule=schedule))
    [delivery] = deliveries(FINISHED)
    data = delivery.payload["data"]
    assert data["scheduled"] is True and data["evaluation_run"]["id"] == str(first.pk)
    assert data["watch"]["outcome"] == "baseline" and data["watch"]["passed"] is None
    assert data["watch"]["schedule"] == {"id": str(schedule.pk), "url": f"/api/v1/evaluation/schedules/{schedule.pk}/"}
    assert data["watch"]["compared_to"] is None and data["watch"]["comparison_url"] is None
    assert not deliveries(REGRESSED)  # a baseline is no regression

    watch.start_due(start + timedelta(hours=1))
    second = run_all(EvaluationRun.objects.filter(schedule=schedule).latest("created_at"))
    passed = deliveries(FINISHED)[-1].payload["data"]
    assert passed["evaluation_run"]["id"] == str(second.pk)
    assert passed["watch"]["outcome"] == "passed" and passed["watch"]["passed"] is True
    assert passed["watch"]["failed_metrics"] == [] and passed["watch"]["compared_to"]["id"] == str(first.pk)
    assert not deliveries(REGRESSED)

    v2 = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    configure_plugin(chat_project, "chatbot", "test", model_version=v2.pk)  # production re-pinned, no deploy
    watch.start_due(start + timedelta(hours=2))
    third = run_all(EvaluationRun.objects.filter(schedule=schedule).latest("created_at"))
    finished = deliveries(FINISHED)[-1].payload["data"]
    verdict = finished["watch"]
    assert finished["evaluation_run"]["id"] == str(third.pk) and finished["evaluation_run"]["answered_by"] == ["v2"]
    assert verdict["outcome"] == "regressed" and verdict["passed"] is False and verdict["failed_metrics"] == ["chrf"]
    assert verdict["compared_to"] == {"id": str(second.pk), "url": f"/api/v1/evaluation/runs/{second.pk}/"}
    assert verdict["comparison_url"] == f"/api/v1/evaluation/runs/{third.pk}/compare/?to={second.pk}"
    assert verdict["max_drop"] == {"chrf": 1.5} and "chrf dropped by" in verdict["reason"]
    [chrf] = [gate for gate in verdict["gates"] if gate["metric"] == "chrf"]
    assert chrf["passed"] is False and chrf["to"] == 100.0 and chrf["run"] == third.metrics["chrf"]

    regressions = deliveries(REGRESSED)
    assert sorted(d.endpoint_id for d in regressions) == sorted([everything.pk, alerts.pk])
    alert = regressions[0].payload
    assert alert["type"] == REGRESSED and alert["data"]["project"] == chat_project.slug
    assert alert["data"]["evaluation_run"] == finished["evaluation_run"] and alert["data"]["watch"] == verdict
    for case in third.results:  # no answer in either event: generated content stays behind the API
        assert case["output"] not in str(alert) and case["output"] not in str(finished)

    # the end announced again (the sweeper, a late notice): still one of each
    evaluation_run_finished.send(sender=EvaluationRun, run_id=third.pk)
    services.sweep_runs()
    assert len(deliveries(REGRESSED)) == 2 and len(deliveries(FINISHED, endpoint=everything)) == 3
    assert set(deliver_all()) == {"succeeded"}


def test_a_scheduled_run_that_failed_is_a_regression_and_a_run_someone_started_is_not_scheduled(
        chat_project, own_answers, endpoint_for, receiver):
    endpoint_for(chat_project, receiver.url)  # every event
    someones = run_all(services.start_run(chat_project, own_answers, actor="test"))
    [delivery] = deliveries(FINISHED)
    assert delivery.payload["data"]["scheduled"] is False and delivery.payload["data"]["watch"] is None
    assert delivery.payload["data"]["evaluation_run"]["id"] == str(someones.pk)

    gone = ModelVersion.objects.create(plugin_id="chatbot", version="gone", model_dir="chat/not-there")
    start = timezone.now() + timedelta(days=1)
    schedule = watch.create_schedule(chat_project, own_answers, interval_hours=1, max_drop={"chrf": 1.5},
                                     model_version_id=gone.pk, next_run_at=start, actor="test")
    watch.start_due(start)
    failed = run_all(EvaluationRun.objects.get(schedule=schedule))
    [alert] = deliveries(REGRESSED)
    assert alert.payload["data"]["evaluation_run"]["id"] == str(failed.pk)
    assert alert.payload["data"]["evaluation_run"]["status"] == "failed"
    assert alert.payload["data"]["watch"]["outcome"] == "failed"
    assert alert.payload["data"]["watch"]["failed_metrics"] == ["failed"]
