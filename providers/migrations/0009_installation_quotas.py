# Written by hand (issue 9, item 4: quotas). Three nullable/defaulted columns on the installation (no
# table rewrite), and the per-recipient quota's partial index on messages, built CONCURRENTLY on
# PostgreSQL (the messages table keeps taking the HANDLER's inserts; hence atomic = False).

from django.db import migrations, models

from common.migration_operations import AddIndexConcurrentlyOnPostgreSQL


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
