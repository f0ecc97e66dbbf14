"""The GIN index behind full-text search of communications (`q` in the API), PostgreSQL only.

Built CONCURRENTLY: a communications table holds millions of rows, and a plain CREATE INDEX
would block every sync's inserts for as long as the build takes. Other databases search by
substring and get no index (the model state records it all the same, so the autodetector
stays quiet everywhere).
"""
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations

import conversations.models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("conversations", "0002_view_all_content"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="communication",
            index=GinIndex(
                conversations.models.SearchDocument("subject", "body_text"), name="communication_search_idx",
                fastupdate=True, gin_pending_list_limit=65536,
            ),
        ),
    ]
