"""/api/v1/evaluation/schedules/: watches over the API. Owners' keys (admin and jobs:write, as a run's start) create,
change and delete them; every member reads them; a bad field is a 400 naming it; another project's set or watch is a
404; runs show the watch that started them and its verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from atelier_platform.catalog.models import ModelVersion
from atelier_platform.evaluation import services, watch
from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule
from atelier_platform.moderation.models import AuditEvent
from tests.evaluation.conftest import chat_case
from tests.evaluation.test_api import QUESTIONS, error_of
from tests.evaluation.test_runs import run_all

SCHEDULES = "/api/v1/evaluation/schedules/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api(project, make_key, client_for):
    return client_for(make_key(project, scopes=["admin", "jobs:read", "jobs:write"]).raw)


@pytest.fixture
def reference_set(chat_project):
    return services.create_reference_set(chat_project, plugin_id="chatbot", name="support", actor="test",
                                         cases=[chat_case(q, r) for q, r in QUESTIONS])


def create(client, reference_set, **fields):
    body = {"reference_set": str(reference_set.pk), "interval_hours": 24, "max_drop": {"chrf": 1.5}, **fields}
    return client.post(SCHEDULES, body, format="json")


def test_an_owner_key_watches_a_set_and_every_member_reads_the_watch(reference_set, admin_api, api):
    before = timezone.now()
    response = create(admin_api, reference_set, max_drop={"chrf": 1.5, "bleu": 2})
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == f"{SCHEDULES}{body['id']}/"
    assert body["reference_set"] == str(reference_set.pk) and body["reference_set_name"] == "support"
    assert body["plugin"] == "chatbot" and body["model_version"] is None and body["interval_hours"] == 24
    assert body["max_drop"] == {"chrf": 1.5, "bleu": 2.0} and body["enabled"] is True
    assert body["last_run"] is None and body["last_skip"] is None and body["failing_since"] is None
    schedule = EvaluationSchedule.objects.get(pk=body["id"])
    assert before <= schedule.next_run_at <= timezone.now()  # the first run at the next tick: the baseline
    assert AuditEvent.objects.filter(action="evaluation_schedule_created", object_id=body["id"]).exists()

    assert [s["id"] for s in api.get(SCHEDULES).json()["results"]] == [body["id"]]  # a jobs:read key reads it
    assert api.get(f"{SCHEDULES}{body['id']}/").json() == body
    assert create(api, reference_set).status_code == 403  # a jobs:write key is no administrator


def test_an_admin_key_without_jobs_write_cannot_make_a_watch_that_submits_jobs(reference_set, make_key, client_for):
    admin_only = client_for(make_key(reference_set.project, scopes=["admin"]).raw)
    assert create(admin_only, reference_set).status_code == 403
    assert not EvaluationSchedule.objects.exists()


def test_one_watch_per_set(reference_set, admin_api):
    assert create(admin_api, reference_set).status_code == 201
    again = create(admin_api, reference_set, interval_hours=1)
    assert again.status_code == 409 and error_of(again)["code"] == "evaluation_schedule_exists"
    assert EvaluationSchedule.objects.count() == 1


@pytest.mark.parametrize("fields, field", [
    ({"max_drop": {"chrff": 1}}, "max_drop.chrff"),
    ({"max_drop": {"chrf": -1}}, "max_drop.chrf"),
    ({"max_drop": {"chrf": "a lot"}}, "max_drop.chrf"),
    ({"max_drop": {"chrf": True}}, "max_drop.chrf"),
    ({"max_drop": {"chrf": 10**400}}, "max_drop.chrf"),  # a whole number past a float's range: was a 500
    ({"max_drop": {"fid": 1}}, "max_drop.fid"),  # an image metric, on a text set
    ({"max_drop": {}}, "max_drop"),
    ({"max_drop": ["chrf=1.5"]}, "max_drop"),
    ({"interval_hours": 0}, "interval_hours"),
    ({"interval_hours": 24 * 30 + 1}, "interval_hours"),
    ({"interval_hours": 1.5}, "interval_hours"),
    ({"model_version": 999999}, "model_version"),
    ({"next_run_at": "tomorrow"}, "next_run_at"),
    ({"every": 3}, "every"),
])
def test_a_bad_field_is_a_400_naming_it_and_nothing_is_saved(reference_set, admin_api, fields, field):
    response = create(admin_api, reference_set, **fields)
    assert response.status_code == 400, response.content
    assert field in error_of(response)["details"], error_of(response)
    assert not EvaluationSchedule.objects.exists() and not AuditEvent.objects.filter(
        action="evaluation_schedule_created").exists()


def test_a_first_run_more_than_30_days_ahead_is_refused(reference_set, admin_api):
    response = create(admin_api, reference_set, next_run_at=(timezone.now() + timedelta(days=31)).isoformat())
    assert response.status_code == 400 and list(error_of(response)["details"]) == ["next_run_at"]
    later = timezone.now() + timedelta(days=2)
    response = create(admin_api, reference_set, next_run_at=later.isoformat())
    assert response.status_code == 201 and EvaluationSchedule.objects.get().next_run_at == later


@pytest.mark.parametrize("shape", ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"])
def test_a_time_without_its_offset_is_refused_not_read_as_utc(reference_set, admin_api, shape):
    """A time without an offset names no one moment: one sent as local time was taken for UTC, and the run started
    hours early or late without a word."""
    when = (timezone.now() + timedelta(days=2)).strftime(shape)
    response = create(admin_api, reference_set, next_run_at=when)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "validation_error" and list(error["details"]) == ["next_run_at"]
    assert "offset" in error["details"]["next_run_at"][0], error
    assert not EvaluationSchedule.objects.exists()

    created = create(admin_api, reference_set).json()
    before = EvaluationSchedule.objects.get().next_run_at
    changed = admin_api.patch(f"{SCHEDULES}{created['id']}/", {"next_run_at": when}, format="json")
    assert changed.status_code == 400 and "offset" in error_of(changed)["details"]["next_run_at"][0]
    assert EvaluationSchedule.objects.get().next_run_at == before


def test_a_time_with_its_offset_is_that_moment(reference_set, admin_api):
    later = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    in_shanghai = later.astimezone(timezone.get_fixed_timezone(8 * 60)).isoformat()
    assert in_shanghai.endswith("+08:00")
    response = create(admin_api, reference_set, next_run_at=in_shanghai)
    assert response.status_code == 201, response.content
    assert EvaluationSchedule.objects.get().next_run_at == later


@pytest.mark.parametrize("when", ["9999-12-31T23:00:00-05:00", "2030-02-30T03:00:00Z", "2030-01-01T03:00:00\x00Z"])
def test_a_time_that_is_no_moment_is_a_400_not_a_500(reference_set, admin_api, when):
    response = create(admin_api, reference_set, next_run_at=when)
    assert response.status_code == 400 and list(error_of(response)["details"]) == ["next_run_at"]


def test_a_time_in_the_past_is_refused_but_a_clock_a_little_behind_is_not(reference_set, admin_api):
    """A past time was taken and the run started at once: most often a mistake (a wrong offset, a wrong day) that
    nothing said. Leaving next_run_at out starts the first run at the next tick; a caller's clock a few minutes
    behind the server's still says "now"."""
    an_hour_ago = timezone.now() - timedelta(hours=1)
    response = create(admin_api, reference_set, next_run_at=an_hour_ago.isoformat())
    assert response.status_code == 400 and list(error_of(response)["details"]) == ["next_run_at"]
    assert "past" in error_of(response)["details"]["next_run_at"][0]
    assert not EvaluationSchedule.objects.exists()

    just_now = timezone.now() - timedelta(minutes=1)
    response = create(admin_api, reference_set, next_run_at=just_now.isoformat())
    assert response.status_code == 201, response.content
    assert EvaluationSchedule.objects.get().next_run_at == just_now  # due: it starts at the next tick

    url = f"{SCHEDULES}{response.json()['id']}/"
    refused = admin_api.patch(url, {"next_run_at": (timezone.now() - timedelta(days=1)).isoformat()}, format="json")
    assert refused.status_code == 400 and list(error_of(refused)["details"]) == ["next_run_at"]
    assert EvaluationSchedule.objects.get().next_run_at == just_now


