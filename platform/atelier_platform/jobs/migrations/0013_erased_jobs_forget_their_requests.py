from django.db import migrations
from django.db.models import Q


def forget_erased_requests(apps, schema_editor):
    """Erasures before this one kept the hashes of the erased requests: a job's fingerprint, which a replay of its
    Idempotency-Key compared a body with (the right guess at the erased input replayed, a wrong one answered 422),
    its batch key, and a batch's fingerprint in its answered key's record. Clear them as an erasure now does, and
    let each answered batch compare a retry with its jobs' fingerprints (``submission._refuse_another_batch``)."""
    Job = apps.get_model("jobs", "Job")
    IdempotencyRecord = apps.get_model("usage", "IdempotencyRecord")
    (Job.objects.filter(erased_at__isnull=False).filter(~Q(request_fingerprint="") | ~Q(batch_key=""))
     .update(request_fingerprint="", batch_key=""))
    IdempotencyRecord.objects.filter(scope="jobs/batch", state="completed").exclude(fingerprint="").update(fingerprint="")


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0012_newest_outputs_and_evaluation_jobs_indexes"),
        ("usage", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(forget_erased_requests, migrations.RunPython.noop),
    ]
