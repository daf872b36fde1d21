from django.db import migrations, models


def fill_search_text(apps, schema_editor):
    """The jobs stored before: their input's texts, as new jobs get them when saved."""
    from atelier_platform.jobs.models import searchable_text

    Job = apps.get_model("jobs", "Job")
    batch = []
    for job in Job.objects.only("id", "input").iterator(chunk_size=500):
        job.search_text = searchable_text(job.input)
        batch.append(job)
        if len(batch) == 500:
            Job.objects.bulk_update(batch, ["search_text"])
            batch = []
    if batch:
        Job.objects.bulk_update(batch, ["search_text"])


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0004_job_idempotency_scope"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="search_text",
            field=models.TextField(blank=True, default="", editable=False),
        ),
        migrations.RunPython(fill_search_text, migrations.RunPython.noop),
    ]
