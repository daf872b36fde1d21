"""Writing to the append-only audit log."""

from __future__ import annotations

from typing import Any

from atelier_platform.moderation.models import AuditEvent


def record(project, actor: str, action: str, obj: Any, *, before: Any = None, after: Any = None) -> AuditEvent:
    return AuditEvent.objects.create(
        project=project,
        actor=actor[:100],
        action=action,
        object_type=type(obj).__name__.lower(),
        object_id=str(obj.pk),
        before=before,
        after=after,
    )
