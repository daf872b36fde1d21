"""A watch's runs over webhooks: ``evaluation_run.finished`` says a run was scheduled and the watch's verdict (the
failing metrics, the run it was measured against, the comparison's URL), and ``evaluation_watch.regressed`` is sent
once for a scheduled run that regressed or failed, never for one that passed; ``evaluation_watch.failed_to_start``
once when a due watch starts no run (the service refused it, or an error stopped it), not again until a run has
started. Real runs of the chatbot on tiny LMs, re-pinned between two scheduled runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from atelier_platform.catalog.configuration import configure_plugin
from atelier_platform.catalog.models import ModelVersion
from atelier_platform.evaluation import services, watch
from atelier_platform.evaluation.models import EvaluationRun
from atelier_platform.evaluation.signals import evaluation_run_finished
from atelier_platform.webhooks.models import WebhookDelivery
from tests.evaluation.conftest import chat_project, chatbot, tiny_models_root  # noqa: F401 - fixtures
from tests.evaluation.test_runs import QUESTIONS, make_set, run_all

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED, REGRESSED = "evaluation_run.finished", "evaluation_watch.regressed"
FAILED_TO_START = "evaluation_watch.failed_to_start"
HOUR = timedelta(hours=1)


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


def test_a_watch_that_cannot_start_is_announced_once_until_a_run_starts(chat_project, make_key, client_for,
                                                                      private_targets, receiver, deliver_all):
    """The plugin switched off for the project: the service refuses each slot's run, and only the watch's page and the
    API said so. A receiver subscribed to the event (through the API, as an owner does) hears it once, with the watch,
    the set and the refusal's code and message, and no case of the set; the next refusal in the same streak is not
    sent again; once a run has started, the next refusal is a new streak and is sent."""
    from atelier_platform.catalog.services import set_plugin_enabled

    owner = client_for(make_key(chat_project, ["webhooks:manage"]).raw)
    response = owner.post("/api/v1/webhooks/", {"url": receiver.url, "event_types": [FAILED_TO_START]}, format="json")
    assert response.status_code == 201, response.content
    secret = response.json()["secret"]
    response = owner.post("/api/v1/webhooks/", {"url": receiver.url + "&regressions", "event_types": [REGRESSED]},
                          format="json")
    assert response.status_code == 201, response.content
    references = ["First reference, never sent", "Second reference, never sent", "Third reference, never sent"]
    watched = make_set(chat_project, references)
    start = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    schedule = watch.create_schedule(chat_project, watched, interval_hours=1, max_drop={"chrf": 1.5},
                                     next_run_at=start, actor="test")

    set_plugin_enabled(chat_project, "chatbot", False)
    assert watch.start_due(start) == {"refused": 1}
    refused = watch.EvaluationSchedule.objects.get(pk=schedule.pk)
    [delivery] = deliveries(FAILED_TO_START)
    assert delivery.payload["type"] == FAILED_TO_START
    assert delivery.payload["data"] == {
        "project": chat_project.slug,
        "schedule": {"id": str(schedule.pk), "url": f"/api/v1/evaluation/schedules/{schedule.pk}/"},
        "reference_set": {"id": str(watched.pk), "name": "support"},
        "plugin": "chatbot", "model_version": None,
        "reason": {"code": "validation_error", "message": refused.last_skip_message},
        "failed_at": start.isoformat(), "next_run_at": (start + HOUR).isoformat(),
    }
    assert "'chatbot' is not enabled for project" in refused.last_skip_message

    assert watch.start_due(start + HOUR) == {"refused": 1}  # the same streak: said on the watch, not sent again
    assert len(deliveries(FAILED_TO_START)) == 1 and not deliveries(REGRESSED)

    set_plugin_enabled(chat_project, "chatbot", True)
    assert watch.start_due(start + 2 * HOUR) == {"started": 1}  # the streak ends
    run_all(EvaluationRun.objects.get(schedule=schedule))
    set_plugin_enabled(chat_project, "chatbot", False)
    assert watch.start_due(start + 3 * HOUR) == {"refused": 1}
    first, second = deliveries(FAILED_TO_START)
    assert second.payload["data"]["failed_at"] == (start + 3 * HOUR).isoformat() and second.event_id != first.event_id

    assert set(deliver_all()) == {"succeeded"}
    sent = [request for request in receiver.requests if request.json()["type"] == FAILED_TO_START]
    assert [request.json()["data"] for request in sent] == [first.payload["data"], second.payload["data"]]
    assert all(request.path == "/hooks/atelier?source=test" for request in sent)  # not the regressions endpoint
    for request in sent:
        Webhook(secret).verify(request.body, request.headers)
        for text in QUESTIONS + references:  # the set's cases stay behind the API
            assert text.encode() not in request.body


def test_a_watch_whose_start_keeps_erring_is_announced_once_not_at_every_tick(chat_project, own_answers, endpoint_for,
                                                                            receiver, monkeypatch):
    """An error (a bug, the database) leaves the watch due: it is tried at every tick, and was to be announced at
    every tick. Once, until a run starts; the streak is kept on the watch's row."""
    endpoint_for(chat_project, receiver.url, event_types=[FAILED_TO_START])
    start = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    schedule = watch.create_schedule(chat_project, own_answers, interval_hours=1, max_drop={"chrf": 1.5},
                                     next_run_at=start, actor="test")
    real = watch._start

    def failing(schedule, slot):
        raise RuntimeError("a bug, with words that must stay in the server's log")

    monkeypatch.setattr(watch, "_start", failing)
    for minute in range(3):
        assert watch.start_due(start + minute * timedelta(minutes=1)) == {"errors": 1}
    [delivery] = deliveries(FAILED_TO_START)
    data = delivery.payload["data"]
    assert data["schedule"]["id"] == str(schedule.pk) and data["failed_at"] == start.isoformat()
    assert data["reason"]["code"] == watch.SKIPPED_START_FAILED and "tried again" in data["reason"]["message"]
    assert "a bug" not in str(delivery.payload)
    assert watch.EvaluationSchedule.objects.get(pk=schedule.pk).failing_since == start

    monkeypatch.setattr(watch, "_start", real)
    assert watch.start_due(start + timedelta(minutes=3)) == {"started": 1}
    assert watch.EvaluationSchedule.objects.get(pk=schedule.pk).failing_since is None
    assert len(deliveries(FAILED_TO_START)) == 1


