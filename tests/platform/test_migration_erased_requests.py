"""Jobs erased before an erasure cleared their requests' hashes lose them with the migration, and answered batches
compare a retry with their jobs' fingerprints from then on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from atelier_platform.jobs.models import Job
from atelier_platform.usage.models import IdempotencyRecord, IdempotencyState
from tests.api.helpers import build_job
from tests.platform.test_migration_token_counts import migrate_to, migrate_to_latest

BEFORE = ("jobs", "0012_newest_outputs_and_evaluation_jobs_indexes")
AFTER = ("jobs", "0013_erased_jobs_forget_their_requests")


@pytest.mark.django_db(transaction=True)
def test_erased_jobs_and_answered_batches_keep_no_hash_of_their_requests(project):
    now = timezone.now()
    # made with today's model, before going back: the columns later migrations add are not there at BEFORE
    erased = build_job(project, input={}, request_fingerprint="a" * 64, batch_key="b" * 32)
    kept = build_job(project, request_fingerprint="c" * 64, batch_key="d" * 32)
    migrate_to(BEFORE)
    try:
        Job.objects.filter(pk=erased.pk).update(erased_at=now, erased_by="user:1")

        def record(scope: str, key: str, state: str) -> IdempotencyRecord:
            return IdempotencyRecord.objects.create(project=project, scope=scope, key=key, fingerprint="e" * 64,
                                                    state=state, locked_until=now, expires_at=now + timedelta(days=1))

        batch = record("jobs/batch", "nightly-1", IdempotencyState.COMPLETED)
        batch_in_flight = record("jobs/batch", "nightly-2", IdempotencyState.IN_FLIGHT)
        decision = record("/api/v1/reviews/1/decision/", "d-1", IdempotencyState.COMPLETED)
        migrate_to(AFTER)
    finally:
        migrate_to_latest()
    assert Job.objects.filter(pk=erased.pk).values_list("request_fingerprint", "batch_key").get() == ("", "")
    assert Job.objects.filter(pk=kept.pk).values_list("request_fingerprint", "batch_key").get() == ("c" * 64, "d" * 32)
    fingerprints = dict(IdempotencyRecord.objects.values_list("pk", "fingerprint"))
    assert fingerprints == {batch.pk: "", batch_in_flight.pk: "e" * 64, decision.pk: "e" * 64}
