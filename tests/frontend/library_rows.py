"""Final outputs as the content library's tests (``test_library.py``, ``test_browser_library.py``, the query counts)
need them: built without a worker, in the review state they say, approved through the review service."""

from __future__ import annotations

import uuid

from django.core.files.base import ContentFile

from atelier_platform.jobs.models import Job, JobPurpose, JobStatus, Output, OutputFile, ReviewState
from atelier_platform.moderation import review
from atelier_platform.moderation.models import ReviewItem

APPROVED = ReviewState.APPROVED


def a_job(project, prompt="a prompt", *, plugin="reverse_text", created_at=None, purpose=JobPurpose.REQUEST, **input_fields):
    job = Job.objects.create(project=project, plugin_id=plugin, plugin_version="1.0.0", resource_class="cpu",
                             input={"text": prompt, **input_fields}, params={}, seed=1, status=JobStatus.SUCCEEDED,
                             purpose=purpose)
    if created_at is not None:
        Job.objects.filter(pk=job.pk).update(created_at=created_at)
    return job


def an_output(project, text="olleh", *, state=APPROVED, prompt="a prompt", job=None, index=0, content=None,
              created_at=None, plugin="reverse_text", **job_fields) -> Output:
    """An output of a job of ``project`` in ``state`` (an approved one without its review: see ``approved_by``)."""
    job = job or a_job(project, prompt, plugin=plugin, **job_fields)
    output = Output.objects.create(job=job, index=index, review_state=state,
                                   content=content if content is not None else {"text": text, "characters": len(text)})
    if created_at is not None:
        Output.objects.filter(pk=output.pk).update(created_at=created_at)
        output.refresh_from_db()
    return output


def approved_by(output, user, *, action="approve", **decision) -> Output:
    """``output`` (pending) claimed and decided by ``user`` through the review service."""
    item = ReviewItem.objects.create(output=output, project=output.job.project)
    reviewer = review.Reviewer(actor=f"user:{user.pk}", user_id=user.pk)
    review.claim(item, reviewer)
    review.decide(item, reviewer, action=action, **decision)
    output.refresh_from_db()
    return output


def with_image(output, *, thumbnail=True, data=b"\x89PNG fake") -> Output:
    primary = OutputFile(output=output, role="primary", media_type="image/png", size=len(data))
    primary.file.save(f"{uuid.uuid4().hex}.png", ContentFile(data), save=True)
    if thumbnail:
        small = OutputFile(output=output, role="thumbnail", media_type="image/png", size=len(data))
        small.file.save(f"{uuid.uuid4().hex}-thumbnail.png", ContentFile(data), save=True)
    return output


def approved_by_key(output, api_key) -> Output:
    """``output`` (pending) approved through an API key (``key:<prefix>``), as a script that reviews would."""
    item = ReviewItem.objects.create(output=output, project=output.job.project)
    reviewer = review.Reviewer(actor=f"key:{api_key.prefix}", api_key_id=api_key.pk)
    review.claim(item, reviewer)
    review.decide(item, reviewer, action="approve")
    output.refresh_from_db()
    return output


def a_ranked_list(*items: tuple[str, str, list[str]]) -> dict:
    """A recommender's content: each item (id, title, copy variants) in rank order."""
    return {"recommendations": [
        {"rank": rank, "item_id": item_id, "title": title, "score": 1 - rank / 10,
         "copy": [{"text": text, "repaired": False, "issues_fixed": [], "source": "model", "attempts": 1} for text in copy]}
        for rank, (item_id, title, copy) in enumerate(items, start=1)], "profile_summary": None}
