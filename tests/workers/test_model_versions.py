"""Which model directory a job runs with: default, pinned version, and what is refused."""

from __future__ import annotations

import io
import socket

import pytest
from django.core.management import CommandError, call_command

from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.config import get_config
from atelier_platform.jobs.models import Job
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_workers.runtime import JobRunner, ModelCache
from tests.support.plugins import ModelDirProbe


@pytest.fixture
def models_root(tmp_path, monkeypatch):
    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: tmp_path))
    return tmp_path


@pytest.fixture
def probe_project(project, empty_plugin_registry):
    empty_plugin_registry.register(ModelDirProbe)
    set_plugin_enabled(project, "model_probe", True)
    return project


def run_probe(project) -> Job:
    job = submit_job(project, JobRequest("model_probe", {"text": "x"}, {})).job
    JobRunner(get_registry(), ModelCache("cpu")).run(str(job.pk))
    return Job.objects.get(pk=job.pk)


def register(*args):
    call_command("register_model", "--plugin", "model_probe", *args, stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
class TestModelDirectories:
    def test_missing_default_directory_fails_the_job_clearly(self, probe_project, models_root):
        from atelier_workers.runtime import worker_name

        job = run_probe(probe_project)
        assert job.status == "failed" and job.error_code == "model_not_found"
        assert "probe/default" in job.error_message
        # read by every jobs:read key of the project: no worker's host, process or paths
        assert str(models_root) not in job.error_message and socket.gethostname() not in job.error_message
        assert worker_name() not in job.error_message

    def test_default_directory_is_used(self, probe_project, models_root):
        (models_root / "probe" / "default").mkdir(parents=True)
        job = run_probe(probe_project)
        output = job.outputs.get()
        assert output.content["text"] == "default" and output.provenance["model_version"] == "default"

    def test_provenance_names_the_model_dir_as_pinned_and_nothing_of_the_server(self, probe_project, models_root,
                                                                                 api):
        """Any jobs:read key read the absolute model directory (``/srv/models/demo/chat-lm``) and the worker's host
        and process id in each output's provenance. It names the directory relative to the models root, as the
        project pins it and GET /workers/ shows it, and keeps what makes the output again."""
        import os
        import socket

        (models_root / "probe" / "v2").mkdir(parents=True)
        register("--name", "v2", "--dir", "probe/v2", "--pin", probe_project.slug)
        job = run_probe(probe_project)
        shown = api.get(f"/api/v1/jobs/{job.pk}/").json()["outputs"][0]["provenance"]
        assert shown["model_dir"] == "probe/v2" and shown["model_version"] == "v2"
        assert {"plugin", "plugin_version", "model_dir", "model_version", "device", "batch_size", "seed", "generated_at",
                "generate_seconds"} <= set(shown), shown
        assert "worker" not in shown
        text = str(shown)
        assert str(models_root) not in text and socket.gethostname() not in text and f":{os.getpid()}" not in text
        assert job.worker  # which worker ran it stays on the job, for operators

    def test_a_pinned_version_wins(self, probe_project, models_root):
        (models_root / "probe" / "default").mkdir(parents=True)
        (models_root / "probe" / "v2").mkdir(parents=True)
        register("--name", "v2", "--dir", "probe/v2", "--pin", probe_project.slug)
        output = run_probe(probe_project).outputs.get()
        assert output.content["text"] == "v2" and output.provenance["model_version"] == "v2"
        ProjectPlugin.objects.filter(project=probe_project, plugin_id="model_probe").update(model_version=None)
        assert run_probe(probe_project).outputs.get().content["text"] == "default"  # rolled back

    @pytest.mark.parametrize("relative", ["../outside", "/etc", "probe/missing"])
    def test_directories_outside_the_root_or_missing_are_refused(self, probe_project, models_root, relative):
        with pytest.raises(CommandError):
            register("--name", "bad", "--dir", relative)
        assert not ModelVersion.objects.exists()

    def test_pickle_weights_are_refused(self, probe_project, models_root):
        (models_root / "probe" / "pickled").mkdir(parents=True)
        (models_root / "probe" / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04")
        with pytest.raises(CommandError, match="safetensors only"):
            register("--name", "pickled", "--dir", "probe/pickled")
        # and a pinned directory that gains pickle files later is refused at load time
        (models_root / "probe" / "ok").mkdir(parents=True)
        register("--name", "ok", "--dir", "probe/ok", "--pin", probe_project.slug)
        (models_root / "probe" / "ok" / "weights.pt").write_bytes(b"x")
        job = run_probe(probe_project)
        assert job.status == "failed" and "pickle" in job.error_message
        assert str(models_root) not in job.error_message and "probe/ok" in job.error_message  # as the project names it

    def test_a_job_never_runs_on_another_projects_private_version(self, probe_project, other_project, models_root):
        """Every way of pinning refuses another tenant's version; were such a pin ever in the database, the job
        fails rather than run on their weights or name their version in its provenance."""
        (models_root / "probe" / "default").mkdir(parents=True)
        (models_root / "probe" / "globex-ft").mkdir(parents=True)
        register("--name", "globex-ft", "--dir", "probe/globex-ft", "--project", other_project.slug)
        ProjectPlugin.objects.filter(project=probe_project, plugin_id="model_probe").update(
            model_version=ModelVersion.objects.get(version="globex-ft"))
        job = run_probe(probe_project)
        assert job.status == "failed" and job.error_code == "model_not_found" and not job.outputs.exists()
        assert "private to another project" in job.error_message
        assert "globex" not in job.error_message and other_project.slug not in job.error_message
        # the owner's own jobs run on it
        set_plugin_enabled(other_project, "model_probe", True)
        register("--name", "globex-ft", "--dir", "probe/globex-ft", "--project", other_project.slug,
                 "--pin", other_project.slug)
        output = run_probe(other_project).outputs.get()
        assert output.content["text"] == "globex-ft" and output.provenance["model_version"] == "globex-ft"

    def test_a_job_naming_another_projects_private_version_fails_and_one_naming_its_own_runs_on_it(
            self, probe_project, other_project, models_root):
        """A job may name its version (an evaluation's); the worker holds the catalog's rule there too."""
        for name in ("default", "globex-ft", "acme-ft"):
            (models_root / "probe" / name).mkdir(parents=True)
        register("--name", "globex-ft", "--dir", "probe/globex-ft", "--project", other_project.slug)
        register("--name", "acme-ft", "--dir", "probe/acme-ft", "--project", probe_project.slug)

        def run_naming(version: str) -> Job:
            job = submit_job(probe_project, JobRequest("model_probe", {"text": "x"}, {})).job
            Job.objects.filter(pk=job.pk).update(model_version=ModelVersion.objects.get(version=version))
            JobRunner(get_registry(), ModelCache("cpu")).run(str(job.pk))
            return Job.objects.get(pk=job.pk)

        theirs = run_naming("globex-ft")
        assert theirs.status == "failed" and theirs.error_code == "model_not_found" and not theirs.outputs.exists()
        assert "globex" not in theirs.error_message and other_project.slug not in theirs.error_message
        assert run_naming("acme-ft").outputs.get().content["text"] == "acme-ft"


@pytest.mark.django_db(transaction=True)
def test_a_job_queued_before_a_pin_changes_runs_on_the_version_pinned_when_it_starts(probe_project, models_root):
    """A pin is read when a job starts, not when it was queued: rolling back from a bad version also keeps the jobs
    waiting in the queue off it (the settings page says so)."""
    for name in ("default", "v1", "v2"):
        (models_root / "probe" / name).mkdir(parents=True)
    register("--name", "v1", "--dir", "probe/v1", "--pin", probe_project.slug)
    register("--name", "v2", "--dir", "probe/v2")
    queued = submit_job(probe_project, JobRequest("model_probe", {"text": "x"}, {})).job
    ProjectPlugin.objects.filter(project=probe_project, plugin_id="model_probe").update(
        model_version=ModelVersion.objects.get(version="v2"))
    JobRunner(get_registry(), ModelCache("cpu")).run(str(queued.pk))
    assert Job.objects.get(pk=queued.pk).outputs.get().content["text"] == "v2"
