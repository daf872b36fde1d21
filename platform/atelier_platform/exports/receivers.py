"""An export's file goes with its row (the cleanup, its project deleted, the admin)."""

from __future__ import annotations

from django.db.models.signals import post_delete
from django.dispatch import receiver

from atelier_platform.exports.models import Export
from atelier_platform.stored_files import remove_after_commit


@receiver(post_delete, sender=Export, dispatch_uid="exports.export_deleted")
def remove_deleted_export(sender, instance: Export, **kwargs) -> None:
    remove_after_commit(instance.file, f"export {instance.pk}, deleted")
