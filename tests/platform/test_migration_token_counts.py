"""Outputs whose token counts a reviewer rewrote before edits were limited to editable fields bill the plugin's
counts again after the migration."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from atelier_platform.jobs.models import Output
from atelier_platform.moderation.models import ReviewDecision, ReviewItem
from tests.api.helpers import build_job, build_output

BEFORE = ("moderation", "0003_safetypolicy_lease_seconds_bounds")
AFTER = ("moderation", "0004_restore_token_counts_reviewers_edited")


def migrate_to(target) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


def migrate_to_latest() -> None:
    """Every app to its last migration: later migrations (0005's allow list) come back for the tests after this."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def chat(reply: str, prompt_tokens: int) -> dict:
    return {"reply": reply, "sources": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7},
            "finish_reason": "stop", "conversation_id": None}


@pytest.mark.django_db(transaction=True)
def test_the_plugins_token_counts_are_put_back_and_the_edited_text_kept(project, api):
    migrate_to(BEFORE)
    try:
        forged = build_output(build_job(project, plugin="chatbot"), content=chat("Edited twice", 900_000_000_000))
        item = ReviewItem.objects.create(output=forged, project=project, priority=5, state="decided")
        ReviewDecision.objects.create(item=item, action="edit", decided_by="user:1",
                                      original_content=chat("As the model wrote it", 120),
                                      edited_content=chat("Edited once", 5))
        ReviewDecision.objects.create(item=item, action="edit", decided_by="user:2",
                                      original_content=chat("Edited once", 5),
                                      edited_content=chat("Edited twice", 900_000_000_000))
        untouched = build_output(build_job(project, plugin="chatbot"), content=chat("Never edited", 40))
        # (the usage API cannot bill the forged count here: it reads the project's safety policy, whose columns of
        # later migrations are not there yet; the API's figure after the migration is what counts)
        migrate_to(AFTER)
    finally:
        migrate_to_latest()
    assert Output.objects.get(pk=forged.pk).content == chat("Edited twice", 120)
    assert Output.objects.get(pk=untouched.pk).content == chat("Never edited", 40)
    assert api.get("/api/v1/usage/").json()["totals"]["tokens"]["prompt"] == 160
