"""Which portal addresses b24sms may call, and the HTTP session that enforces it at connect time.

A portal address (``client_endpoint``) reaches us from outside: in an OAuth answer, in a ``302``
of a renamed portal. Before it is stored or called it must pass :func:`portal_url_refusal`:

* an ``http(s)`` URL whose authority is a plain ``host[:port]``: no userinfo (``user@``), no
  backslash, no whitespace or control characters, nothing two URL parsers read differently
  (``https://evil.example\\@acme.bitrix24.ru/rest/`` is read as ``acme.bitrix24.ru`` by
  ``urllib.parse`` and as ``evil.example`` by urllib3, which ``requests`` uses to connect);
* a host admitted by ``B24_ALLOWED_PORTAL_DOMAINS`` (empty: any host);
* ``https`` when ``B24_REQUIRE_HTTPS``.

And every connection to a portal goes through :func:`portal_session`, which resolves the host
once, refuses private, loopback, link-local and other special addresses (``requests-hardened``,
the IP filter Saleor uses for webhooks) and connects to the address it checked, so a DNS answer
that changes between the check and the connection cannot lead us inside. ``B24_PORTAL_IP_FILTER``
switches the filter off (an on-premise portal inside the integrator's own network);
``B24_PORTAL_ALLOW_LOOPBACK`` admits 127.0.0.0/8 and ::1 only (tests, the sandbox's fakes).

This module knows HTTP and settings, nothing of our models.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import InvalidIPAddress, get_ip_address
from urllib3.util import parse_url

AUTHORITY_PATTERN = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")  # host[:port], nothing else
FORBIDDEN_ANYWHERE = re.compile(r"[\x00-\x20\x7f\\]")  # controls, whitespace, backslash


def portal_domain_allowed(host: str) -> bool:
    """Whether B24_ALLOWED_PORTAL_DOMAINS admits this host (empty setting: any host).

    An entry with a leading dot (``.bitrix24.ru``) admits every host under it; one without
    (``crm.example.com``) admits exactly that host.
    """
    allowed = [entry.strip().lower() for entry in settings.B24_ALLOWED_PORTAL_DOMAINS if entry.strip()]
    if not allowed:
        return True
    host = host.lower().rstrip(".")
    return any(host.endswith(entry) if entry.startswith(".") else host == entry for entry in allowed)


def portal_url_refusal(url) -> str | None:
    """Why ``url`` may not become a portal address we call, or None when it may."""
    if not isinstance(url, str) or not url:
        return "not a URL"
    if FORBIDDEN_ANYWHERE.search(url):
        return "a URL with whitespace, control characters or a backslash"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL of a host"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "an address with a query or a fragment"
    if not AUTHORITY_PATTERN.fullmatch(parts.netloc):
        return "an address with credentials or characters a host cannot have"
    try:  # the parser requests connects with must read the same host and port
        connected = parse_url(url)
    except ValueError:
        return "not a valid URL"
    if (connected.host or "").lower() != parts.hostname.lower() or connected.port != port:
        return "an address URL parsers read differently"
    if not portal_domain_allowed(parts.hostname):
        return f"{parts.hostname} is not an allowed portal domain (B24_ALLOWED_PORTAL_DOMAINS)"
    if settings.B24_REQUIRE_HTTPS and parts.scheme != "https":
        return f"{parts.hostname} is not reached over https (B24_REQUIRE_HTTPS)"
    return None


def portal_session() -> requests.Session:
    """A session for calls to portals: private and special addresses refused at connect time."""
    if not settings.B24_PORTAL_IP_FILTER:
        return requests.Session()
    return HTTPSession(
        Config(
            ip_filter_enable=True,
            ip_filter_allow_loopback_ips=settings.B24_PORTAL_ALLOW_LOOPBACK,
            never_redirect=True,
            default_timeout=None,
        )
    )


def portal_address_refusal(url: str) -> str | None:
    """Why the host of ``url`` may not be called now (it resolves to a refused address), or None.

    The same rule as :func:`portal_session` applies at every connection; this asks once, ahead,
    so an install can be refused before anything is stored. A name that does not resolve is not
    refused here (a portal's DNS can fail for a moment): the connection will tell.
    """
    if not settings.B24_PORTAL_IP_FILTER:
        return None
    parts = urlsplit(url)
    try:
        get_ip_address(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            allow_loopback=settings.B24_PORTAL_ALLOW_LOOPBACK,
        )
    except InvalidIPAddress as exc:
        return f"{parts.hostname} resolves to a private or special address ({exc})"
    except (OSError, UnicodeError, ValueError):
        return None
    return None
