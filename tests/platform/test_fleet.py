"""Worker health (``GET /api/v1/workers/``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.config import get_config
from atelier_platform.fleet.models import WorkerProcess
from atelier_platform.fleet.services import forget_old_workers
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_workers.reporting import WorkerReporter
from atelier_workers.runtime import JobRunner, ModelCache
from tests.support.plugins import BatchProbe

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worked_runner(project, empty_plugin_registry):
    """A runner that has run one batch of three jobs (one failing) and has its model loaded."""
    empty_plugin_registry.register(BatchProbe)
    set_plugin_enabled(project, "batch_probe", True)
    jobs = [submit_job(project, JobRequest("batch_probe", {"text": "x", **extra}, {})).job
            for extra in ({}, {}, {"fail": "item"})]
    runner = JobRunner(get_registry(), ModelCache("cpu", budget_bytes=10 * 2**30))
    runner.run(str(jobs[0].pk))
    return runner


@pytest.fixture
def owner_api(project, make_key, client_for):
    return client_for(make_key(project, scopes=["admin"]).raw)


@pytest.fixture
def operator_api(project, member):
    """An operator (Django staff) who owns ``project``: the API's client, the project named in each request."""
    user = member(project, "owner")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client(HTTP_X_ATELIER_PROJECT=project.slug)
    client.force_login(user)
    return client


def test_a_reporting_worker_is_listed_with_its_models_and_figures(worked_runner, operator_api):
    WorkerReporter(worked_runner).report()
    response = operator_api.get("/api/v1/workers/")
    assert response.status_code == 200
    [worker] = response.json()
    assert worker["name"] == worked_runner.name and worker["state"] == "ready" and worker["device"] == "cpu"
    assert [m["plugin"] for m in worker["loaded_models"]] == ["batch_probe"]
    assert worker["jobs_succeeded"] == 2 and worker["jobs_failed"] == 1 and worker["batches"] == 1
    assert worker["memory"]["rss_bytes"] > 0 and worker["memory"]["budget_bytes"] == 10 * 2**30
    assert worker["seconds_since_heartbeat"] < get_config().worker_lost_after_s


def test_a_project_owner_sees_whether_workers_are_up_and_its_own_models_never_the_hosts_nor_other_tenants(
        worked_runner, project, other_project, owner_api, operator_api, member):
    """Workers serve every project: a project owner (a person, or a key with ``admin``) read every worker's host,
    process id, memory, fleet-wide job counters and every model it had loaded, other tenants' pinned models
    among them. Now an owner sees whether the workers are up, how loaded, and which of their own project's models
    are warm, under a label that names no host; the rest is the operators' (Django staff)."""
    from atelier_platform.catalog.models import ModelVersion, ProjectPlugin

    WorkerReporter(worked_runner).report()
    root = get_config().resolved_models_root
    secret = ModelVersion.objects.create(plugin_id="batch_probe", version="acme-ft", model_dir="acme/secret-finetune")
    set_plugin_enabled(other_project, "batch_probe", True)
    ProjectPlugin.objects.filter(project=other_project, plugin_id="batch_probe").update(model_version=secret)
    [own_model] = WorkerProcess.objects.get().loaded_models
    WorkerProcess.objects.update(loaded_models=[own_model, {**own_model, "model_dir": str(root / "acme/secret-finetune")}],
                                 detail="batch_probe: acme/secret-finetune failed to load")
    person = Client(HTTP_X_ATELIER_PROJECT=project.slug)
    person.force_login(member(project, "owner"))
    for owner in (owner_api, person):
        response = owner.get("/api/v1/workers/")
        assert response.status_code == 200
        [worker] = response.json()
        text = response.content.decode()
        assert worker["state"] == "ready" and worker["device"] == "cpu" and worker["current_jobs"] == 0
        assert worker["name"].startswith("worker-") and worked_runner.name not in text
        assert worker["hostname"] is None and worker["pid"] is None and worker["detail"] is None
        assert worker["memory"] == {} and worker["jobs_succeeded"] is None and worker["batches"] is None
        assert worker["tokens_per_second"] is None
        assert [m["plugin"] for m in worker["loaded_models"]] == ["batch_probe"]  # the project's own, the default
        assert "acme" not in text
    # the label stays the same from one request to the next
    assert owner_api.get("/api/v1/workers/").json()[0]["name"] == person.get("/api/v1/workers/").json()[0]["name"]
    # the other project's owner sees its pinned model warm, and not the default one it does not use
    other = Client(HTTP_X_ATELIER_PROJECT=other_project.slug)
    other.force_login(member(other_project, "owner"))
    assert [m["model_dir"] for m in other.get("/api/v1/workers/").json()[0]["loaded_models"]] == ["acme/secret-finetune"]
    # the operator sees it all
    [worker] = operator_api.get("/api/v1/workers/").json()
    assert worker["name"] == worked_runner.name and worker["pid"] > 0 and worker["memory"]["rss_bytes"] > 0
    assert len(worker["loaded_models"]) == 2 and "acme/secret-finetune" in worker["detail"]


def test_a_silent_worker_is_shown_lost_and_a_stopped_one_stopped(worked_runner, owner_api):
    reporter = WorkerReporter(worked_runner)
    reporter.report()
    WorkerProcess.objects.update(heartbeat_at=timezone.now() - timedelta(seconds=get_config().worker_lost_after_s + 1))
    assert owner_api.get("/api/v1/workers/").json()[0]["state"] == "lost"
    reporter.report("stopped")
    WorkerProcess.objects.update(heartbeat_at=timezone.now() - timedelta(hours=2))
    assert owner_api.get("/api/v1/workers/").json()[0]["state"] == "stopped"


