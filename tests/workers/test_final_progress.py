"""A succeeded job keeps the progress its plugin reported last, not whatever the last timed flush wrote."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_sdk import Manifest, Modality, OutputItem, Plugin, ResourceClass
from atelier_workers.runtime import JobRunner, ModelCache

pytestmark = pytest.mark.django_db(transaction=True)


class StepsInput(BaseModel):
    steps: int


class StepsOutput(BaseModel):
    steps: int


class CountsSteps(Plugin):
    """Reports each step, as a diffusion or token loop does, the last one just before returning."""

    manifest = Manifest(id="counts_steps", version="1.0.0", name="Counts steps", description="Test plugin.",
                        modality=Modality.TEXT, resource_class=ResourceClass.GPU, max_batch_size=8, time_limit_s=60)
    Input = StepsInput
    Output = StepsOutput

    def generate(self, batch, context):
        for request in batch:
            for step in range(1, request.input.steps + 1):
                context.report_progress(request.job_id, step / request.input.steps, step=step, steps=request.input.steps)
        return [[OutputItem(StepsOutput(steps=request.input.steps))] for request in batch]


@pytest.fixture
def steps_project(project, empty_plugin_registry, atelier_config):
    # Flushes far apart, as on a busy worker: none comes between the first step and the result.
    atelier_config(progress_flush_s=60)
    empty_plugin_registry.register(CountsSteps)
    set_plugin_enabled(project, "counts_steps", True)
    return project


def submit(project, steps: int) -> Job:
    return submit_job(project, JobRequest("counts_steps", {"steps": steps}, {})).job


@pytest.mark.parametrize("jobs_in_batch", [1, 3], ids=["alone", "batch"])
def test_a_succeeded_job_shows_its_last_reported_step(steps_project, jobs_in_batch):
    jobs = [submit(steps_project, steps=4 + n) for n in range(jobs_in_batch)]
    assert JobRunner(get_registry(), ModelCache("cpu")).run(str(jobs[0].pk)) == "succeeded"
    for job in jobs:
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert (job.progress, job.progress_detail) == (1.0, {"step": job.input["steps"], "steps": job.input["steps"]})
