from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = _("Bitrix24 SMS providers")

    def ready(self):
        # Imported here, not at the top: they need the app registry (models), which is ready only now.
        from providers import (
            checks,  # noqa: F401  (registers system checks)
            tasks,  # noqa: F401  (registers the Celery tasks: services enqueue them by name)
        )
        from providers.services.installations import ensure_default_application_after_migrate

        post_migrate.connect(
            ensure_default_application_after_migrate, sender=self, dispatch_uid="providers.ensure_default_application"
        )
