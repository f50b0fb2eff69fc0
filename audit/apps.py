from django.apps import AppConfig
from django.db.models.signals import pre_save
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = _("Audit trail")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported here, not at the top: they need the app registry (models), which is ready only now.
        from audit.middleware import entry_fill_request
        from audit.models import AuditLogEntry
        from audit.registry import register_tracked_models

        register_tracked_models()
        pre_save.connect(entry_fill_request, sender=AuditLogEntry, dispatch_uid="audit.entry_fill_request")
