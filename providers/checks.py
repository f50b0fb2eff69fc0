"""System checks: `manage.py check` tells an operator what Bitrix24 configuration is missing or wrong."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def bitrix24_settings_check(app_configs, **kwargs):
    problems = []
    if not settings.SANDBOX and not settings.B24_CLIENT_ID.strip():
        problems.append(
            Warning(
                "B24_CLIENT_ID is not set: there is no default Bitrix24 application, so /b24/install/ answers 404 "
                "unless an application is added in the admin.",
                id="providers.W001",
            )
        )
    if not settings.SANDBOX and not settings.B24_CLIENT_SECRET:
        problems.append(
            Warning(
                "B24_CLIENT_SECRET is not set: access tokens of the default application cannot be refreshed "
                "unless its client_secret is saved in the admin.",
                id="providers.W002",
            )
        )
    problems += public_base_url_problems(settings.PUBLIC_BASE_URL)
    return problems


def public_base_url_problems(url: str) -> list:
    """Bitrix24 refuses a HANDLER whose host has no dot; production must be reachable over https."""
    try:
        parts = urlsplit(url or "")
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            Error(
                f"PUBLIC_BASE_URL {url!r} is not an http(s) URL with a host.",
                hint="Set it to how Bitrix24 and i-dgtl reach b24sms, e.g. https://sms.example.com.",
                id="providers.E001",
            )
        ]
    problems = []
    if "." not in parts.hostname and not settings.SANDBOX:
        problems.append(
            Warning(
                f"PUBLIC_BASE_URL host {parts.hostname!r} has no dot: Bitrix24 refuses such HANDLER URLs "
                "(messageservice.sender.add).",
                hint="Use the public domain name of this server.",
                id="providers.W003",
            )
        )
    if settings.B24_REQUIRE_HTTPS and parts.scheme != "https":
        problems.append(
            Warning(
                "PUBLIC_BASE_URL is not https under production settings: Bitrix24 and i-dgtl would post SMS, "
                "tokens and delivery reports in clear text.",
                id="providers.W004",
            )
        )
    return problems
