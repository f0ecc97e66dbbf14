"""Channel "whatsapp" (Twilio's WhatsApp): the channel columns grow from 5 to 10 characters.

On PostgreSQL, widening a varchar is a catalogue change (no table rewrite). SQLite does not
enforce varchar lengths, and altering a column there rebuilds the table, which would try
to recreate the PostgreSQL-only search index (0003): the schema is left as it is there.
"""
from django.db import migrations, models


class AlterFieldOnPostgres(migrations.AlterField):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


CHANNELS = [("email", "Email"), ("sms", "Sms"), ("mms", "Mms"), ("chat", "Chat"), ("whatsapp", "Whatsapp")]


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0004_participant_timeline_indexes"),
    ]

    operations = [
        AlterFieldOnPostgres(
            model_name="communication",
            name="channel",
            field=models.CharField(choices=CHANNELS, max_length=10),
        ),
        AlterFieldOnPostgres(
            model_name="conversation",
            name="channel",
            field=models.CharField(choices=CHANNELS, max_length=10),
        ),
    ]
