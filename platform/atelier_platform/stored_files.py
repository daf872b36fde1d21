"""Files in media storage that go with their rows (generated outputs, evaluation reference images)."""

from __future__ import annotations

import logging

from django.db import transaction

logger = logging.getLogger("atelier.storage")


def remove_after_commit(field_file, what: str) -> None:
    """Delete ``field_file`` from its storage once the deletion of its row commits (a rolled-back one keeps it), for
    a ``post_delete`` receiver: whatever deleted the row (its parent in cascade, the admin, a shell), nothing could
    reach or remove the file afterwards. A storage that fails is logged, naming ``what``, and the deletion stands."""
    storage, name = field_file.storage, field_file.name
    if not name:
        return

    def remove() -> None:
        try:
            storage.delete(name)
        except Exception:
            logger.warning("could not remove %s, the file of %s", name, what, exc_info=True)

    transaction.on_commit(remove, robust=True)
