from django.db import migrations, models


def fill_search_text(apps, schema_editor):
    """The outputs stored before: their final texts, as new outputs get them when stored (a plugin no longer
    installed here: every text of its outputs)."""
    from atelier_platform.jobs.library import output_search_text

    Output = apps.get_model("jobs", "Output")
    batch = []
    for output in Output.objects.select_related("job").only("id", "content", "job__plugin_id").iterator(chunk_size=500):
        output.search_text = output_search_text(output.job.plugin_id, output.content)
        batch.append(output)
        if len(batch) == 500:
            Output.objects.bulk_update(batch, ["search_text"])
            batch = []
    if batch:
        Output.objects.bulk_update(batch, ["search_text"])


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0008_model_version_goes_with_its_project"),
    ]

    operations = [
        migrations.AddField(
            model_name="output",
            name="search_text",
            field=models.TextField(blank=True, default="", editable=False),
        ),
        migrations.RunPython(fill_search_text, migrations.RunPython.noop),
    ]
