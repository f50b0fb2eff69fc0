"""GET /healthz: is the database reachable, the broker reachable, and has beat run recently?

200 with every check ok, 503 naming the failing parts otherwise::

    {"status": "fail", "failing": ["beat"], "checks": {"database": {"ok": true, "ms": 1.2}, ...}}

`?check=database` (repeatable) limits the run to the named checks (the web container's
healthcheck asks only for the database: the worker and beat have healthchecks of their own).
No authentication: load balancers call it, and anyone gets the status, the failing parts and each
check's ok and time. The details (error texts, the heartbeat's time, the transport) are for a staff
session or ``Authorization: Bearer $METRICS_TOKEN`` only; they are short and redacted.
"""

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from b24sms.celery import app as celery_app
from b24sms.ops_access import is_staff, metrics_token_presented
from b24sms.tasks import BEAT_HEARTBEAT_KEY
from common.logging import redact


class CheckFailed(Exception):
    pass


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def check_broker() -> dict:
    timeout = settings.HEALTHZ_BROKER_TIMEOUT
    conn = celery_app.connection_for_write(
        connect_timeout=timeout,
        transport_options={"socket_connect_timeout": timeout, "socket_timeout": timeout, "max_retries": 0},
    )
    try:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        conn.default_channel  # noqa: B018  (opens the channel: the Redis transport pings here)
    finally:
        conn.release()
    return {"transport": conn.transport_cls}


def check_beat() -> dict:
    value = cache.get(BEAT_HEARTBEAT_KEY)
    if not value:
        raise CheckFailed("beat has not run yet (no heartbeat recorded)")
    last = datetime.fromisoformat(value)
    age = (timezone.now() - last).total_seconds()
    if age > settings.HEALTHZ_BEAT_MAX_AGE:
        raise CheckFailed(f"last heartbeat {int(age)} s ago (limit {settings.HEALTHZ_BEAT_MAX_AGE} s)")
    return {"last_heartbeat": value, "age_seconds": round(age, 1)}


CHECKS = {"database": check_database, "broker": check_broker, "beat": check_beat}


def run_checks(names=None) -> dict:
    results = {}
    for name, check in CHECKS.items():
        if names and name not in names:
            continue
        started = time.monotonic()
        try:
            result = {"ok": True, **check()}
        except Exception as exc:  # every failure is reported, none is raised
            message = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
            result = {"ok": False, "error": redact(message)[:300]}
        result["ms"] = round((time.monotonic() - started) * 1000, 1)
        results[name] = result
    return results


def details_allowed(request) -> bool:
    return is_staff(request) or metrics_token_presented(request)


@never_cache
@require_GET
def healthz(request):
    names = [n for n in request.GET.getlist("check") if n in CHECKS]
    results = run_checks(names)
    if not details_allowed(request):
        results = {name: {"ok": r["ok"], "ms": r["ms"]} for name, r in results.items()}
    failing = [name for name, r in results.items() if not r["ok"]]
    body = {
        "status": "fail" if failing else "ok",
        "failing": failing,
        "checks": results,
        "time": timezone.now().isoformat(timespec="seconds"),
    }
    return JsonResponse(body, status=503 if failing else 200)


def beat_heartbeat_age() -> timedelta | None:
    value = cache.get(BEAT_HEARTBEAT_KEY)
    return (timezone.now() - datetime.fromisoformat(value)) if value else None
