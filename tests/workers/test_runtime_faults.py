"""The worker runtime as an operator sees it when things go wrong: a model that fails to load, a
plugin that breaks its contract for one job of a batch, a CPU out of memory, a CUDA worker's budget."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import pytest
from atelier_sdk import Manifest, Modality, Plugin, ResourceClass
from django.utils import timezone
from pydantic import BaseModel

from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.fleet.models import WorkerState
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_workers.model_cache import GPU_BUDGET_SHARE, ModelCache
from atelier_workers.runtime import JobRunner
from tests.support.plugins import BatchProbe, ReverseText


class FlakyLoad(ReverseText):
    """Its model fails to load ``failures`` times (a truncated download, a full disk), then loads."""

    manifest = ReverseText.manifest.model_copy(update={"id": "flaky_load"})
    failures = 0

    def load(self, device, model_dir):
        if FlakyLoad.failures:
            FlakyLoad.failures -= 1
            raise OSError("weights.safetensors: truncated file")
        super().load(device, model_dir)


class CpuOutOfMemory(ReverseText):
    """Runs out of host memory the way numpy says it: a MemoryError without the words "out of memory"."""

    manifest = ReverseText.manifest.model_copy(update={"id": "cpu_oom"})

    def generate(self, batch, context):
        raise MemoryError("Unable to allocate 64.0 GiB for an array with shape (4096, 4096, 512) and data type float64")


class DroppingProbe(BatchProbe):
    """Leaves out the result of a job whose text is "drop" (a plugin skipping an input it cannot do)."""

    manifest = BatchProbe.manifest.model_copy(update={"id": "dropping_probe"})

    def generate(self, batch, context):
        results = super().generate(batch, context)
        return [result for request, result in zip(batch, results) if request.input.text != "drop"]


@pytest.fixture
def plugins_project(project, empty_plugin_registry):
    for plugin in (FlakyLoad, CpuOutOfMemory, DroppingProbe):
        empty_plugin_registry.register(plugin)
        set_plugin_enabled(project, plugin.manifest.id, True)
    return project


@pytest.fixture
def runner(plugins_project):
    return JobRunner(get_registry(), ModelCache("cpu"))


def submit(project, plugin_id: str, text: str = "hello") -> Job:
    return submit_job(project, JobRequest(plugin_id, {"text": text}, {})).job


def reload(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120, method="signal")
def test_a_worker_whose_model_failed_to_load_says_why_then_recovers_without_the_old_reason(plugins_project, runner):
    FlakyLoad.failures = 1
    job = submit(plugins_project, "flaky_load")
    assert runner.run(str(job.pk)) == JobStatus.QUEUED  # retried, with backoff
    assert reload(job).error_code == "model_load_failed"
    assert runner.state == WorkerState.UNHEALTHY and "truncated file" in runner.detail
    # the reason is the operator's (the worker's state, its log); the job's error, read by the project's keys, names
    # the kind of failure and no worker
    assert "truncated file" not in reload(job).error_message and runner.name not in reload(job).error_message

    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(seconds=1))  # its backoff is over
    assert runner.run(str(job.pk)) == "succeeded"
    # a ready worker reporting the reason of a failure that is over sends the operator after a fixed fault
    assert (runner.state, runner.detail) == (WorkerState.READY, "")


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120, method="signal")
def test_a_job_that_runs_the_host_out_of_memory_alone_fails_as_out_of_memory(plugins_project, runner):
    job = submit(plugins_project, "cpu_oom")
    assert runner.run(str(job.pk)) == "failed"
    job = reload(job)
    assert job.error_code == "out_of_memory" and "ask for less" in job.error_message
    assert runner.state == WorkerState.UNHEALTHY and "Unable to allocate" in runner.detail


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120, method="signal")
def test_a_result_missing_from_a_batch_fails_only_the_job_it_belongs_to(plugins_project, runner):
    jobs = [submit(plugins_project, "dropping_probe", text) for text in ("one", "drop", "three", "four")]
    assert runner.run(str(jobs[0].pk)) == "succeeded"
    outcomes = {reload(job).input["text"]: (reload(job).status, reload(job).error_code) for job in jobs}
    assert outcomes == {
        "one": (JobStatus.SUCCEEDED, ""), "three": (JobStatus.SUCCEEDED, ""), "four": (JobStatus.SUCCEEDED, ""),
        "drop": (JobStatus.FAILED, "plugin_contract"),
    }
    assert reload(jobs[2]).outputs.get().content["text"] == "THREE"


@pytest.fixture
def torch_not_imported_yet(tmp_path, monkeypatch):
    """A process that has not imported torch yet, where ``import torch`` finds a CUDA host with an 80 GiB GPU."""
    (tmp_path / "torch.py").write_text(
        "from types import SimpleNamespace\n"
        "cuda = SimpleNamespace(is_available=lambda: True,\n"
        "                       get_device_properties=lambda index: SimpleNamespace(total_memory=80 * 2**30))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    real = sys.modules.pop("torch", None)
    yield
    sys.modules.pop("torch", None)
    if real is not None:
        sys.modules["torch"] = real


def test_a_cuda_workers_default_budget_is_its_gpus_memory_before_any_plugin_imported_torch(torch_not_imported_yet):
    # ATELIER_DEVICE=cuda:1 is taken as it is: nothing has imported torch when the worker sizes its cache
    assert ModelCache("cuda:1").budget_bytes == int(80 * 2**30 * GPU_BUDGET_SHARE)


def test_a_worker_process_reports_starting_not_ready_while_it_loads(monkeypatch):
    from atelier_workers import tasks

    first_reported: list[str] = []

    class RecordingReporter:
        def __init__(self, runner):
            self.runner = runner

        def start(self):
            # the real reporter writes its first report as soon as its thread starts
            first_reported.append(self.runner.state)
            return self

    monkeypatch.setattr(tasks, "_runner", None)
    monkeypatch.setattr(tasks, "_reporter", None)
    monkeypatch.setattr(tasks, "WorkerReporter", RecordingReporter)
    monkeypatch.setattr(tasks, "resolve_device", lambda requested: "cpu")
    tasks._start_worker_process()
    assert first_reported == [WorkerState.STARTING]
    assert tasks.get_runner().state == WorkerState.READY


def resident_plugin(plugin_id: str, resident: set[str], *, nbytes: int = 40, needs_alone: bool = False) -> type[Plugin]:
    """A plugin whose model is in ``resident`` while loaded; ``needs_alone``: its load runs out of memory
    while any other model is loaded (its real size is more than its estimate left room for)."""

    class Resident(Plugin):
        manifest = Manifest(id=plugin_id, version="1.0.0", name=plugin_id, modality=Modality.TEXT,
                            resource_class=ResourceClass.GPU)
        Input = Output = _Text

        def load(self, device, model_dir):
            if needs_alone and resident:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            resident.add(plugin_id)

        def memory_bytes(self):
            return nbytes

        def generate(self, batch, context):
            return []

        def unload(self):
            resident.discard(plugin_id)

    return Resident


class _Text(BaseModel):
    text: str = ""


def test_a_model_that_runs_out_of_memory_loading_beside_others_is_loaded_alone():
    resident: set[str] = set()
    cache = ModelCache("cpu", budget_bytes=100)
    cache.get(resident_plugin("small", resident), None)
    # estimated by its files (none here) it fits beside "small"; as loaded, it does not
    loaded = cache.get(resident_plugin("large", resident, needs_alone=True), None)
    assert loaded.plugin_id == "large" and resident == {"large"}
    assert [m["plugin"] for m in cache.describe()] == ["large"]


def test_a_model_that_cannot_load_leaves_the_cache_as_it_was():
    resident: set[str] = set()
    cache = ModelCache("cpu", budget_bytes=100)
    cache.get(resident_plugin("small", resident), None)

    class Broken(resident_plugin("broken", resident)):
        def load(self, device, model_dir):
            raise OSError("weights.safetensors: truncated file")

    with pytest.raises(OSError, match="truncated"):
        cache.get(Broken, None)
    assert resident == {"small"} and [m["plugin"] for m in cache.describe()] == ["small"]

    class Huge(resident_plugin("huge", resident)):
        def load(self, device, model_dir):
            raise RuntimeError("CUDA out of memory. Tried to allocate 200.00 GiB")

    # one that runs out of memory even alone fails as itself, after one try alone
    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get(Huge, None)
    assert resident == set() and cache.describe() == []


def test_a_model_that_fails_to_preload_leaves_the_others_preloaded(monkeypatch, empty_plugin_registry, atelier_config):
    from atelier_workers import tasks

    resident: set[str] = set()

    class Broken(resident_plugin("broken", resident)):
        def load(self, device, model_dir):
            raise OSError("weights.safetensors: truncated file")

    for plugin in (Broken, resident_plugin("chat", resident), resident_plugin("image", resident)):
        empty_plugin_registry.register(plugin)
    atelier_config(preload_plugins="broken,chat,image")
    runner = JobRunner(get_registry(), ModelCache("cpu", budget_bytes=1000))
    monkeypatch.setattr(tasks, "get_runner", lambda: runner)
    tasks._start_worker_process()  # celery's worker_process_init
    assert resident == {"chat", "image"}
    assert runner.state == WorkerState.UNHEALTHY
    assert runner.detail == "preloading failed: broken: OSError: weights.safetensors: truncated file"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120, method="signal")
def test_outputs_name_their_projects_model_version_when_two_versions_share_files(project, empty_plugin_registry,
                                                                                tmp_path, monkeypatch):
    import io

    from django.core.management import call_command

    from atelier_platform.config import get_config
    from tests.factories import ProjectFactory
    from tests.support.plugins import ModelDirProbe

    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: tmp_path))
    (tmp_path / "probe" / "default").mkdir(parents=True)
    empty_plugin_registry.register(ModelDirProbe)
    pinned = ProjectFactory()
    for p in (project, pinned):
        set_plugin_enabled(p, "model_probe", True)
    # the default's files registered as a version, to pin a project to what it runs today
    call_command("register_model", "--plugin", "model_probe", "--name", "v1", "--dir", "probe/default",
                 "--pin", pinned.slug, stdout=io.StringIO())
    jobs = [submit_job(p, JobRequest("model_probe", {"text": "x"}, {})).job for p in (project, pinned, project)]
    runner = JobRunner(get_registry(), ModelCache("cpu"))
    for job in jobs:
        runner.run(str(job.pk))
    versions = [reload(job).outputs.get().provenance["model_version"] for job in jobs]
    assert versions == ["default", "v1", "default"]


class CancelledWhileLoading(ReverseText):
    """While its model loads, the job ``cancel`` names is asked to cancel, and the batch's heartbeat notices."""

    manifest = ReverseText.manifest.model_copy(update={"id": "slow_load"})
    cancel: str = ""
    ran: list[str] = []
    beats: list = []

    def load(self, device, model_dir):
        from atelier_platform.jobs.lifecycle import cancel_job

        cancel_job(Job.objects.get(pk=CancelledWhileLoading.cancel))
        while CancelledWhileLoading.cancel not in CancelledWhileLoading.beats[-1].cancelled:
            time.sleep(0.02)
        super().load(device, model_dir)

    def generate(self, batch, context):
        CancelledWhileLoading.ran += [request.job_id for request in batch]
        return super().generate(batch, context)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120, method="signal")
def test_a_job_cancelled_while_its_model_loads_is_not_run(project, empty_plugin_registry, atelier_config, monkeypatch):
    from atelier_workers import runtime

    class RecordedHeartbeat(runtime.BatchHeartbeat):
        def __enter__(self):
            CancelledWhileLoading.beats.append(self)
            return super().__enter__()

    monkeypatch.setattr(runtime, "BatchHeartbeat", RecordedHeartbeat)
    atelier_config(job_heartbeat_s=0.1)
    empty_plugin_registry.register(CancelledWhileLoading)
    set_plugin_enabled(project, "slow_load", True)
    leader, companion = submit(project, "slow_load", "leader"), submit(project, "slow_load", "companion")
    CancelledWhileLoading.cancel, CancelledWhileLoading.ran[:] = str(leader.pk), []
    assert JobRunner(get_registry(), ModelCache("cpu")).run(str(leader.pk)) == JobStatus.CANCELLED
    assert CancelledWhileLoading.ran == [str(companion.pk)]
    assert reload(leader).status == JobStatus.CANCELLED and reload(companion).status == JobStatus.SUCCEEDED
