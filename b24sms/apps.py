from axes import apps as axes_apps
from django.apps import AppConfig, apps
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class B24smsConfig(AppConfig):
    name = "b24sms"
    verbose_name = _("b24sms")

    def ready(self):
        # Imported here, not at the top: they need the app registry (models), which is ready only now.
        from b24sms import (
            checks,  # noqa: F401  (registers the deployment checks)
            tasks,  # noqa: F401  (registers beat's heartbeat task)
        )
        from b24sms.roles import ROLE_APPS, ensure_default_groups

        # post_migrate is sent only for apps with models (not this one): hook the last app of the roles.
        post_migrate.connect(
            ensure_default_groups,
            sender=apps.get_app_config(ROLE_APPS[-1]),
            dispatch_uid="b24sms.ensure_default_groups",
        )


class AdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with b24sms's site (b24sms/admin_site.py: model names in the case and gender
    each sentence needs). Named in INSTALLED_APPS; not this module's default (B24smsConfig is)."""

    default = False
    default_site = "b24sms.admin_site.AdminSite"


class AxesConfig(axes_apps.AppConfig):
    """django-axes (failed admin logins) under a name in the reader's language; its own has none ("Axes")."""

    default = False
    verbose_name = _("Admin logins")
