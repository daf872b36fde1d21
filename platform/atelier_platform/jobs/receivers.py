"""A generated file leaves storage with the row that names it."""

from __future__ import annotations

from django.db.models.signals import post_delete
from django.dispatch import receiver

from atelier_platform.jobs.models import OutputFile
from atelier_platform.stored_files import remove_after_commit


@receiver(post_delete, sender=OutputFile)
def remove_deleted_output_file(sender, instance: OutputFile, **kwargs) -> None:
    """Whatever deleted the row (its output, job or project deleted in the admin or a shell, in cascade)."""
    remove_after_commit(instance.file, "a deleted output")
