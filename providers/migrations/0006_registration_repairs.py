"""The portal heals itself: repairs recorded on registrations; what an installation's portal lacks and has bound.

Existing installations start with no bound events recorded, so beat binds ONAPPUNINSTALL and
ONAPPUPDATE on them at its next run (a re-bind of ONAPPUNINSTALL is confirmed with event.get).
"""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('providers', '0005_callback_inbox'),
    ]

    operations = [
        migrations.AddField(
            model_name='installation',
            name='lacks_sender_update',
            field=models.BooleanField(default=False, help_text='The portal does not know messageservice.sender.update: changes are pushed as delete + add.', verbose_name='lacks sender.update'),
        ),
        migrations.AddField(
            model_name='installation',
            name='bound_events',
            field=models.CharField(blank=True, max_length=200, verbose_name='bound events'),
        ),
        migrations.AddField(
            model_name='installation',
            name='events_bind_attempted_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='events last bound'),
        ),
        migrations.AddField(
            model_name='providerregistration',
            name='repaired_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='repaired'),
        ),
        migrations.AddField(
            model_name='providerregistration',
            name='repair_reason',
            field=models.CharField(blank=True, choices=[('app_update', 'Application updated (ONAPPUPDATE)'), ('reinstall', 'Application reinstalled'), ('drift', 'Missing on the portal (drift repair)')], max_length=16, verbose_name='repair reason'),
        ),
        migrations.AddField(
            model_name='providerregistration',
            name='repair_count',
            field=models.PositiveIntegerField(default=0, verbose_name='repairs'),
        ),
    ]
