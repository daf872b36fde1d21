"""Trigram indexes for the searches of jobs and outputs, on PostgreSQL (``atelier_platform.jobs.search_indexes``).

Not Django's ``TrigramExtension`` and ``AddIndexConcurrently`` (``django.contrib.postgres.operations``), on purpose:
the first fails the migration, and so the deploy, where the role may not create pg_trgm, and the second runs on SQLite
too (which has no GIN index) and puts the index in the models' state, where SQLite would build it again with every
later rebuild of the table. These operations do nothing on SQLite, and without pg_trgm they warn and go on
(the searches work, only slower); they change no model state.
"""

from django.db import migrations


def create_indexes(apps, schema_editor):
    from atelier_platform.jobs.search_indexes import create_search_indexes

    create_search_indexes(schema_editor.connection)


def drop_indexes(apps, schema_editor):
    from atelier_platform.jobs.search_indexes import drop_search_indexes

    drop_search_indexes(schema_editor.connection)


class Migration(migrations.Migration):
    # Not in a transaction: each index is built CONCURRENTLY (PostgreSQL refuses that inside one), so that jobs may be
    # submitted and finished while a big table's index is built during a deploy (a plain CREATE INDEX blocks writes).
    atomic = False

    dependencies = [
        ("jobs", "0010_job_erasure"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
