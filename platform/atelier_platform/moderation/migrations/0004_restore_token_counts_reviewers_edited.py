from django.db import migrations


def restore_token_counts(apps, schema_editor):
    """Before a reviewer's edit was held to the fields a plugin marks editable, it was checked against the output
    schema only, and an edit could rewrite ``usage``: the token counts the usage report sums (900 billion prompt
    tokens, in one report). Put back, in each output a reviewer edited, the ``usage`` its plugin wrote: the
    original content of its first edit decision, stored before any reviewer touched it. The decisions keep
    what was sent (the audit trail); the output bills what was run."""
    ReviewDecision = apps.get_model("moderation", "ReviewDecision")
    Output = apps.get_model("jobs", "Output")
    first_original: dict = {}
    edits = (ReviewDecision.objects.filter(action="edit", original_content__isnull=False).order_by("decided_at", "pk")
             .values_list("item__output_id", "original_content"))
    for output_id, original in edits.iterator(chunk_size=500):
        first_original.setdefault(output_id, original)
    outputs = [output_id for output_id, original in first_original.items() if isinstance(original, dict) and "usage" in original]
    for start in range(0, len(outputs), 500):
        for output in Output.objects.filter(pk__in=outputs[start:start + 500]).only("pk", "content"):
            usage = first_original[output.pk]["usage"]
            if isinstance(output.content, dict) and output.content.get("usage") != usage:
                output.content = {**output.content, "usage": usage}
                output.save(update_fields=["content"])


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0003_safetypolicy_lease_seconds_bounds"),
        ("jobs", "0005_job_search_text"),
    ]

    operations = [
        migrations.RunPython(restore_token_counts, migrations.RunPython.noop),
    ]
