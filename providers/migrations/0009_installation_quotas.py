# Written by hand (issue 9, item 4: quotas). Three nullable/defaulted columns on the installation (no
# table rewrite), and the per-recipient quota's partial index on messages, built CONCURRENTLY on
# PostgreSQL (the messages table keeps taking the HANDLER's inserts; hence atomic = False).

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
        ('providers', '0007_message_parts'),
    ]

    operations = [
        migrations.AddField(
            model_name='installation',
            name='quota_monthly_parts',
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name='quota: SMS parts per month',
                help_text='SMS parts this portal may send per calendar month (USAGE_TIME_ZONE). Empty means no limit.'),
        ),
        migrations.AddField(
            model_name='installation',
            name='quota_recipient_per_hour',
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name='quota: messages per number per hour',
                help_text='Messages to one phone number within any 60 minutes. Empty means no limit.'),
        ),
        migrations.AddField(
            model_name='installation',
            name='quota_warning_percent',
            field=models.PositiveSmallIntegerField(
                default=80, verbose_name='quota: warning threshold, %',
                help_text='The portal is shown under "Needs attention" once this share of the monthly limit is used.'),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name='message',
            index=models.Index(condition=models.Q(('sending_started_at__isnull', False)),
                               fields=['installation', 'destination', 'sending_started_at'],
                               name='providers_msg_recipient_idx'),
        ),
    ]
