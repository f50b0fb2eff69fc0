"""The callback inbox: i-dgtl events that arrive before the uuids of a send's answer are recorded.

Existing default groups (b24sms/roles.py: Viewer and Operator see every model) get the new model's
view permission; a fresh database creates them with it after migrate.
"""
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

ROLE_GROUPS = ("Viewer", "Operator")  # b24sms.roles.VIEWER, OPERATOR (stored names)


def grant_view_to_default_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    groups = list(Group.objects.using(schema_editor.connection.alias).filter(name__in=ROLE_GROUPS))
    if not groups:
        return  # a fresh database: the groups are created after migrate, with every view permission
    app_config = apps.get_app_config("providers")
    if getattr(app_config, "models_module", None) is None:  # a migration state's config: create_permissions wants one
        app_config.models_module = True
    create_permissions(app_config, verbosity=0, using=schema_editor.connection.alias, apps=apps)
    view = Permission.objects.using(schema_editor.connection.alias).filter(
        content_type__app_label="providers", codename="view_unmatchedcallbackevent").first()
    if view is not None:
        for group in groups:
            group.permissions.add(view)


class Migration(migrations.Migration):

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('providers', '0004_provider_permissions'),
    ]

    operations = [
        migrations.CreateModel(
            name='UnmatchedCallbackEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('message_uuid', models.CharField(max_length=64, verbose_name='i-dgtl message UUID')),
                ('status', models.CharField(max_length=32, verbose_name='i-dgtl status')),
                ('status_time', models.DateTimeField(blank=True, null=True, verbose_name='i-dgtl status time')),
                ('error_code', models.IntegerField(blank=True, null=True, verbose_name='error code')),
                ('raw_event', models.TextField(blank=True, help_text="The event's JSON, cut at 2000 characters.", verbose_name='event as received')),
                ('received_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name='received')),
                ('installation', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='unmatched_callback_events', to='providers.installation', verbose_name='portal')),
            ],
            options={
                'verbose_name': 'unmatched callback event',
                'verbose_name_plural': 'unmatched callback events',
                'ordering': ['received_at', 'id'],
                'constraints': [models.UniqueConstraint(fields=('installation', 'message_uuid', 'status', 'status_time'), name='providers_unmatched_event_once')],
            },
        ),
        migrations.RunPython(grant_view_to_default_groups, migrations.RunPython.noop),
    ]
