"""Installation.callback_secret: the i-dgtl callback URL gets its own secret (not the HANDLER's).

The usual three steps for a unique field on existing rows: add it nullable and not unique, give
every row its own value, then make it unique and required with its default.
"""
import secrets

from django.db import migrations, models

import providers.models


def callback_secrets_fill(apps, schema_editor):
    Installation = apps.get_model("providers", "Installation")
    for installation in Installation.objects.filter(callback_secret__isnull=True).only("pk").iterator():
        Installation.objects.filter(pk=installation.pk).update(callback_secret=secrets.token_urlsafe(32))


class Migration(migrations.Migration):

    dependencies = [
        ('providers', '0002_message_fewer_intake_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='installation',
            name='callback_secret',
            field=models.CharField(editable=False, max_length=64, null=True, verbose_name='callback secret'),
        ),
        migrations.RunPython(callback_secrets_fill, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name='installation',
            name='callback_secret',
            field=models.CharField(default=providers.models.new_callback_secret, editable=False, max_length=64, unique=True, verbose_name='callback secret'),
        ),
    ]
