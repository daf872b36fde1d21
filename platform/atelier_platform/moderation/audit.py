"""Writing to the append-only audit log."""

from __future__ import annotations

from typing import Any

from atelier_platform.moderation.models import AuditEvent


def record(project, actor: str, action: str, obj: Any, *, before: Any = None, after: Any = None) -> AuditEvent:
    entry = event(project, actor, action, obj, before=before, after=after)
    entry.save()
    return entry


def event(project, actor: str, action: str, obj: Any, *, before: Any = None, after: Any = None) -> AuditEvent:
    """An entry not saved yet: ``record_many`` saves several in one statement."""
    return AuditEvent(
        project=project,
        actor=actor[:100],
        action=action,
        object_type=type(obj).__name__.lower(),
        object_id=str(obj.pk),
        before=before,
        after=after,
    )


def record_many(entries: list[AuditEvent]) -> None:
    AuditEvent.objects.bulk_create(entries)


def about(project, object_id: str) -> list[str]:
    """The ids whose events tell the story of ``object_id``: the object itself and, for a job, its outputs and
    their review items; for an output, its review item. Who approved an output is recorded on the output and the
    leases on its review item; an owner holds the job's id (the job page's address) or the output's."""
    import uuid

    from atelier_platform.jobs.models import Output
    from atelier_platform.moderation.models import ReviewItem

    ids = [object_id]
    try:
        as_uuid = uuid.UUID(object_id)
    except ValueError:
        return ids
    if str(as_uuid) != object_id:  # ids are stored as str(pk): lower case, with hyphens ("6F1C..." names it too)
        ids.append(str(as_uuid))
    outputs = [str(pk) for pk in Output.objects.filter(job__project=project, job_id=as_uuid).values_list("pk", flat=True)]
    outputs = outputs or [str(pk) for pk in Output.objects.filter(job__project=project, pk=as_uuid).values_list("pk", flat=True)]
    items = ReviewItem.objects.filter(project=project, output_id__in=outputs).values_list("pk", flat=True)
    return [*ids, *(o for o in outputs if o not in ids), *(str(pk) for pk in items)]


def search(project, *, action: str = "", actor: str = "", object_id: str = "", created_after=None,
           created_before=None):
    """The project's events, oldest first, narrowed by each filter given: the action's code, the actor as stored
    (``user:12``, ``key:ab12cd34ef56``, ``screening``), an object (see ``about``), a time range (from, to)."""
    events = AuditEvent.objects.filter(project=project).order_by("id")
    if action:
        events = events.filter(action=action[:60])
    if actor:
        events = events.filter(actor=actor[:100])
    if object_id:
        events = events.filter(object_id__in=about(project, object_id[:64]))
    if created_after is not None:
        events = events.filter(created_at__gte=created_after)
    if created_before is not None:
        events = events.filter(created_at__lt=created_before)
    return events
