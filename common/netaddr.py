"""The client's address: REMOTE_ADDR, or, behind trusted reverse proxies, the address they forwarded.

``X-Forwarded-For`` is written by whoever sends the request, so it is believed only as far as it was
written by a proxy listed in ``TRUSTED_PROXIES`` (addresses or networks). Starting from REMOTE_ADDR
(the peer that connected) and, while that address is a trusted proxy, stepping one entry to the
left in X-Forwarded-For (the address that proxy got the request from), the first address that is
not a trusted proxy is the client. Whatever stands further left was written by the client itself
and is ignored. With TRUSTED_PROXIES empty (the default) X-Forwarded-For is never read.

Every allowlist by address (``/metrics`` networks, ``IDGTL_CALLBACK_ALLOWED_IPS``) asks here.
django-ipware was considered: it reads some 30 headers in an order of its own and matches proxies
by address prefix; an allowlist wants this one strict rule instead.
"""

import ipaddress
from functools import lru_cache

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> Address | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:443``), or None."""
    text = (text or "").strip().strip('"')
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=32)
def networks(entries: tuple) -> tuple:
    """The valid networks among the entries (an invalid one is reported by `manage.py check`)."""
    parsed = []
    for entry in entries:
        try:
            parsed.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            continue
    return tuple(parsed)


def address_in(address: Address | str | None, entries) -> bool:
    """Whether the address is in one of the networks (addresses or CIDRs) listed."""
    if isinstance(address, str):
        address = parse_address(address)
    if address is None:
        return False
    return any(address.version == network.version and address in network for network in networks(tuple(entries)))


def client_ip(request) -> str | None:
    """The client's address as a string, or None when it cannot be told (a malformed forwarded entry)."""
    address = parse_address(request.META.get("REMOTE_ADDR", ""))
    trusted = tuple(getattr(settings, "TRUSTED_PROXIES", ()) or ())
    if address is None or not trusted:
        return str(address) if address is not None else None
    forwarded = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    while address_in(address, trusted) and forwarded:
        address = parse_address(forwarded.pop())
        if address is None:
            return None  # a trusted proxy forwarded something that is not an address: trust nothing
    return str(address)


def ratelimit_ip(request) -> str:
    """django-ratelimit's client address (RATELIMIT_IP_META_KEY): the same rule, never empty."""
    return client_ip(request) or request.META.get("REMOTE_ADDR") or "0.0.0.0"  # noqa: S104 (a key, not a bind)
