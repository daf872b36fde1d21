"""Rows built without a worker, and the error-envelope assertion, for the REST API tests."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta

from django.core.files.base import ContentFile
from django.utils import timezone

from atelier_platform.jobs.models import Job, JobStatus, Output, OutputFile, ReviewState

_seq = itertools.count()


def build_job(project, *, plugin="reverse_text", status=JobStatus.SUCCEEDED, created_at: datetime | None = None,
              run_seconds: float | None = None, **fields) -> Job:
    """A job row as a worker would leave it; ``created_at`` and the run time as the test says."""
    fields.setdefault("input", {"text": f"t{next(_seq)}"})
    job = Job.objects.create(
        project=project, plugin_id=plugin, plugin_version="1.0.0", resource_class="cpu", params={}, seed=1,
        status=status, **fields,
    )
    created = created_at or timezone.now()
    started = finished = None
    if run_seconds is not None:
        started = created + timedelta(seconds=1)
        finished = started + timedelta(seconds=run_seconds)
    Job.objects.filter(pk=job.pk).update(created_at=created, started_at=started, finished_at=finished)
    job.refresh_from_db()
    return job


def build_output(job: Job, *, index: int = 0, content=None, review_state=ReviewState.PENDING,
                 image: bool = False) -> Output:
    output = Output.objects.create(job=job, index=index, content=content if content is not None else {"text": "x"},
                                   review_state=review_state)
    if image:
        stored = OutputFile(output=output, role="primary", media_type="image/png", size=4)
        stored.file.save(f"{uuid.uuid4().hex}.png", ContentFile(b"\x89PNG"), save=True)
        thumb = OutputFile(output=output, role="thumbnail", media_type="image/png", size=4)
        thumb.file.save(f"{uuid.uuid4().hex}.png", ContentFile(b"\x89PNG"), save=True)
    return output


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]
