"""The workers page: owners see every worker's state, warm models and memory, and the queues' load."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from atelier_platform.config import get_config
from atelier_platform.fleet.models import WorkerProcess
from atelier_platform.jobs.models import JobStatus

GIB = 2**30


def text_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def a_worker(name: str, *, state: str = "ready", silent_s: float = 1, **fields) -> WorkerProcess:
    now = timezone.now()
    return WorkerProcess.objects.create(**{
        "name": name, "hostname": name.split(":")[0], "pid": 4242, "device": "cpu", "state": state,
        "started_at": now - timedelta(hours=1), "heartbeat_at": now - timedelta(seconds=silent_s), **fields})


def operator(client):
    """The signed-in member made an operator (Django staff)."""
    client.user.is_staff = True
    client.user.save(update_fields=["is_staff"])
    return client


@pytest.mark.django_db
class TestWorkersPage:
    def test_only_owners_see_it(self, project, signed_in):
        for role in ("editor", "reviewer", "viewer"):
            client = signed_in(project, role)
            assert client.get("/workers/").status_code == 403
            assert 'data-nav="workers"' not in text_of(client.get("/jobs/"))
        assert 'data-nav="workers"' in text_of(signed_in(project, "owner").get("/jobs/"))

    def test_each_worker_with_its_state_models_and_memory_and_a_silent_one_as_lost(self, project, signed_in):
        """As an operator (Django staff) sees it."""
        root = str(get_config().resolved_models_root)
        a_worker("gpu-host-1:4242", state="busy", device="cuda:0", current_jobs=3,
                 loaded_models=[{"plugin": "chatbot", "plugin_version": "1.2.0", "model_dir": f"{root}/demo/chat-lm",
                                 "bytes": 3 * GIB, "load_seconds": 12.34}],
                 memory={"device_allocated_bytes": 20 * GIB, "device_total_bytes": 80 * GIB, "rss_bytes": 2 * GIB},
                 stats={"counters": {"jobs_succeeded": 41, "jobs_failed": 2}, "gauges": {"tokens_per_second": 812.5}})
        a_worker("cpu-host-2:99", state="ready", silent_s=get_config().worker_lost_after_s + 60,
                 memory={"rss_bytes": GIB, "device_total_bytes": 24 * GIB})
        a_worker("cpu-host-3:7", state="unhealthy", detail="chatbot: the model failed to load (no config.json)")
        page = text_of(operator(signed_in(project, "owner")).get("/workers/"))
        assert '<tr data-worker="gpu-host-1:4242" data-state="busy">' in page
        assert '<tr data-worker="cpu-host-2:99" data-state="lost">' in page  # its reports stopped
        assert "chatbot: the model failed to load (no config.json)" in page
        assert "3 now · 41 done · 2 failed" in page and "812.5 tokens/s in the last batch" in page
        assert "demo/chat-lm" in page and root not in page  # never the host's paths
        assert "3.0\xa0GB" in page and "loaded in 12.3 s" in page
        assert "device 20.0\xa0GB / 80.0\xa0GB" in page  # a GPU's memory, and a CPU worker's process of the machine:
        assert "process 1.0\xa0GB / 24.0\xa0GB" in page

    def test_an_owner_sees_no_host_memory_counters_nor_other_tenants_models(self, project, other_project, signed_in):
        """A project's owner saw every worker's host and process id, memory, fleet-wide counters and warm models,
        another tenant's pinned model among them; now whether each is up, its jobs now, and this project's models."""
        from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
        from atelier_platform.catalog.services import set_plugin_enabled

        root = str(get_config().resolved_models_root)
        secret = ModelVersion.objects.create(plugin_id="reverse_text", version="acme", model_dir="acme/secret-finetune")
        ProjectPlugin.objects.filter(project=other_project, plugin_id="reverse_text").update(model_version=secret)
        set_plugin_enabled(project, "reverse_text", True)
        a_worker("gpu-host-1:4242", state="busy", device="cuda:0", current_jobs=3,
                 detail="reverse_text: acme/secret-finetune failed to load",
                 loaded_models=[{"plugin": "reverse_text", "plugin_version": "1.0", "model_dir": f"{root}/acme/secret-finetune",
                                 "bytes": 3 * GIB, "load_seconds": 12.34},
                                {"plugin": "reverse_text", "plugin_version": "1.0", "model_dir": None,
                                 "bytes": GIB, "load_seconds": 1.0}],
                 memory={"device_allocated_bytes": 20 * GIB, "device_total_bytes": 80 * GIB, "rss_bytes": 2 * GIB},
                 stats={"counters": {"jobs_succeeded": 41, "jobs_failed": 2}, "gauges": {"tokens_per_second": 812.5}})
        owner = signed_in(project, "owner")
        for path in ("/workers/", "/workers/?part=live"):
            page = text_of(owner.get(path))
            assert 'data-state="busy"' in page and "cuda:0" in page and "3 now" in page
            assert "gpu-host-1" not in page and "4242" not in page and "acme" not in page
            assert "41 done" not in page and "812.5" not in page and "80.0\xa0GB" not in page
            assert "1.0\xa0GB" in page  # this project's model (the plugin's default), warm
        assert "shown to operators only" in text_of(owner.get("/workers/"))

    def test_queues_of_the_whole_fleet_and_of_this_project(self, project, other_project, signed_in, submit):
        mine = [submit(project), submit(project), submit(project)]
        submit(other_project)
        mine[0].status = JobStatus.RUNNING
        mine[0].save(update_fields=["status"])
        page = text_of(signed_in(project, "owner").get("/workers/?part=live"))
        assert "<html" not in page  # the part the page's script swaps in
        cpu = page[page.index('data-queue="cpu"'):]
        assert '<span class="queued">3</span>' in cpu[:400] and '<span class="running">1</span>' in cpu[:400]
        own = page[page.index('data-queue="project"'):]
        assert f"{project.name or project.slug}, both queues" in own[:400]
        assert '<span class="queued">2</span>' in own[:400] and '<span class="running">1</span>' in own[:400]
        assert "No worker has reported yet" in page

    def test_in_chinese(self, project, signed_in):
        a_worker("host:1", silent_s=10**5)
        owner = signed_in(project, "owner")
        owner.post("/language/", {"language": "zh-hans", "next": "/workers/"})
        page = text_of(owner.get("/workers/"))
        assert ">工作进程</a>" in page and ">失联</span>" in page


@pytest.mark.django_db
def test_a_jobs_page_names_its_worker_to_operators_and_by_its_label_to_owners(project, signed_in, submit):
    """The job page's timeline named the worker that ran it (host:pid) to every owner."""
    from atelier_platform.fleet.services import worker_label

    job = submit(project)
    job.worker, job.started_at = "gpu-host-1:4242", timezone.now()
    job.save(update_fields=["worker", "started_at"])
    owner_page = text_of(signed_in(project, "owner").get(f"/jobs/{job.pk}/"))
    assert "gpu-host-1" not in owner_page and worker_label("gpu-host-1:4242") in owner_page
    assert "gpu-host-1" not in text_of(signed_in(project, "viewer").get(f"/jobs/{job.pk}/"))
    assert "gpu-host-1:4242" in text_of(operator(signed_in(project, "owner")).get(f"/jobs/{job.pk}/"))
