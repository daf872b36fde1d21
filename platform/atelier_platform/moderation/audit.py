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
