# Written by hand (issue 9, item 6: retention). On PostgreSQL the index is built CONCURRENTLY: the messages
# table keeps taking the HANDLER's inserts while it is built (hence atomic = False); elsewhere a plain CREATE INDEX.

import django.db.models.functions.comparison
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgreSQL(migrations.AddIndex):
    """AddIndex whose PostgreSQL statement is CREATE INDEX CONCURRENTLY (no lock that blocks writes)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('providers', '0006_registration_repairs'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='anonymised_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='anonymised'),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name='message',
            index=models.Index(django.db.models.functions.comparison.Coalesce('final_at', 'created_at'), models.F('id'), condition=models.Q(('anonymised_at__isnull', True), ('state__in', ['delivered', 'failed', 'undelivered'])), name='providers_msg_retention_idx'),
        ),
    ]
