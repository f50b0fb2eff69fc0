from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SendernamesConfig(AppConfig):
    name = "sendernames"
    verbose_name = _("Sender names")
