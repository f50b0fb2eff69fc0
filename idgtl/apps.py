from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class IdgtlConfig(AppConfig):
    name = "idgtl"
    verbose_name = _("i-dgtl")

    def ready(self):
        # Imported here, not at the top: they need the app registry (models), which is ready only now.
        from idgtl import (
            checks,  # noqa: F401  (registers system checks)
            tasks,  # noqa: F401  (registers the Celery tasks: services enqueue them by name)
        )
        from idgtl.services import ensure_default_account_after_migrate

        post_migrate.connect(ensure_default_account_after_migrate, sender=self)
