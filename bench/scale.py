"""Scale: 10,000,000 messages over 100 portals and 180 days, side by side with an empty database.

Two PostgreSQL databases migrated with the project's migrations: ``b24sms_scale`` filled with SQL
(``INSERT … SELECT`` over ``generate_series``, indexes dropped during the fill and built again after it)
and ``b24sms_scale_empty`` with the same portals, providers, tariff and admin user but no message. The
same measurements run on both, in the same run, and are printed side by side:

1. pages, through Django's test client logged in as a superuser (median of ``--repeats`` after one
   warm-up, queries counted with CaptureQueriesContext): the messages changelist (first page; filtered
   by the busiest portal and a state; a search by a phone number that exists), the start page, the
   usage API for a month (one portal, all portals), the XLSX statement of the busiest portal's month;
2. HANDLER intake: gunicorn per database (bench/handler_intake.py's load generator), rounds alternating
   the trivial view and the HANDLER on either database; the ratio handler/trivial of each database,
   and the one of the full database over the one of the empty database (goal: >= 0.95);
3. retention: rows anonymised per second by ``messages_anonymise_old`` (batches as in production), alone
   (back to back, and paced by MESSAGES_RETENTION_PAUSE_FACTOR as in production) and while the HANDLER takes
   load (paced), and the HANDLER's rate with it over without it (goal: >= 0.9), rounds alternating.

The filled database is kept: ``--reuse`` measures it again without filling (it is filled when it holds
no fill of the requested size). Without ``--reuse`` both databases are dropped and made again.

    .venv/bin/python bench/scale.py [--reuse] [--messages 10000000] [--portals 100] [--days 180]
        [--database postgres://postgres@127.0.0.1:5432/b24sms_scale]
        [--empty-database postgres://postgres@127.0.0.1:5432/b24sms_scale_empty]
        [--redis redis://127.0.0.1:6379/13] [--repeats 7] [--seconds 10] [--rounds 3] [--retention-days 170]

What the fill writes (``fill_messages``): messages numbered 1..N, received one after the other over
``--days`` days up to the fill (ids follow time, as in production); the portal of each is drawn with a
skew (portal 0 gets about 1/sqrt(portals) of them: the busiest one, ~1M of 10M), the provider (3, each
with its sender name) uniformly; 70 % from CRM cards, 30 % from robots; four texts (Cyrillic 1 and 3
parts UCS-2, Latin 1 and 2 parts GSM-7, parts as providers/sms_parts.py counts them); destinations from
a pool of 1,000,000 numbers (so one number has about 10 messages); states: the last 20 received
(waiting), within the last 2 days 5 % sent (no final status yet), otherwise 5 % failed (i-dgtl
``unsent``), 4 % undelivered, the rest delivered, with the times of each step. Every 10th message has
its timeline (received, sending, sent, final) and, when final, its accepted status report; the others
have none (a timeline is per-message and read only on a message's page). UsageDay rollups are computed
from the messages with one ``INSERT … SELECT … GROUP BY``. Then VACUUM ANALYZE. With ``--days 180`` and
``--retention-days 170`` the oldest ~10 days of final messages are due for retention.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/b24sms_scale"
DEFAULT_EMPTY = "postgres://postgres@127.0.0.1:5432/b24sms_scale_empty"
QUEUE = "bench-scale"
SETTINGS = "bench.intake_settings"
PORTAL_DOMAIN = "scale-{:03d}.bitrix24.test"
PROVIDERS = (("scale_a", "ACMESHOP"), ("scale_b", "ACME-INFO"), ("scale_c", "ACME"))
ADMIN = "scale-admin"
# The texts of the fill, with a 4-digit code in place of {code}: (text, encoding, parts) are checked
# against providers/sms_parts.py when the fill starts.
TEXTS = (
    (0.50, "Ваш код подтверждения: {code}"),
    (0.75, "Your code: {code}. Do not share it."),
    (
        0.90,
        "Здравствуйте! Ваш заказ №{code} собран и передан в службу доставки. Курьер позвонит за час до "
        "приезда. Отследить заказ можно в личном кабинете магазина.",
    ),
    (
        1.00,
        "Hello! Your order {code} has been packed and handed over to the courier service. The courier will call "
        "you an hour before arrival. You can track the order in your account at our shop; reply STOP to opt out "
        "of these messages. Thank you!",
    ),
)
CHUNK = 1_000_000
TIMELINE_EVERY = 10


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def database_name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


def admin_url(url: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/postgres"))


def recreate_database(url: str) -> None:
    import psycopg

    name = database_name(url)
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


# --- children: one process per database and task --------------------------------------------------------------
def child_env(database_url: str, redis_url: str) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": redis_url,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "CELERY_TASK_DEFAULT_QUEUE": QUEUE,
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "IDGTL_RATE_LIMIT_PER_SECOND": "0",
        }
    )
    return env


def run_child(role: str, database_url: str, redis_url: str, **options) -> dict:
    """Run ``--child role`` on one database; its last stdout line is JSON."""
    command = [sys.executable, str(Path(__file__)), "--child", role, "--child-options", json.dumps(options)]
    done = subprocess.run(command, cwd=ROOT, env=child_env(database_url, redis_url), stdout=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"{role} on {database_name(database_url)} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def django_setup(*, migrate: bool) -> None:
    if migrate:
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode:
            sys.exit(done.stderr)
    import django

    django.setup()


# --- prepare: portals, providers, the fill ------------------------------------------------------------------------
def seed_rows(portals: int) -> dict:
    """The portals, providers, registrations, a default tariff, the admin user and the HANDLER's bench portal
    (the same in both databases); returns their ids."""
    from datetime import date
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from bench._common import BENCH_APPLICATION_TOKEN, bench_rows
    from providers.models import (
        BitrixApplication,
        Installation,
        Provider,
        ProviderRegistration,
        RegistrationState,
        Tariff,
    )

    application, _ = BitrixApplication.objects.get_or_create(
        client_id="local.scale.1", defaults={"name": "scale", "client_secret": "scale"}
    )
    installations = []
    for n in range(portals):
        domain = PORTAL_DOMAIN.format(n)
        installation, _ = Installation.objects.get_or_create(
            application=application,
            member_id=f"scale-member-{n:03d}",
            defaults={"domain": domain, "client_endpoint": f"https://{domain}/rest/", "application_token": f"t{n}"},
        )
        installations.append(installation)
    providers = []
    for code, sender_name in PROVIDERS:
        provider, _ = Provider.objects.get_or_create(code=code, defaults={"name": code, "sender_name": sender_name})
        providers.append(provider)
        for installation in installations:
            ProviderRegistration.objects.get_or_create(
                provider=provider, installation=installation, defaults={"state": RegistrationState.REGISTERED}
            )
    if not Tariff.objects.filter(installation=None).exists():
        Tariff.objects.create(price_per_part=Decimal("2.5000"), valid_from=date(2020, 1, 1), comment="scale bench")
    user_model = get_user_model()
    if not user_model.objects.filter(username=ADMIN).exists():
        user_model.objects.create_superuser(ADMIN, "scale@example.test", "scale-bench-password")
    bench_installation, _provider = bench_rows("bench-member", domain="bench.bitrix24.test")
    return {
        "portals": [i.pk for i in installations],
        "providers": [p.pk for p in providers],
        "sender_names": [p.sender_name for p in providers],
        "bench_installation": bench_installation.pk,
        "handler_path": f"/b24/handler/{bench_installation.handler_secret}/",
        "application_token": BENCH_APPLICATION_TOKEN,
    }  # b24sms keeps only its keyed hash


def clear_bench_messages(installation_id: int) -> None:
    """The messages the HANDLER load stored in an earlier run (bench portal only), with their rows."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("providers_messagestatuschange", "providers_statusreport"):
            cursor.execute(
                f"DELETE FROM {table} WHERE message_id IN "
                "(SELECT id FROM providers_message WHERE installation_id = %s)",
                [installation_id],
            )
        cursor.execute("DELETE FROM providers_usageday WHERE installation_id = %s", [installation_id])
        cursor.execute("DELETE FROM providers_message WHERE installation_id = %s", [installation_id])


