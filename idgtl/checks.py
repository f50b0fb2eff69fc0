"""System checks: `manage.py check` tells an operator what i-dgtl configuration is missing."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def idgtl_settings_check(app_configs, **kwargs):
    problems = []
    if not settings.SANDBOX and not settings.IDGTL_SENDER_NAMES_TOKEN:
        problems.append(
            Warning(
                "IDGTL_SENDER_NAMES_TOKEN is not set: the default i-dgtl account cannot submit sender names "
                "unless a key is saved in the admin.",
                id="idgtl.W001",
            )
        )
    if not settings.SANDBOX and not settings.IDGTL_MESSAGES_TOKEN:
        problems.append(
            Warning(
                "IDGTL_MESSAGES_TOKEN is not set: the default i-dgtl account cannot send SMS "
                "unless a key is saved in the admin.",
                id="idgtl.W002",
            )
        )
    return problems