@pytest.mark.parametrize("change", [
    [{"interval_hours": 2}], [{"max_drop": {"chrf": 3}}], [{"enabled": False}, {"enabled": True}],
    [{"model_version": "v2"}],
])
def test_an_owner_changing_a_failing_watch_ends_its_streak_and_is_told_again_if_it_still_cannot_start(
        chat_project, own_answers, endpoint_for, receiver, change):
    """The owner read the failure and changed the watch (its interval, limits, version, or switched it off and on):
    the streak ends with the change, so that the changed watch failing too is sent again, not taken for the old
    streak. A change that changes nothing (the same values sent back) leaves the streak as it was."""
    from atelier_platform.catalog.services import set_plugin_enabled

    endpoint_for(chat_project, receiver.url, event_types=[FAILED_TO_START])
    start = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    schedule = watch.create_schedule(chat_project, own_answers, interval_hours=1, max_drop={"chrf": 1.5},
                                     next_run_at=start, actor="test")
    set_plugin_enabled(chat_project, "chatbot", False)
    assert watch.start_due(start) == {"refused": 1}
    same = watch.EvaluationSchedule.objects.get(pk=schedule.pk)
    watch.update_schedule(same, actor="test", interval_hours=1, max_drop={"chrf": 1.5}, enabled=True,
                          model_version=None)
    assert watch.EvaluationSchedule.objects.get(pk=schedule.pk).failing_since == start
    assert watch.start_due(start + HOUR) == {"refused": 1}
    assert len(deliveries(FAILED_TO_START)) == 1  # the same streak

    for fields in change:
        if fields.get("model_version"):
            fields = {"model_version": ModelVersion.objects.create(plugin_id="chatbot", version="v2",
                                                                   model_dir="chat/v2").pk}
        watch.update_schedule(watch.EvaluationSchedule.objects.get(pk=schedule.pk), actor="test", **fields)
    assert watch.EvaluationSchedule.objects.get(pk=schedule.pk).failing_since is None
    later = watch.EvaluationSchedule.objects.get(pk=schedule.pk).next_run_at
    assert watch.start_due(later) == {"refused": 1}  # the changed watch cannot start either: the owner is told
    first, second = deliveries(FAILED_TO_START)
    assert second.payload["data"]["failed_at"] == later.isoformat() and second.event_id != first.event_id
    assert watch.EvaluationSchedule.objects.get(pk=schedule.pk).failing_since == later