def test_a_worker_and_the_metrics_say_which_safety_checks_do_not_run(worked_runner, operator_api, monkeypatch):
    from atelier_platform.moderation import checks

    monkeypatch.setattr(checks, "_unavailable", {"nudity": ("ModuleNotFoundError: No module named 'nudenet'", None)})
    WorkerReporter(worked_runner).report()
    [worker] = operator_api.get("/api/v1/workers/").json()
    assert worker["state"] == "ready"
    assert worker["detail"] == "safety check nudity is not running: ModuleNotFoundError: No module named 'nudenet'"
    body = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    # the worker's, and this web process's own (the same module state here)
    assert f'atelier_safety_check_not_running{{check="nudity",process="{worked_runner.name}"}} 1.0' in body
    assert 'atelier_safety_check_not_running{check="nudity",process="web ' in body


def test_workers_gone_for_a_day_are_forgotten(worked_runner):
    WorkerReporter(worked_runner).report()
    assert forget_old_workers() == 0
    WorkerProcess.objects.update(heartbeat_at=timezone.now() - timedelta(days=2))
    assert forget_old_workers() == 1 and not WorkerProcess.objects.exists()


def test_only_owners_see_workers(project, make_key, client_for, member):
    assert client_for(make_key(project).raw).get("/api/v1/workers/").status_code == 403
    client = Client()
    client.force_login(member(project, "editor"))
    response = client.get("/api/v1/workers/", HTTP_X_ATELIER_PROJECT=project.slug)
    assert response.status_code in (400, 403)
    assert client_for(None).get("/api/v1/workers/").status_code == 401


def test_metrics_show_queue_depth_and_worker_figures(worked_runner, project):
    WorkerReporter(worked_runner).report()
    for _ in range(2):
        submit_job(project, JobRequest("batch_probe", {"text": "waiting"}, {}))
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    name = worked_runner.name
    assert 'atelier_queue_depth{queue="gpu"} 2.0' in body
    assert f'atelier_batch_size_count{{worker="{name}"}} 1.0' in body
    assert f'atelier_batch_size_sum{{worker="{name}"}} 3.0' in body
    assert f'atelier_job_run_seconds_count{{worker="{name}"}} 3.0' in body
    assert f'atelier_jobs_finished_total{{outcome="succeeded",worker="{name}"}} 2.0' in body
    assert f'atelier_model_load_seconds{{model="",plugin="batch_probe",worker="{name}"}}' in body
    assert f'atelier_device_memory_bytes{{device="cpu",kind="rss",worker="{name}"}}' in body
    assert "atelier_job_queue_wait_seconds_bucket" in body and "atelier_tokens_per_second" in body


def test_metrics_are_closed_to_the_internet_without_a_token(db, monkeypatch):
    assert Client(REMOTE_ADDR="10.0.0.7").get("/metrics").status_code == 403
    config = get_config().model_copy(update={"metrics_token": "s3cret"})
    monkeypatch.setattr("atelier_platform.fleet.metrics.get_config", lambda: config)
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="8.8.8.8").get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


@pytest.mark.parametrize("forwarded", [{"HTTP_X_FORWARDED_FOR": "203.0.113.7"}, {"HTTP_FORWARDED": "for=203.0.113.7"}])
def test_a_request_a_proxy_on_this_host_passed_on_is_not_a_local_one(db, forwarded):
    """Behind nginx or Caddy on the same host every request arrives from loopback: the metrics were open to
    the internet."""
    assert Client(REMOTE_ADDR="127.0.0.1", **forwarded).get("/metrics").status_code == 403


def test_web_and_worker_processes_load_the_safety_checks_as_they_start(monkeypatch):
    """Not in their first request or job: those would all wait for the checks' models (about 1 s)."""
    import importlib
    import sys

    from atelier_sdk import safety_registry

    from atelier_platform.moderation.checks import get_safety_checks, replace_safety_checks
    from atelier_workers import tasks
    from tests.support.safety import WordCheck

    discoveries = []
    monkeypatch.setattr(safety_registry, "discover_safety_checks", lambda extra_paths=(): discoveries.append(1) or [
        safety_registry.SafetyCheckRecord(name="words", source="test", check=WordCheck)])

    replace_safety_checks(None)
    monkeypatch.delitem(sys.modules, "atelier_platform.wsgi", raising=False)
    importlib.import_module("atelier_platform.wsgi")  # what each gunicorn worker does as it starts
    assert len(discoveries) == 1
    get_safety_checks()
    assert len(discoveries) == 1  # the first screening finds them loaded

    replace_safety_checks(None)
    runner = JobRunner(get_registry(), ModelCache("cpu"))
    monkeypatch.setattr(tasks, "get_runner", lambda: runner)
    tasks._start_worker_process()  # celery's worker_process_init
    assert len(discoveries) == 2 and runner.state == "ready"


@pytest.mark.parametrize("settings,named", [
    ({"worker_report_s": 60}, "ATELIER_WORKER_LOST_AFTER_S (30 s) must be at least twice ATELIER_WORKER_REPORT_S (60 s)"),
    ({"job_heartbeat_s": 90}, "ATELIER_JOB_STALE_AFTER_S (60 s) must be at least twice ATELIER_JOB_HEARTBEAT_S (90 s)"),
])
def test_intervals_that_would_make_live_workers_look_dead_stop_the_start(atelier_config, settings, named):
    """Accepted before: a ready worker was shown lost between two reports, and the sweeper queued again the
    jobs of a live one between two heartbeats."""
    from atelier_platform.config import ConfigurationError

    atelier_config(**settings)
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        get_config()
    atelier_config(**{name: value / 4 for name, value in settings.items()})
    assert get_config()
