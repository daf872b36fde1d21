"""A generated file leaves storage with the row that names it."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from atelier_platform.jobs.models import OutputFile

logger = logging.getLogger("atelier.jobs")


@receiver(post_delete, sender=OutputFile)
def remove_deleted_output_file(sender, instance: OutputFile, **kwargs) -> None:
    """Whatever deleted the row (its output, job or project deleted in the admin or a shell, in cascade):
    nothing could reach or remove the file afterwards. Only once the deletion commits: a rolled-back
    delete keeps its file."""
    storage, name = instance.file.storage, instance.file.name
    if not name:
        return

    def remove() -> None:
        try:
            storage.delete(name)
        except Exception:
            logger.warning("could not remove %s, the file of a deleted output", name, exc_info=True)

    transaction.on_commit(remove, robust=True)