def test_the_watchs_own_next_run_at_sent_back_is_no_change_however_long_past(reference_set, admin_api):
    """A watch switched off, or one whose start keeps failing, keeps a next_run_at in the past: a client that changes
    another field and sends back next_run_at as it read it asks for no change, and was refused as "in the past"."""
    created = create(admin_api, reference_set, enabled=False).json()
    url = f"{SCHEDULES}{created['id']}/"
    long_past = timezone.now() - timedelta(days=3)
    EvaluationSchedule.objects.filter(pk=created["id"]).update(next_run_at=long_past)
    read = admin_api.get(url).json()
    changed = admin_api.patch(url, {"enabled": True, "interval_hours": 12, "next_run_at": read["next_run_at"]},
                              format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["enabled"] is True and changed.json()["next_run_at"] == read["next_run_at"]
    schedule = EvaluationSchedule.objects.get()
    assert schedule.next_run_at == long_past and schedule.enabled is True and schedule.interval_hours == 12
    # the same moment in another offset is the same value; any other past time is still refused
    in_shanghai = long_past.astimezone(timezone.get_fixed_timezone(480)).isoformat()
    assert admin_api.patch(url, {"next_run_at": in_shanghai}, format="json").status_code == 200
    other = (long_past + timedelta(seconds=1)).isoformat()
    refused = admin_api.patch(url, {"next_run_at": other}, format="json")
    assert refused.status_code == 400 and list(error_of(refused)["details"]) == ["next_run_at"]
    assert EvaluationSchedule.objects.get().next_run_at == long_past

def test_another_projects_set_and_watch_are_not_found(reference_set, admin_api, other_project, make_key, client_for):
    from atelier_platform.catalog.services import set_plugin_enabled

    set_plugin_enabled(other_project, "chatbot", True)
    theirs = services.create_reference_set(other_project, plugin_id="chatbot", name="theirs", actor="test",
                                           cases=[chat_case(q, r) for q, r in QUESTIONS])
    response = create(admin_api, theirs)
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"

    their_watch = watch.create_schedule(other_project, theirs, interval_hours=1, max_drop={"chrf": 1}, actor="test")
    url = f"{SCHEDULES}{their_watch.pk}/"
    assert admin_api.get(url).status_code == 404
    assert admin_api.patch(url, {"enabled": False}, format="json").status_code == 404
    assert admin_api.delete(url).status_code == 404
    assert admin_api.get(SCHEDULES).json()["results"] == []
    their_watch.refresh_from_db()
    assert their_watch.enabled is True

    # another project's private version is no version for this one's watch
    private = ModelVersion.objects.create(plugin_id="chatbot", version="theirs-ft", model_dir="chat/t",
                                          project=other_project)
    refused = create(admin_api, reference_set, model_version=private.pk)
    assert refused.status_code == 400 and list(error_of(refused)["details"]) == ["model_version"]


def test_an_owner_changes_disables_and_deletes_a_watch(reference_set, admin_api):
    created = create(admin_api, reference_set).json()
    url = f"{SCHEDULES}{created['id']}/"
    version = ModelVersion.objects.create(plugin_id="chatbot", version="v2", model_dir="chat/v2")
    later = (timezone.now() + timedelta(hours=5)).replace(microsecond=0)
    changed = admin_api.patch(url, {"interval_hours": 6, "max_drop": {"bleu": 3}, "model_version": version.pk,
                                    "enabled": False, "next_run_at": later.isoformat()}, format="json")
    assert changed.status_code == 200, changed.content
    body = changed.json()
    assert body["interval_hours"] == 6 and body["max_drop"] == {"bleu": 3.0} and body["enabled"] is False
    assert body["model_version"] == {"id": version.pk, "version": "v2"}
    assert EvaluationSchedule.objects.get().next_run_at == later
    event = AuditEvent.objects.get(action="evaluation_schedule_changed")
    assert event.before["interval_hours"] == 24 and event.after["interval_hours"] == 6

    back = admin_api.patch(url, {"model_version": None}, format="json")
    assert back.status_code == 200 and back.json()["model_version"] is None

    bad = admin_api.patch(url, {"max_drop": {"chrf": -2}}, format="json")
    assert bad.status_code == 400 and list(error_of(bad)["details"]) == ["max_drop.chrf"]
    huge = admin_api.patch(url, {"max_drop": {"chrf": 10**400}}, format="json")
    assert huge.status_code == 400 and list(error_of(huge)["details"]) == ["max_drop.chrf"]
    assert EvaluationSchedule.objects.get().max_drop == {"bleu": 3.0}
    assert admin_api.patch(url, {"reference_set": str(reference_set.pk)}, format="json").status_code == 400

    assert admin_api.delete(url).status_code == 204
    assert not EvaluationSchedule.objects.exists() and admin_api.get(url).status_code == 404


def test_a_watch_shows_since_when_it_fails_to_start_and_a_change_ends_the_streak(reference_set, admin_api, api):
    """failing_since: the first failed start of the streak (the one announced), null once a run starts or the owner
    changes the watch; it is read only (sent on a PATCH, it is no field of a watch)."""
    from atelier_platform.catalog.services import set_plugin_enabled

    created = create(admin_api, reference_set).json()
    url = f"{SCHEDULES}{created['id']}/"
    set_plugin_enabled(reference_set.project, "chatbot", False)
    due = timezone.now()
    assert watch.start_due(due) == {"refused": 1}
    shown = api.get(url).json()
    assert shown["failing_since"] == due.isoformat().replace("+00:00", "Z")
    assert shown["last_skip"]["code"] == "validation_error"

    refused = admin_api.patch(url, {"failing_since": None}, format="json")
    assert refused.status_code == 400 and list(error_of(refused)["details"]) == ["failing_since"]
    unchanged = admin_api.patch(url, {"interval_hours": 24, "enabled": True}, format="json")
    assert unchanged.status_code == 200 and unchanged.json()["failing_since"] == shown["failing_since"]
    changed = admin_api.patch(url, {"interval_hours": 12}, format="json")
    assert changed.status_code == 200 and changed.json()["failing_since"] is None
    assert changed.json()["last_skip"] == shown["last_skip"]  # what happened last stays said


@pytest.mark.django_db(transaction=True)
def test_runs_show_the_watch_that_started_them_and_its_verdict(reference_set, admin_api, api):
    created = create(admin_api, reference_set).json()
    watch.start_due()
    run = run_all(EvaluationRun.objects.get(schedule_id=created["id"]))
    shown = api.get(f"/api/v1/evaluation/runs/{run.pk}/").json()
    assert shown["schedule"] == created["id"]
    assert shown["watch"]["outcome"] == "baseline" and shown["watch"]["schedule"] == created["id"]
    listed = api.get(f"/api/v1/evaluation/runs/?reference_set={reference_set.pk}").json()["results"]
    assert listed[0]["watch"]["outcome"] == "baseline"
    last = api.get(f"{SCHEDULES}{created['id']}/").json()["last_run"]
    assert last["id"] == str(run.pk) and last["outcome"] == "baseline" and last["status"] == "succeeded"

    someones = run_all(services.start_run(reference_set.project, reference_set, actor="test"))
    shown = api.get(f"/api/v1/evaluation/runs/{someones.pk}/").json()
    assert shown["schedule"] is None and shown["watch"] is None