def _text_cases() -> list[tuple[float, str, str, int]]:
    from providers.sms_parts import sms_parts

    cases = []
    for upper, template in TEXTS:
        counted = sms_parts(template.format(code="1234"))
        cases.append((upper, template, counted.encoding, counted.parts))
    return cases


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def fill_messages(*, database_url: str, ids: dict, messages: int, days: int) -> None:
    """The fill: see the module's docstring. Indexes and unique constraints of the three message tables are
    dropped during it and built again after it; foreign keys are not checked (session_replication_role)."""
    import psycopg
    from django.conf import settings

    tables = ("providers_message", "providers_messagestatuschange", "providers_statusreport")
    text_sql, encoding_sql, parts_sql = "CASE", "CASE", "CASE"
    for upper, template, encoding, parts in _text_cases():
        condition = f" WHEN g.u_text < {upper} THEN "
        text_sql += condition + "replace(" + _sql_text(template) + ", '{code}', g.code)"
        encoding_sql += condition + _sql_text(encoding)
        parts_sql += condition + str(parts)
    text_sql, encoding_sql, parts_sql = (s + " END" for s in (text_sql, encoding_sql, parts_sql))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET session_replication_role = replica")  # no foreign-key triggers for the fill's rows
        saved = []
        for table in tables:
            for name, definition in conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'u'",
                (table,),
            ).fetchall():
                saved.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
                conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for name, definition in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
                "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p')",
                (table, table),
            ).fetchall():
                saved.append(definition)
                conn.execute(f'DROP INDEX "{name}"')
        now = conn.execute("SELECT now()").fetchone()[0]
        start = now - timedelta(days=days)
        span = days * 86400.0
        params = {
            "portals": ids["portals"],
            "providers": ids["providers"],
            "sender_names": ids["sender_names"],
            "n_portals": len(ids["portals"]),
            "total": messages,
            "start": start,
            "span": span,
            "now": now,
        }
        insert = f"""
            INSERT INTO providers_message (message_id, module_id, bindings, workflow_id, document_id, document_type,
                author_user_id, message_to, destination, text, sender_name, bitrix_sent_at, state, idgtl_message_uuid,
                idgtl_status, idgtl_status_at, error_code, error_message, send_attempts, sending_started_at, sent_at,
                final_at, next_check_at, created_at, updated_at, installation_id, provider_id, anonymised_at, encoding,
                parts)
            SELECT g.message_id,
                CASE WHEN g.crm THEN 'crm' ELSE 'bizproc' END,
                CASE WHEN g.crm THEN jsonb_build_array(jsonb_build_object('OWNER_TYPE_ID', '3', 'OWNER_ID',
                    (g.h2 %% 100000)::text)) ELSE '[]'::jsonb END,
                CASE WHEN g.crm THEN '' ELSE substr(g.message_id, 1, 14) || '.' || substr(g.message_id, 15, 8) END,
                CASE WHEN g.crm THEN '[]'::jsonb ELSE jsonb_build_array('crm', 'CCrmDocumentLead',
                    'LEAD_' || (g.h2 %% 100000)::text) END,
                CASE WHEN g.crm THEN '[]'::jsonb ELSE '["crm", "CCrmDocumentLead", "LEAD"]'::jsonb END,
                ((g.h2 %% 50) + 1)::text,
                '+' || g.destination, g.destination, {text_sql},
                (%(sender_names)s::text[])[g.provider + 1], g.created_at, g.state,
                CASE WHEN g.state = 'received' THEN '' ELSE
                    substr(g.uuid, 1, 8) || '-' || substr(g.uuid, 9, 4) || '-' || substr(g.uuid, 13, 4) || '-' ||
                    substr(g.uuid, 17, 4) || '-' || substr(g.uuid, 21, 12) END,
                CASE g.state WHEN 'failed' THEN 'unsent' WHEN 'received' THEN '' ELSE g.state END,
                CASE WHEN g.state = 'received' THEN NULL WHEN g.state = 'sent' THEN g.created_at + interval '2 s'
                    ELSE g.created_at + interval '30 s' END,
                CASE WHEN g.state = 'failed' THEN 8 END,
                CASE WHEN g.state = 'failed' THEN 'i-dgtl status: unsent' ELSE '' END,
                CASE WHEN g.state = 'received' THEN 0 ELSE 1 END,
                CASE WHEN g.state = 'received' THEN NULL ELSE g.created_at + interval '1 s' END,
                CASE WHEN g.state = 'received' THEN NULL ELSE g.created_at + interval '2 s' END,
                CASE WHEN g.state IN ('delivered', 'undelivered', 'failed') THEN g.created_at + interval '30 s' END,
                CASE WHEN g.state = 'sent' THEN g.created_at + interval '2 min' END,
                g.created_at,
                CASE WHEN g.state IN ('delivered', 'undelivered', 'failed') THEN g.created_at + interval '30 s'
                    ELSE g.created_at END,
                (%(portals)s::bigint[])[g.portal + 1], (%(providers)s::bigint[])[g.provider + 1], NULL,
                {encoding_sql}, {parts_sql}
            FROM (
                SELECT h.*,
                    least(floor(%(n_portals)s * power(h.u1, 2)), %(n_portals)s - 1)::int AS portal,
                    (h.h3 %% 3)::int AS provider,
                    h.u4 < 0.7 AS crm,
                    lpad((h.h2 %% 10000)::text, 4, '0') AS code,
                    '7999' || lpad((h.h3 %% 1000000)::text, 7, '0') AS destination,
                    CASE WHEN h.n > %(total)s - 20 THEN 'received'
                         WHEN h.created_at > %(now)s - interval '2 days' AND h.u5 < 0.05 THEN 'sent'
                         WHEN h.u5 < 0.05 THEN 'failed'
                         WHEN h.u5 < 0.09 THEN 'undelivered'
                         ELSE 'delivered' END AS state
                FROM (
                    SELECT n, m AS message_id, md5('uuid' || n) AS uuid,
                        ('x' || substr(m, 1, 8))::bit(32)::bigint / 4294967296.0 AS u1,
                        ('x' || substr(m, 9, 8))::bit(32)::bigint AS h2,
                        ('x' || substr(m, 17, 8))::bit(32)::bigint AS h3,
                        ('x' || substr(m, 25, 4))::bit(16)::int / 65536.0 AS u4,
                        ('x' || substr(m, 29, 4))::bit(16)::int / 65536.0 AS u5,
                        ('x' || substr(m, 13, 4))::bit(16)::int / 65536.0 AS u_text,
                        %(start)s::timestamptz + make_interval(secs => (n - 0.5) / %(total)s * %(span)s) AS created_at
                    FROM (SELECT n, md5('scale' || n) AS m
                          FROM generate_series(%(first)s::bigint, %(last)s::bigint) n) s
                ) h
            ) g
        """
        began = time.monotonic()
        for first in range(1, messages + 1, CHUNK):
            last = min(messages, first + CHUNK - 1)
            low = conn.execute("SELECT coalesce(max(id), 0) FROM providers_message").fetchone()[0]
            conn.execute(insert, {**params, "first": first, "last": last})
            conn.execute(
                f"""
                INSERT INTO providers_messagestatuschange (message_id, previous_state, state, idgtl_status, source,
                    detail, created_at)
                SELECT m.id, s.previous, CASE WHEN s.step = 4 THEN m.state ELSE s.state END,
                    CASE WHEN s.step = 4 THEN m.idgtl_status ELSE s.idgtl_status END, s.source, '',
                    m.created_at + s.delay
                FROM providers_message m CROSS JOIN (VALUES
                    (1, '', 'received', '', 'handler', interval '0 s'),
                    (2, 'received', 'sending', '', 'send', interval '1 s'),
                    (3, 'sending', 'sent', 'sent', 'send', interval '2 s'),
                    (4, 'sent', '', '', 'callback', interval '30 s')) AS s(step, previous, state, idgtl_status, source,
                                                                        delay)
                WHERE m.id > %(low)s AND m.id %% {TIMELINE_EVERY} = 0
                  AND (s.step = 1 OR (s.step IN (2, 3) AND m.state <> 'received')
                       OR (s.step = 4 AND m.state IN ('delivered', 'undelivered', 'failed')))
            """,
                {"low": low},
            )
            conn.execute(
                f"""
                INSERT INTO providers_statusreport (message_id, status, state, attempts, last_error, next_attempt_at,
                    created_at, reported_at)
                SELECT id, state, 'accepted', 1, '', NULL, final_at, final_at + interval '1 s' FROM providers_message
                WHERE id > %(low)s AND id %% {TIMELINE_EVERY} = 0 AND state IN ('delivered', 'undelivered', 'failed')
            """,
                {"low": low},
            )
            print(f"  {last:,} messages ({time.monotonic() - began:.0f} s)", flush=True)
        conn.execute(
            """
            INSERT INTO providers_usageday (installation_id, day, provider_id, sender_name, state, messages, parts)
            SELECT installation_id, (created_at AT TIME ZONE %(zone)s)::date, provider_id, sender_name, state,
                count(*), sum(parts)
            FROM providers_message WHERE state <> 'received'
            GROUP BY 1, 2, 3, 4, 5
        """,
            {"zone": settings.USAGE_TIME_ZONE},
        )
        print(f"  rollups ({time.monotonic() - began:.0f} s)", flush=True)
        for statement in saved:
            conn.execute(statement)
        conn.execute("SET session_replication_role = DEFAULT")
        print(f"  indexes ({time.monotonic() - began:.0f} s)", flush=True)
        for table in (*tables, "providers_usageday"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
        print(f"  vacuum analyze ({time.monotonic() - began:.0f} s)", flush=True)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_scale_fill (messages bigint, portals int, days int, "
            "filled_at timestamptz, seconds float)"
        )
        conn.execute(
            "INSERT INTO bench_scale_fill VALUES (%s, %s, %s, now(), %s)",
            (messages, len(ids["portals"]), days, time.monotonic() - began),
        )


def filled(database_url: str) -> tuple | None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('bench_scale_fill')").fetchone()[0] is None:
            return None
        return conn.execute(
            "SELECT messages, portals, days, filled_at, seconds FROM bench_scale_fill ORDER BY filled_at DESC LIMIT 1"
        ).fetchone()


def child_prepare(options: dict) -> dict:
    database_url = os.environ["DATABASE_URL"]
    django_setup(migrate=True)
    ids = seed_rows(options["portals"])
    clear_bench_messages(ids["bench_installation"])
    fill = filled(database_url)
    if options["fill"] and fill is None:
        from providers.models import Message

        if Message.objects.exists():
            sys.exit(f"{database_name(database_url)} holds messages but no fill of this bench: drop it first")
        print(
            f"filling {database_name(database_url)}: {options['messages']:,} messages, {options['portals']} portals, "
            f"{options['days']} days",
            flush=True,
        )
        fill_messages(database_url=database_url, ids=ids, messages=options["messages"], days=options["days"])
        fill = filled(database_url)
    from django.db import connection
    from django.db.models import Sum

    from providers.models import UsageDay

    busiest = (
        UsageDay.objects.order_by()
        .values("installation_id")
        .annotate(n=Sum("messages"))
        .order_by("-n")
        .values_list("installation_id", flat=True)
        .first()
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'providers_message'")
        estimate = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
        # A number with messages: the destination of a message in the middle of the table (by id).
        cursor.execute(
            "SELECT destination FROM providers_message WHERE id >= (SELECT max(id) / 2 FROM "
            "providers_message) AND destination <> '' ORDER BY id LIMIT 1"
        )
        row = cursor.fetchone()
    return {
        **ids,
        "busiest": busiest,
        "number": row[0] if row else None,
        "estimated_messages": max(estimate, 0),
        "size": size,
        "fill": [str(v) for v in fill] if fill else None,
    }


# --- pages ----------------------------------------------------------------------------------------------------------
def child_pages(options: dict) -> dict:
    django_setup(migrate=False)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from providers.models import Installation

    busiest = Installation.objects.get(domain=options["busiest_domain"]).pk
    month_first, month_last = options["month"]
    number = options["number"]
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(get_user_model().objects.get(username=ADMIN))
    pages = [
        ("messages: first page", "/admin/providers/message/", None),
        (
            "messages: portal + failed",
            f"/admin/providers/message/?installation__id__exact={busiest}&state__exact=failed",
            None,
        ),
        (
            "messages: portal + delivered",
            f"/admin/providers/message/?installation__id__exact={busiest}&state__exact=delivered",
            None,
        ),
        (
            "messages: search by number",
            "/admin/providers/message/?"
            + urllib.parse.urlencode({"q": f"+{number[0]} {number[1:4]} {number[4:7]}-{number[7:9]}-{number[9:]}"}),
            number,
        ),
        ("start page", "/admin/", None),
        (
            "usage API, one portal, a month",
            f"/api/portals/{busiest}/usage/?date_from={month_first}&date_to={month_last}&group_by=day",
            None,
        ),
        (
            "usage API, all portals, a month",
            f"/api/usage/?date_from={month_first}&date_to={month_last}&group_by=month",
            None,
        ),
        (
            "statement XLSX, busiest portal",
            f"/api/portals/{busiest}/statement/?month={month_first[:7]}&format=xlsx",
            None,
        ),
    ]
    results = {}
    for label, url, must_show in pages:
        timings, queries = [], set()
        for attempt in range(options["repeats"] + 1):
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                response = client.get(url)
                elapsed = time.perf_counter() - began
            if response.status_code != 200:
                sys.exit(f"{label}: {url} answered {response.status_code}")
            if attempt:  # the first one warms caches up
                timings.append(elapsed * 1000)
                queries.add(len(captured))
        body = response.content
        hits = None
        if must_show is not None:
            hits = body.decode().count(f">{must_show}<")
        slowest = max(captured.captured_queries, key=lambda q: float(q["time"]))
        results[label] = {
            "ms": statistics.median(timings),
            "min_ms": min(timings),
            "queries": sorted(queries),
            "bytes": len(body),
            "hits": hits,
            "url": url,
            "slowest_query": {"ms": float(slowest["time"]) * 1000, "sql": slowest["sql"][:300]},
        }
    return results


# --- retention ------------------------------------------------------------------------------------------------------
def child_retention(options: dict) -> dict:
    """Retention as beat runs it, for ``seconds`` (``pause_factor``: None for MESSAGES_RETENTION_PAUSE_FACTOR, 0 for
    batches back to back); waits for a line on stdin before it starts."""
    django_setup(migrate=False)
    from providers.services.retention import messages_anonymise_old

    print("ready", flush=True)
    sys.stdin.readline()
    began = time.monotonic()
    rows = messages_anonymise_old(
        days=options["days"], time_budget=options["seconds"], pause_factor=options.get("pause_factor")
    )
    # Over the whole window: a paced run ends before it when the next pause would pass its budget.
    elapsed = max(time.monotonic() - began, options["seconds"])
    return {"rows": rows, "seconds": elapsed}


class Retention:
    """A retention child started ahead (Django set up) and released by ``go()``."""

    def __init__(self, database_url: str, redis_url: str, **options):
        command = [sys.executable, str(Path(__file__)), "--child", "retention", "--child-options", json.dumps(options)]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=child_env(database_url, redis_url),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def go(self):
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self) -> dict:
        out, _err = self.process.communicate(timeout=600)
        return json.loads(out.strip().splitlines()[-1])


# --- intake -----------------------------------------------------------------------------------------------------
class Gunicorn:
    """gunicorn serving one database. Its PostgreSQL connections carry ``application_name`` (PGAPPNAME) and are
    kept for the whole run (DATABASE_CONN_MAX_AGE), so the CPU of the backends that serve it can be read."""

    def __init__(self, name: str, database_url: str, redis_url: str, workers: int):
        from bench.handler_intake import free_port

        self.port = free_port()
        self.application_name = f"b24sms-scale-{name}"
        self.admin_url = admin_url(database_url)
        env = {
            **child_env(database_url, redis_url),
            "PGAPPNAME": self.application_name,
            "DATABASE_CONN_MAX_AGE": "3600",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "b24sms.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--log-level",
                "warning",
                "--backlog",
                "2048",
            ],
            cwd=ROOT,
            env=env,
        )

    def cpu(self) -> float:
        """CPU seconds used so far by gunicorn (master, workers) and the PostgreSQL backends serving it."""
        import psycopg

        from bench.handler_intake import _process_cpu

        pids = [self.process.pid]
        for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == self.process.pid:
                        pids.append(pid)
            except OSError:
                continue
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            pids += [
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.application_name,)
                )
            ]
        return sum(_process_cpu(pid) for pid in pids)

    def wait(self):
        import socket

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        sys.exit("gunicorn did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def measure_intake(args, info: dict) -> dict:
    """Alternating rounds: trivial view and HANDLER on each database; then HANDLER on the full database alone
    and with retention running."""
    from bench.handler_intake import body_template, load

    servers = {
        name: Gunicorn(name, url, args.redis, args.workers)
        for name, url in (("empty", args.empty_database), ("full", args.database))
    }
    outcome = {
        "empty": {"trivial": [], "handler": []},
        "full": {"trivial": [], "handler": []},
        "retention": {"alone": [], "with": [], "rows_per_s": []},
    }
    try:
        for server in servers.values():
            server.wait()
        templates = {name: body_template(info[name]["application_token"]) for name in servers}
        for name, server in servers.items():  # warm-up: imports, connections, prepared statements
            load(server.port, "/bench/trivial/", templates[name], 2, args.clients)
            load(server.port, info[name]["handler_path"], templates[name], 2, args.clients)
        for round_no in range(args.rounds):
            order = ("empty", "full") if round_no % 2 == 0 else ("full", "empty")
            for name in order:
                port, template = servers[name].port, templates[name]
                outcome[name]["trivial"].append(load(port, "/bench/trivial/", template, args.seconds, args.clients))
                before = servers[name].cpu()
                result = load(port, info[name]["handler_path"], template, args.seconds, args.clients)
                result["cpu_ms"] = 1000 * (servers[name].cpu() - before) / max(1, result["ok"] + result["other"])
                outcome[name]["handler"].append(result)
        full = servers["full"]
        for round_no in range(args.rounds):
            for with_retention in (False, True) if round_no % 2 == 0 else (True, False):
                retention = None
                if with_retention:
                    retention = Retention(args.database, args.redis, days=args.retention_days, seconds=args.seconds)
                    retention.go()
                result = load(full.port, info["full"]["handler_path"], templates["full"], args.seconds, args.clients)
                outcome["retention"]["with" if with_retention else "alone"].append(result)
                if retention is not None:
                    done = retention.result()
                    outcome["retention"]["rows_per_s"].append(done["rows"] / done["seconds"])
    finally:
        for server in servers.values():
            server.stop()
        import redis

        redis.Redis.from_url(args.redis).delete(QUEUE)
    return outcome


def mean_rps(results: list[dict]) -> float:
    return sum(r["rps"] for r in results) / len(results)


# --- main -----------------------------------------------------------------------------------------------------------
def previous_month(today) -> tuple[str, str]:
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1).isoformat(), last.isoformat()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--empty-database", default=DEFAULT_EMPTY)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--reuse", action="store_true", help="measure the filled database again (fill only if missing)")
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--portals", type=int, default=100)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--repeats", type=int, default=7, help="timed requests per page (median)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of an intake round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument(
        "--retention-days",
        type=int,
        default=170,
        help="MESSAGES_RETENTION_DAYS for the retention measurement (the fill spans --days)",
    )
    parser.add_argument("--skip-intake", action="store_true", help="pages only")
    args = parser.parse_args()

    if args.child:
        options = json.loads(args.child_options)
        handlers = {"prepare": child_prepare, "pages": child_pages, "retention": child_retention}
        print(json.dumps(handlers[args.child](options), default=str))
        return

    print(f"start: {uptime()}")
    if not args.reuse:
        for url in (args.database, args.empty_database):
            recreate_database(url)
    else:
        from bench._common import ensure_database

        for url in (args.database, args.empty_database):
            ensure_database(url)
    fill_options = {"portals": args.portals, "messages": args.messages, "days": args.days}
    began = time.monotonic()
    info = {"full": run_child("prepare", args.database, args.redis, fill=True, **fill_options)}
    print(f"prepared {database_name(args.database)} in {time.monotonic() - began:.0f} s: fill {info['full']['fill']}")
    info["empty"] = run_child("prepare", args.empty_database, args.redis, fill=False, **fill_options)
    if info["full"]["fill"] and int(info["full"]["fill"][0]) != args.messages:
        sys.exit(
            f"{database_name(args.database)} holds a fill of {info['full']['fill'][0]} messages: run without --reuse"
        )

    from datetime import date

    busiest_domain = PORTAL_DOMAIN.format(info["full"]["portals"].index(info["full"]["busiest"]))
    page_options = {
        "busiest_domain": busiest_domain,
        "number": info["full"]["number"],
        "month": previous_month(date.today()),
        "repeats": args.repeats,
    }
    pages = {}
    for name, url in (("empty", args.empty_database), ("full", args.database)):
        pages[name] = run_child("pages", url, args.redis, **page_options)
    print(f"pages measured: {uptime()}")

    intake = None
    retention_alone = None
    if not args.skip_intake:
        intake = measure_intake(args, info)
        print(f"intake measured: {uptime()}")
        retention_alone = {}
        for label, factor in (("back to back", 0), ("paced (MESSAGES_RETENTION_PAUSE_FACTOR)", None)):
            retention = Retention(
                args.database, args.redis, days=args.retention_days, seconds=args.seconds, pause_factor=factor
            )
            retention.go()
            retention_alone[label] = retention.result()

    print()
    print(
        f"{args.messages:,} messages, {args.portals} portals, {args.days} days "
        f"({info['full']['size']} database; estimated rows {info['full']['estimated_messages']:,}) "
        f"vs an empty database ({info['empty']['size']}); busiest portal {busiest_domain}; "
        f"number searched {page_options['number']}; month {page_options['month'][0][:7]}"
    )
    print(f"{'measurement':34} | {'empty: ms':>9} | {'queries':>7} | {'10M: ms':>9} | {'queries':>7} | notes")
    for label, empty in pages["empty"].items():
        full = pages["full"][label]
        notes = f"hits {full['hits']}" if full["hits"] is not None else ""
        if full["ms"] > 300 or full["queries"] != empty["queries"]:
            notes += f" CHECK: slowest query {full['slowest_query']['ms']:.0f} ms: {full['slowest_query']['sql'][:160]}"
        print(
            f"{label:34} | {empty['ms']:9.1f} | {','.join(map(str, empty['queries'])):>7} | {full['ms']:9.1f} | "
            f"{','.join(map(str, full['queries'])):>7} | {notes}"
        )
    if intake:
        # Per round: each database's HANDLER/trivial ratio, and 10M over empty, measured minutes apart at most;
        # the medians over rounds stand against the machine's load, which other work moves from minute to minute.
        per_round = {
            name: [h["rps"] / t["rps"] for h, t in zip(intake[name]["handler"], intake[name]["trivial"], strict=True)]
            for name in ("empty", "full")
        }
        for name in ("empty", "full"):
            print(
                f"HANDLER intake, {name:5}: trivial {mean_rps(intake[name]['trivial']):7.1f} req/s, HANDLER "
                f"{mean_rps(intake[name]['handler']):7.1f} req/s; ratio per round "
                + ", ".join(f"{r:.3f}" for r in per_round[name])
                + f"; median {statistics.median(per_round[name]):.3f}"
            )
        cpu = {name: [r["cpu_ms"] for r in intake[name]["handler"]] for name in ("empty", "full")}
        for name in ("empty", "full"):
            print(
                f"HANDLER CPU per call, {name:5} (gunicorn + its PostgreSQL backends), ms: "
                + ", ".join(f"{c:.2f}" for c in cpu[name])
                + f"; median {statistics.median(cpu[name]):.2f}"
            )
        cpu_ratio = statistics.median(cpu["full"]) / statistics.median(cpu["empty"])
        print(f"HANDLER CPU per call, 10M / empty: {cpu_ratio:.3f} (medians; goal <= 1.05)")
        relative = [f / e for f, e in zip(per_round["full"], per_round["empty"], strict=True)]
        print(
            "HANDLER intake ratio, 10M / empty, per round: "
            + ", ".join(f"{r:.3f}" for r in relative)
            + f"; median {statistics.median(relative):.3f}; of the means "
            f"{statistics.mean(per_round['full']) / statistics.mean(per_round['empty']):.3f} (goal >= 0.95)"
        )
        for label, done in retention_alone.items():
            print(
                f"retention alone, {label}: {done['rows'] / done['seconds']:.0f} rows/s "
                f"({done['rows']:,} rows in {done['seconds']:.1f} s)"
            )
        alone, with_retention = mean_rps(intake["retention"]["alone"]), mean_rps(intake["retention"]["with"])
        with_over_alone = [
            w["rps"] / a["rps"] for w, a in zip(intake["retention"]["with"], intake["retention"]["alone"], strict=True)
        ]
        print(
            f"HANDLER on 10M: {alone:.1f} req/s alone, {with_retention:.1f} req/s while paced retention runs "
            f"({statistics.mean(intake['retention']['rows_per_s']):.0f} rows/s meanwhile); with / without per round "
            + ", ".join(f"{r:.3f}" for r in with_over_alone)
            + f"; median {statistics.median(with_over_alone):.3f}; "
            f"of the means {with_retention / alone:.3f} (goal >= 0.9)"
        )
        errors = sum(
            r["other"] for part in ("empty", "full") for kind in ("trivial", "handler") for r in intake[part][kind]
        ) + sum(r["other"] for r in intake["retention"]["alone"] + intake["retention"]["with"])
        print(f"non-200 answers: {errors}")
    print(f"end: {uptime()}")


if __name__ == "__main__":
    main()
