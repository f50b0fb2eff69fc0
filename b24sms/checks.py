"""System checks for a deployment: `manage.py check --deploy` names every unsafe production setting.

The deploy checks (tagged like Django's own security checks, so only `--deploy` runs them) apply
when DEBUG is off. Errors are what lets a stranger in or reads secrets; the docker-compose web
service refuses to start on any of them (`check --deploy --fail-level ERROR`). The address lists
are checked always: an entry that is not an address or network would be silently ignored.
"""

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.http.request import validate_host

from common.encryption import index_key_problem, keys_problem

# Keys that must never sign production sessions: base.py's development default and the Dockerfile's build key.
KNOWN_INSECURE_SECRET_KEYS = {
    "insecure-local-development-key-change-me-0123456789abcdef",
    "build-only",
}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1", ".localhost"}


@register(Tags.security)
def address_lists_check(app_configs, **kwargs):
    problems = []
    for name in ("TRUSTED_PROXIES", "METRICS_ALLOWED_NETWORKS", "IDGTL_CALLBACK_ALLOWED_IPS"):
        for entry in getattr(settings, name, []) or []:
            try:
                ipaddress.ip_network(str(entry).strip(), strict=False)
            except ValueError:
                problems.append(
                    Error(
                        f"{name} holds {entry!r}, which is not an IP address or network: it would be ignored.",
                        hint="Use addresses or CIDR networks such as 10.0.0.5 or 172.16.0.0/12.",
                        id="b24sms.E010",
                    )
                )
    return problems


@register(Tags.security)
def secrets_at_rest_check(app_configs, **kwargs):
    """Every run, not only --deploy: without its keys b24sms can neither store nor read a token or secret.
    `make run` and the tests make their own keys; production must be given them."""
    problems = []
    problem = keys_problem()
    if problem:
        problems.append(
            Error(
                f"{problem}: OAuth tokens, client secrets, i-dgtl keys and URL secrets are stored encrypted with it.",
                hint='Set FIELD_ENCRYPTION_KEYS to a Fernet key: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())" (several, comma-separated, newest first, while rotating).',
                id="b24sms.E005",
            )
        )
    problem = index_key_problem()
    if problem:
        problems.append(
            Error(
                f"{problem}: the HANDLER and callback secrets are found, and application tokens checked, by their "
                "HMAC with this key.",
                hint='Set SECRET_INDEX_KEY to a long random string (python -c "import secrets; '
                'print(secrets.token_urlsafe(48))") and never change it: the stored hashes depend on it.',
                id="b24sms.E006",
            )
        )
    return problems


@register(Tags.security, deploy=True)
def deployment_check(app_configs, **kwargs):
    if settings.DEBUG:
        return []  # Django's own security.W018 says DEBUG must be off; the rest is for production
    problems = []
    if not settings.METRICS_TOKEN:
        problems.append(
            Error(
                "METRICS_TOKEN is not set: /metrics then admits clients by address, and behind a reverse proxy "
                "every client has the proxy's private address.",
                hint="Set METRICS_TOKEN to a long random string; scrape with Authorization: Bearer <token>.",
                id="b24sms.E001",
            )
        )
    if settings.SECRET_KEY in KNOWN_INSECURE_SECRET_KEYS:
        problems.append(
            Error(
                "SECRET_KEY is a published development or build key: anyone can forge sessions and signatures.",
                hint="Set DJANGO_SECRET_KEY to a long random string of your own.",
                id="b24sms.E002",
            )
        )
    problems += _allowed_hosts_problems()
    problems += _public_base_url_problems()
    if not settings.B24_REQUIRE_HTTPS:
        problems.append(
            Warning(
                "B24_REQUIRE_HTTPS is off: the install endpoint accepts portals that speak plain http, so their "
                "tokens travel in clear text.",
                hint="Production settings set it; do not turn it off.",
                id="b24sms.W003",
            )
        )
    if not settings.B24_ALLOWED_PORTAL_DOMAINS:
        problems.append(
            Warning(
                "B24_ALLOWED_PORTAL_DOMAINS is empty: the install endpoint accepts a portal on any host.",
                hint="List the portals' domain suffixes, e.g. .bitrix24.ru,.bitrix24.com (an on-premise portal: "
                "its own host).",
                id="b24sms.W004",
            )
        )
    return problems


def _allowed_hosts_problems() -> list:
    hosts = [str(host).strip() for host in settings.ALLOWED_HOSTS]
    if "*" in hosts:
        return [
            Error(
                "ALLOWED_HOSTS contains '*': any Host header is accepted (password-reset links and absolute URLs "
                "can be made to point anywhere).",
                hint="List this server's public host names.",
                id="b24sms.E003",
            )
        ]
    if not hosts or all(host.lower() in LOCAL_HOSTS for host in hosts):
        return [
            Warning(
                "ALLOWED_HOSTS names only local hosts: Bitrix24 and i-dgtl cannot reach b24sms by its public name, "
                "and a remote client that sends Host: localhost is let in.",
                hint="Set DJANGO_ALLOWED_HOSTS to the public host name of PUBLIC_BASE_URL.",
                id="b24sms.W001",
            )
        ]
    host = urlsplit(settings.PUBLIC_BASE_URL or "").hostname
    if host and not validate_host(host, hosts):
        return [
            Warning(
                f"PUBLIC_BASE_URL's host {host!r} is not in ALLOWED_HOSTS: every HANDLER call and i-dgtl callback "
                "would be refused with 400.",
                hint="Add it to DJANGO_ALLOWED_HOSTS.",
                id="b24sms.W002",
            )
        ]
    return []


def _public_base_url_problems() -> list:
    if urlsplit(settings.PUBLIC_BASE_URL or "").scheme == "https":
        return []
    return [
        Error(
            f"PUBLIC_BASE_URL {settings.PUBLIC_BASE_URL!r} is not https: the HANDLER and callback URLs carry "
            "their secrets, and Bitrix24 posts SMS and tokens to them, in clear text.",
            hint="Serve b24sms over https behind a reverse proxy and set PUBLIC_BASE_URL=https://<host>.",
            id="b24sms.E004",
        )
    ]
