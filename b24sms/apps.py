from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class B24smsConfig(AppConfig):
    name = "b24sms"
    verbose_name = _("b24sms")
