# Written by hand (issue 9, item 6: retention). On PostgreSQL the index is built CONCURRENTLY: the messages
# table keeps taking the HANDLER's inserts while it is built (hence atomic = False); elsewhere a plain CREATE INDEX.

import django.db.models.functions.comparison
from django.db import migrations, models

from common.migration_operations import AddIndexConcurrentlyOnPostgreSQL


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
