"""A project's allow list (words its classifiers must not count against a text, contact values it publishes
itself), and a revision on its safety policy that the database bumps on every change to the list, by any path,
as migration 0002 does for the blocklist: screening reads the list again only when the revision moves.

On SQLite, adding the column rebuilds the policy table, which the blocklist's triggers (0002) name: SQLite refuses
to rename the rebuilt table into place while they do. They are dropped first and created again after."""

import importlib

import django.db.models.deletion
from django.db import migrations, models

BLOCKLIST_TRIGGERS = importlib.import_module("atelier_platform.moderation.migrations.0002_safetypolicy_blocklist_revision")

SQLITE_TRIGGERS = [
    """CREATE TRIGGER moderation_allowlist_revision_insert AFTER INSERT ON moderation_allowlistentry
       BEGIN UPDATE moderation_safetypolicy SET allowlist_revision = allowlist_revision + 1
             WHERE project_id = NEW.project_id; END""",
    """CREATE TRIGGER moderation_allowlist_revision_update AFTER UPDATE ON moderation_allowlistentry
       BEGIN UPDATE moderation_safetypolicy SET allowlist_revision = allowlist_revision + 1
             WHERE project_id IN (OLD.project_id, NEW.project_id); END""",
    """CREATE TRIGGER moderation_allowlist_revision_delete AFTER DELETE ON moderation_allowlistentry
       BEGIN UPDATE moderation_safetypolicy SET allowlist_revision = allowlist_revision + 1
             WHERE project_id = OLD.project_id; END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS moderation_allowlist_revision_insert",
    "DROP TRIGGER IF EXISTS moderation_allowlist_revision_update",
    "DROP TRIGGER IF EXISTS moderation_allowlist_revision_delete",
]
POSTGRESQL_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION moderation_bump_allowlist_revision() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP <> 'DELETE' THEN
           UPDATE moderation_safetypolicy SET allowlist_revision = allowlist_revision + 1 WHERE project_id = NEW.project_id;
         END IF;
         IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.project_id <> NEW.project_id) THEN
           UPDATE moderation_safetypolicy SET allowlist_revision = allowlist_revision + 1 WHERE project_id = OLD.project_id;
         END IF;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER moderation_allowlist_revision AFTER INSERT OR UPDATE OR DELETE ON moderation_allowlistentry
       FOR EACH ROW EXECUTE FUNCTION moderation_bump_allowlist_revision()""",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS moderation_allowlist_revision ON moderation_allowlistentry",
    "DROP FUNCTION IF EXISTS moderation_bump_allowlist_revision()",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"No revision triggers for the {schema_editor.connection.vendor} database.")
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_apikey_rate_limit"),
        ("moderation", "0004_restore_token_counts_reviewers_edited"),
    ]

    operations = [
        migrations.RunPython(_run({"sqlite": BLOCKLIST_TRIGGERS.SQLITE_DROP, "postgresql": []}),
                             _run({"sqlite": BLOCKLIST_TRIGGERS.SQLITE_TRIGGERS, "postgresql": []})),
        migrations.AddField(
            model_name="safetypolicy",
            name="allowlist_revision",
            field=models.PositiveIntegerField(
                default=0, editable=False,
                help_text="bumped by the database on every change to the project's allow list"),
        ),
        migrations.CreateModel(
            name="AllowlistEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(choices=[("term", "Word or phrase"), ("email", "E-mail address"),
                                                   ("phone", "Phone number"), ("url", "Web address")], max_length=10)),
                ("value", models.CharField(max_length=500)),
                ("normalised", models.CharField(max_length=500)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("project", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="allowlist",
                                              to="accounts.project")),
            ],
            options={
                "ordering": ["kind", "normalised"],
                "constraints": [models.UniqueConstraint(fields=("project", "kind", "normalised"),
                                                        name="one_allowlist_entry_per_value")],
            },
        ),
        migrations.RunPython(_run({"sqlite": BLOCKLIST_TRIGGERS.SQLITE_TRIGGERS, "postgresql": []}),
                             _run({"sqlite": BLOCKLIST_TRIGGERS.SQLITE_DROP, "postgresql": []})),
        migrations.RunPython(
            _run({"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRESQL_DROP}),
        ),
    ]
