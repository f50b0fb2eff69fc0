"""SMS parts on every message; usage rollups per portal; tariffs (issue 9, items 1-3).

Numbered 0007 but applied after 0008 (written first, by another change); the chain stays linear.

- ``Message.encoding`` and ``Message.parts``: computed for the messages already stored (in batches,
  ``providers/sms_parts.py``); new ones get them at intake.
- ``UsageDay``: filled once from the messages already stored (one GROUP BY), so that their later state
  changes move counts between rows that exist. From then on only ``messages_change_state`` writes it
  (providers/services/usage.py). Run this migration with the workers stopped, as every migration here:
  a state change made by old code while it runs would not be counted.
- ``Tariff``: no rows; an operator adds the default tariff (and portal ones) in the admin or the API.
- The default groups (b24sms/roles.py) that exist already get the view permissions of the new models;
  a fresh database creates them with those after migrate.
"""
from zoneinfo import ZoneInfo

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import providers.models

BATCH = 2000
ROLE_GROUPS = ("Viewer", "Operator")  # b24sms.roles.VIEWER, OPERATOR (stored names)
VIEW = ("view_usageday", "view_tariff")


def backfill_parts(apps, schema_editor):
    from providers.sms_parts import sms_parts

    Message = apps.get_model("providers", "Message")
    messages = Message.objects.using(schema_editor.connection.alias)
    last = 0
    while True:
        rows = list(messages.filter(pk__gt=last, parts=0).order_by("pk").values_list("pk", "text")[:BATCH])
        if not rows:
            return
        by_value = {}
        for pk, text in rows:
            counted = sms_parts(text or "")
            by_value.setdefault((counted.encoding, counted.parts), []).append(pk)
        for (encoding, parts), ids in by_value.items():
            messages.filter(pk__in=ids).update(encoding=encoding, parts=parts)
        last = rows[-1][0]


def backfill_usage(apps, schema_editor):
    from django.db.models import Count, Sum
    from django.db.models.functions import TruncDate

    Message = apps.get_model("providers", "Message")
    UsageDay = apps.get_model("providers", "UsageDay")
    alias = schema_editor.connection.alias
    zone = ZoneInfo(getattr(settings, "USAGE_TIME_ZONE", "Europe/Moscow"))
    rows = (Message.objects.using(alias).exclude(state="received").order_by()
            .annotate(day=TruncDate("created_at", tzinfo=zone))
            .values_list("installation_id", "day", "provider_id", "sender_name", "state")
            .annotate(n=Count("id"), p=Sum("parts")))
    UsageDay.objects.using(alias).bulk_create(
        [UsageDay(installation_id=installation_id, day=day, provider_id=provider_id, sender_name=sender_name,
                  state=state, messages=n, parts=p or 0)
         for installation_id, day, provider_id, sender_name, state, n, p in rows.iterator()],
        batch_size=BATCH)


def grant_to_default_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    alias = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    groups = list(Group.objects.using(alias).filter(name__in=ROLE_GROUPS))
    if not groups:
        return  # a fresh database: the groups are created after migrate, with these permissions
    app_config = apps.get_app_config("providers")
    app_config.models_module = True  # the state's app config has no module: create_permissions needs one
    create_permissions(app_config, verbosity=0, using=alias, apps=apps)
    permissions = list(Permission.objects.using(alias).filter(content_type__app_label="providers", codename__in=VIEW))
    for group in groups:
        group.permissions.add(*permissions)


class Migration(migrations.Migration):

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('providers', '0008_message_anonymised'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='encoding',
            field=models.CharField(blank=True, choices=[('gsm7', 'GSM-7'), ('ucs2', 'UCS-2')], max_length=8, verbose_name='encoding'),
        ),
        migrations.AddField(
            model_name='message',
            name='parts',
            field=models.PositiveSmallIntegerField(default=0, verbose_name='SMS parts'),
        ),
        migrations.CreateModel(
            name='Tariff',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('price_per_part', models.DecimalField(decimal_places=4, max_digits=12, verbose_name='price per SMS part, RUB')),
                ('billable_states', models.JSONField(default=providers.models.default_billable_states, help_text='Messages in these states are billed. Default: every message i-dgtl accepted (sent, delivered, undelivered).', verbose_name='billable states')),
                ('valid_from', models.DateField(verbose_name='valid from')),
                ('valid_until', models.DateField(blank=True, help_text='The last day it applies (included). Empty: until further notice.', null=True, verbose_name='valid until')),
                ('comment', models.CharField(blank=True, max_length=200, verbose_name='comment')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated')),
                ('installation', models.ForeignKey(blank=True, help_text='Empty: the default tariff, for every portal without a tariff of its own on that day.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='tariffs', to='providers.installation', verbose_name='portal')),
            ],
            options={
                'verbose_name': 'tariff',
                'verbose_name_plural': 'tariffs',
                'ordering': ['installation_id', '-valid_from'],
                'constraints': [models.CheckConstraint(condition=models.Q(('price_per_part__gte', 0)), name='providers_tariff_price_not_negative'), models.CheckConstraint(condition=models.Q(('valid_until__isnull', True), ('valid_until__gte', models.F('valid_from')), _connector='OR'), name='providers_tariff_period_ordered'), models.UniqueConstraint(fields=('installation', 'valid_from'), name='providers_tariff_one_start_per_portal')],
            },
        ),
        migrations.CreateModel(
            name='UsageDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(verbose_name='day')),
                ('sender_name', models.CharField(max_length=11, verbose_name='sender name')),
                ('state', models.CharField(choices=[('received', 'Received'), ('sending', 'Sending'), ('sent', 'Sent'), ('delivered', 'Delivered'), ('undelivered', 'Undelivered'), ('failed', 'Failed')], max_length=16, verbose_name='state')),
                ('messages', models.BigIntegerField(default=0, verbose_name='messages')),
                ('parts', models.BigIntegerField(default=0, verbose_name='SMS parts')),
                ('installation', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='usage_days', to='providers.installation', verbose_name='portal')),
                ('provider', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='usage_days', to='providers.provider', verbose_name='provider')),
            ],
            options={
                'verbose_name': 'usage',
                'verbose_name_plural': 'usage',
                'ordering': ['-day', 'installation', 'provider', 'sender_name', 'state'],
                'indexes': [models.Index(fields=['day'], name='providers_usage_day_idx')],
                'constraints': [models.UniqueConstraint(fields=('installation', 'day', 'provider', 'sender_name', 'state'), name='providers_usage_once_per_key')],
            },
        ),
        migrations.RunPython(backfill_parts, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(backfill_usage, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(grant_to_default_groups, migrations.RunPython.noop),
    ]
