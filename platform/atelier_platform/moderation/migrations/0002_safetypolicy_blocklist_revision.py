"""A revision number on each project's safety policy that the database itself bumps whenever a row of
the project's blocklist is added, changed or removed, by any path (the import service, the admin, a
shell). Screening compares it with the revision its compiled blocklist was built at, instead of
counting the blocklist on every screening: the policy is already read with the API key or the claimed
job, so an unchanged blocklist costs no query at all."""

from django.db import migrations, models

SQLITE_TRIGGERS = [
    """CREATE TRIGGER moderation_blocklist_revision_insert AFTER INSERT ON moderation_blocklistentry
       BEGIN UPDATE moderation_safetypolicy SET blocklist_revision = blocklist_revision + 1
             WHERE project_id = NEW.project_id; END""",
    """CREATE TRIGGER moderation_blocklist_revision_update AFTER UPDATE ON moderation_blocklistentry
       BEGIN UPDATE moderation_safetypolicy SET blocklist_revision = blocklist_revision + 1
             WHERE project_id IN (OLD.project_id, NEW.project_id); END""",
    """CREATE TRIGGER moderation_blocklist_revision_delete AFTER DELETE ON moderation_blocklistentry
       BEGIN UPDATE moderation_safetypolicy SET blocklist_revision = blocklist_revision + 1
             WHERE project_id = OLD.project_id; END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS moderation_blocklist_revision_insert",
    "DROP TRIGGER IF EXISTS moderation_blocklist_revision_update",
    "DROP TRIGGER IF EXISTS moderation_blocklist_revision_delete",
]
POSTGRESQL_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION moderation_bump_blocklist_revision() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP <> 'DELETE' THEN
           UPDATE moderation_safetypolicy SET blocklist_revision = blocklist_revision + 1 WHERE project_id = NEW.project_id;
         END IF;
         IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.project_id <> NEW.project_id) THEN
           UPDATE moderation_safetypolicy SET blocklist_revision = blocklist_revision + 1 WHERE project_id = OLD.project_id;
         END IF;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER moderation_blocklist_revision AFTER INSERT OR UPDATE OR DELETE ON moderation_blocklistentry
       FOR EACH ROW EXECUTE FUNCTION moderation_bump_blocklist_revision()""",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS moderation_blocklist_revision ON moderation_blocklistentry",
    "DROP FUNCTION IF EXISTS moderation_bump_blocklist_revision()",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"No blocklist revision triggers for the {schema_editor.connection.vendor} database.")
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("moderation", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="safetypolicy",
            name="blocklist_revision",
            field=models.PositiveIntegerField(
                default=0, editable=False,
                help_text="bumped by the database on every change to the project's blocklist"),
        ),
        migrations.RunPython(
            _run({"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRESQL_DROP}),
        ),
    ]
