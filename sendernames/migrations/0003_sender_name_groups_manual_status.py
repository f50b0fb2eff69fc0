"""One name for several operators (groups), statuses set by hand, and whether i-dgtl's read endpoint answers.

Existing default groups (b24sms/roles.py) get the new permissions: Viewer and Operator the view
permissions of the new models, Operator also filing groups (add, add a brand) and setting a status by
hand. A fresh database creates the groups with them after migrate. Applications that already have a
status get the time it was recorded (their last history row).
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

ROLE_GROUPS = ("Viewer", "Operator")  # b24sms.roles.VIEWER, OPERATOR (stored names)
VIEW = ("view_sendernamegroup", "view_statusreadability")
OPERATE = ("add_sendernamegroup", "change_sendernamegroup", "set_application_status")


def grant_to_default_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    alias = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    groups = {group.name: group for group in Group.objects.using(alias).filter(name__in=ROLE_GROUPS)}
    if not groups:
        return  # a fresh database: the groups are created after migrate, with these permissions
    app_config = apps.get_app_config("sendernames")
    app_config.models_module = True  # the state's app config has no module: create_permissions needs one
    create_permissions(app_config, verbosity=0, using=alias, apps=apps)
    permissions = {p.codename: p for p in Permission.objects.using(alias).filter(
        content_type__app_label="sendernames", codename__in=VIEW + OPERATE)}
    for name, group in groups.items():
        wanted = VIEW + (OPERATE if name == "Operator" else ())
        group.permissions.add(*[permissions[codename] for codename in wanted if codename in permissions])


def backfill_status_recorded(apps, schema_editor):
    from django.db.models import OuterRef, Subquery

    Application = apps.get_model("sendernames", "SenderNameApplication")
    Change = apps.get_model("sendernames", "SenderNameStatusChange")
    last = Change.objects.filter(application=OuterRef("pk")).order_by("-created_at", "-id").values("created_at")[:1]
    Application.objects.using(schema_editor.connection.alias).exclude(status="").update(
        status_changed_at=Subquery(last))


class Migration(migrations.Migration):

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('idgtl', '0002_idgtlaccount_permissions'),
        ('sendernames', '0002_sendernameapplication_permissions'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='StatusReadability',
            fields=[
                ('account', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='sender_name_readability', serialize=False, to='idgtl.idgtlaccount', verbose_name='i-dgtl account')),
                ('readable', models.BooleanField(db_index=True, default=True, verbose_name='readable')),
                ('unreadable_since', models.DateTimeField(blank=True, null=True, verbose_name='not readable since')),
                ('http_status', models.PositiveSmallIntegerField(blank=True, null=True, verbose_name='i-dgtl answered (HTTP)')),
                ('detail', models.TextField(blank=True, verbose_name="i-dgtl's answer")),
                ('checked_at', models.DateTimeField(blank=True, null=True, verbose_name='last checked')),
                ('next_check_at', models.DateTimeField(blank=True, db_index=True, null=True, verbose_name='next check')),
            ],
            options={
                'verbose_name': 'status reading from i-dgtl',
                'verbose_name_plural': 'status reading from i-dgtl',
                'ordering': ['account__name'],
            },
        ),
        migrations.AlterModelOptions(
            name='sendernameapplication',
            options={'ordering': ['-created_at'], 'permissions': [('submit_application', 'Can submit sender-name applications to i-dgtl'), ('refresh_application_status', 'Can ask i-dgtl for the status of sender-name applications'), ('set_application_status', 'Can set the status of sender-name applications by hand')], 'verbose_name': 'sender-name application', 'verbose_name_plural': 'sender-name applications'},
        ),
        migrations.AddField(
            model_name='sendernameapplication',
            name='status_changed_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='status recorded'),
        ),
        migrations.AddField(
            model_name='sendernameapplication',
            name='status_date',
            field=models.DateField(blank=True, null=True, verbose_name='status date'),
        ),
        migrations.AddField(
            model_name='sendernameapplication',
            name='status_manual',
            field=models.BooleanField(default=False, verbose_name='set by hand'),
        ),
        migrations.AddField(
            model_name='sendernamestatuschange',
            name='changed_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='by'),
        ),
        migrations.AddField(
            model_name='sendernamestatuschange',
            name='status_date',
            field=models.DateField(blank=True, null=True, verbose_name='status date'),
        ),
        migrations.AlterField(
            model_name='sendernamestatuschange',
            name='cause',
            field=models.CharField(choices=[('submission', 'Submission'), ('periodic_sync', 'Periodic sync'), ('manual_refresh', 'Manual refresh'), ('manual', 'Set by hand')], max_length=16, verbose_name='cause'),
        ),
        migrations.CreateModel(
            name='SenderNameGroup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('channel_type', models.CharField(choices=[('SMS', 'SMS')], default='SMS', max_length=16, verbose_name='channel')),
                ('common_type', models.CharField(choices=[('PROMO', 'Promotional'), ('SERVICE', 'Service'), ('AUTHORIZE', 'Authorisation'), ('TRANSACT', 'Transactional')], max_length=16, verbose_name='type')),
                ('date_from', models.DateTimeField(verbose_name='start date')),
                ('sender_name', models.CharField(db_index=True, max_length=11, verbose_name='sender name')),
                ('counteragent_name', models.CharField(max_length=255, verbose_name='legal entity')),
                ('counteragent_inn', models.CharField(max_length=12, verbose_name='INN')),
                ('request_fingerprint', models.CharField(blank=True, db_index=True, editable=False, max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated')),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='sender_name_groups', to='idgtl.idgtlaccount', verbose_name='i-dgtl account')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='created by')),
            ],
            options={
                'verbose_name': 'sender name for several operators',
                'verbose_name_plural': 'sender names for several operators',
                'ordering': ['-created_at'],
            },
        ),
        migrations.AddField(
            model_name='sendernameapplication',
            name='group',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='applications', to='sendernames.sendernamegroup', verbose_name='filed with several operators'),
        ),
        migrations.RunPython(grant_to_default_groups, migrations.RunPython.noop),
        migrations.RunPython(backfill_status_recorded, migrations.RunPython.noop),
    ]
