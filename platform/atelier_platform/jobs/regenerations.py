"""Which job regenerates which, in both directions, for the jobs API.

A reviewer's "regenerate" decision rejects an output and queues a new job with the same input
(``moderation.review._regenerate``); the new job's ``regenerated_from`` is that output. A caller that
waits on the first job sees its output rejected, and learns of the new try from the first job itself
(``regenerated_as``), as the new one names the first (``regenerated_from``).

``link_regenerations`` reads both for any number of jobs in at most two queries, and in none for the
usual job: one whose outputs are in hand and none of them rejected (a regenerate decision always
rejects the output it sends back, so only a rejected output can have a regeneration), and that is
not itself a regeneration.
"""

from __future__ import annotations

import uuid
from typing import Iterable, NamedTuple

from atelier_platform.jobs.models import Job, Output, ReviewState

#: the attribute a job's links are kept in once read (per instance, for one answer)
_LINKS = "_regeneration_links"


class RegenerationLinks(NamedTuple):
    #: the job whose output this job regenerates; None for a job submitted by a caller
    regenerated_from: uuid.UUID | None
    #: the jobs that regenerate this job's outputs, oldest first
    regenerated_as: list[uuid.UUID]


def links_of(job: Job) -> RegenerationLinks:
    """The job's links, read now unless ``link_regenerations`` read them with its company."""
    if not hasattr(job, _LINKS):
        link_regenerations([job])
    return getattr(job, _LINKS)


def link_regenerations(jobs: Iterable[Job]) -> None:
    """Read the regeneration links of ``jobs`` together (``links_of`` then answers without a query)."""
    jobs = [job for job in jobs if not hasattr(job, _LINKS)]
    if not jobs:
        return
    origins = _origins([job.regenerated_from_id for job in jobs if job.regenerated_from_id is not None])
    later = _regenerations(jobs)
    for job in jobs:
        setattr(job, _LINKS, RegenerationLinks(origins.get(job.regenerated_from_id), later.get(job.pk, [])))


def _origins(output_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """The job of each of these outputs (the ones regenerated): one query, none without any."""
    if not output_ids:
        return {}
    return dict(Output.objects.filter(pk__in=set(output_ids)).values_list("pk", "job_id"))


def _regenerations(jobs: list[Job]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The regenerations of each job's outputs, oldest first: one query, none where the jobs' outputs are
    in hand (prefetched) and none of them was rejected."""
    later: dict[uuid.UUID, list[uuid.UUID]] = {}
    in_hand = {job.pk: _outputs_in_hand(job) for job in jobs}
    if all(outputs is not None for outputs in in_hand.values()):
        job_of = {output.pk: job_id for job_id, outputs in in_hand.items() for output in outputs
                  if output.review_state == ReviewState.REJECTED}
        if not job_of:
            return later
        rows = (Job.objects.filter(regenerated_from_id__in=list(job_of)).order_by("created_at", "pk")
                .values_list("regenerated_from_id", "pk"))
        for output_id, job_id in rows:
            later.setdefault(job_of[output_id], []).append(job_id)
        return later
    rows = (Job.objects.filter(regenerated_from__job_id__in=[job.pk for job in jobs]).order_by("created_at", "pk")
            .values_list("regenerated_from__job_id", "pk"))
    for origin_id, job_id in rows:
        later.setdefault(origin_id, []).append(job_id)
    return later


def _outputs_in_hand(job: Job) -> list[Output] | None:
    cache = getattr(job, "_prefetched_objects_cache", {})
    return list(cache["outputs"]) if "outputs" in cache else None
