"""Migration operations of our own."""

from __future__ import annotations

from django.db.migrations.operations import AddIndex


class AddIndexOnline(AddIndex):
    """``AddIndex`` that PostgreSQL builds ``CONCURRENTLY`` when the migration runs outside a transaction (declare it
    ``atomic = False``): a big table goes on taking writes while its index is built (jobs submitted and finished during
    a deploy), where a plain CREATE INDEX blocks them until it is done. Inside a transaction (a test migrating in
    its own), and on SQLite, a plain ``AddIndex``.

    Unlike ``django.contrib.postgres.operations.AddIndexConcurrently``, it runs on SQLite too. A concurrent build that
    failed (cancelled, out of disk) leaves an invalid index of the name, which is dropped before building it again; a
    valid one of the name (built by an earlier run that stopped at a later operation) is kept."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        validity = _index_validity(schema_editor.connection, model._meta.db_table, self.index.name)
        if validity is True:
            # built by an earlier run of this migration that stopped half way (a non-atomic migration keeps what it
            # did and is not recorded): building it again failed on "already exists", at every deploy after
            return
        if not _online(schema_editor):
            schema_editor.add_index(model, self.index)
            return
        if validity is False:
            schema_editor.remove_index(model, self.index, concurrently=True)
        schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if _online(schema_editor):
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)

    def describe(self):
        return f"{super().describe()} (concurrently on PostgreSQL)"


def _online(schema_editor) -> bool:
    connection = schema_editor.connection
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _index_validity(connection, table: str, name: str) -> bool | None:
    """Whether the index ``name`` exists and is valid (PostgreSQL: not left invalid by a failed concurrent build);
    None when there is none."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            return True if name in connection.introspection.get_constraints(cursor, table) else None
        cursor.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s "
                       "AND c.relnamespace = current_schema()::regnamespace", [name])
        row = cursor.fetchone()
    return None if row is None else bool(row[0])
