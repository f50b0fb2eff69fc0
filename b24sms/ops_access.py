"""Who may read the operator endpoints' details (/metrics, /healthz): a staff session or the metrics token."""

import secrets

from django.conf import settings


def is_staff(request) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def metrics_token_presented(request) -> bool:
    """`Authorization: Bearer METRICS_TOKEN`, with METRICS_TOKEN set (also opens /healthz's details)."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    return bool(token) and header.startswith("Bearer ") and secrets.compare_digest(header[7:].encode(), token.encode())
