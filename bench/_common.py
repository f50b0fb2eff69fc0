"""Shared set-up for the messages benchmarks: a PostgreSQL bench database, Redis, Django."""

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "bench.intake_settings"
# The installation's application token (b24sms stores only its keyed hash): what the bench's HANDLER calls carry.
BENCH_APPLICATION_TOKEN = "bench-application-token"


def ensure_database(url: str):
    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(queue: str) -> tuple[str, str]:
    """Environment, database (migrated) and django.setup(); returns (DATABASE_URL, broker URL)."""
    sys.path.insert(0, str(ROOT))
    database_url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24sms_bench")
    broker_url = os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/6")
    if not database_url.startswith("postgres") or not broker_url.startswith("redis"):
        sys.exit("DATABASE_URL must be PostgreSQL and CELERY_BROKER_URL Redis")
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
        }
    )
    os.environ.setdefault("IDGTL_RATE_LIMIT_PER_SECOND", "0")  # the fake i-dgtl has no limit
    ensure_database(database_url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    import django

    django.setup()
    return database_url, broker_url


def drop_queue(broker_url: str, queue: str):
    import redis

    redis.Redis.from_url(broker_url).delete(queue)


def bench_rows(member_id: str, *, client_endpoint: str = "https://bench.bitrix24.test/rest/", **installation_fields):
    """A clean active installation ``member_id`` with provider 'bench' registered on it."""
    from providers.models import (
        BitrixApplication,
        Installation,
        Message,
        Provider,
        ProviderRegistration,
        RegistrationState,
    )

    Message.objects.filter(installation__member_id=member_id).delete()
    application, _ = BitrixApplication.objects.get_or_create(
        client_id=installation_fields.pop("client_id", "local.bench.1"),
        defaults={"name": "bench", "client_secret": installation_fields.pop("client_secret", "bench")},
    )
    defaults = {
        "domain": f"{member_id}.bitrix24.test",
        "client_endpoint": client_endpoint,
        "application_token": BENCH_APPLICATION_TOKEN,
        "state": "active",
        **installation_fields,
    }
    installation, _ = Installation.objects.update_or_create(
        application=application, member_id=member_id, defaults=defaults
    )
    provider, _ = Provider.objects.get_or_create(code="bench", defaults={"name": "bench", "sender_name": "Bench"})
    ProviderRegistration.objects.update_or_create(
        provider=provider, installation=installation, defaults={"state": RegistrationState.REGISTERED}
    )
    return installation, provider
