from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SendernamesConfig(AppConfig):
    name = "sendernames"
    verbose_name = _("Sender names")

    def ready(self):
        # Imported here, not at the top: it needs the app registry (models), which is ready only now.
        from sendernames import tasks  # noqa: F401  (registers the Celery tasks: services enqueue them by name)
