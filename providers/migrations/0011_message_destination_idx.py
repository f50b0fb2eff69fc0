# Written by hand (issue 9, item 7: scale). The admin's search by phone number is an exact match on
# ``destination`` (a "contains" search read every row of the messages table): a partial index (messages with a
# destination; the HANDLER inserts them without one), built CONCURRENTLY on PostgreSQL so the messages table
# keeps taking the HANDLER's inserts (hence atomic = False).

from django.db import migrations, models

from common.migration_operations import AddIndexConcurrentlyOnPostgreSQL


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('providers', '0010_secrets_encrypted'),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name='message',
            index=models.Index(condition=models.Q(('destination', ''), _negated=True), fields=['destination'],
                               name='providers_msg_destination_idx'),
        ),
    ]
