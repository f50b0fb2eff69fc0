"""Benchmark: one sender-name sync cycle over many open applications against the fake i-dgtl.

Run by hand (not in CI), from the project root, preferably on PostgreSQL:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/b24sms_bench \\
        .venv/bin/python bench/sender_names_sync.py [--applications 10000] [--rounds 2]

It migrates the database, files N submitted applications with a "bench" i-dgtl account pointing at
an in-process fake i-dgtl (real HTTP on 127.0.0.1), and times, in the same run:

* a plain loop: one ``requests.Session`` making the same ``GET /sender-names/{id}`` calls and
  parsing the JSON, nothing else (the unavoidable cost of the HTTP calls);
* ``applications_sync_open()``: the real sync cycle (claiming, the i-dgtl client with its error
  mapping and logging, status changes, history rows, bulk writes).

It prints requests made, database queries, seconds and the ratio sync/plain (goal: at most 1.5).
The rounds alternate plain and sync; the ratio uses the fastest of each. Everything the bench
created is deleted at the end.
"""

import argparse
import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "b24sms.settings.local")
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("IDGTL_RATE_LIMIT_PER_SECOND", "0")  # the fake has no limit; measure our own overhead
os.environ.setdefault("LOG_LEVEL", "INFO")

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from fakes.idgtl import FakeIdgtl  # noqa: E402
from idgtl.models import IdgtlAccount  # noqa: E402
from sendernames.models import SenderNameApplication, SenderNameStatusChange, SubmissionState  # noqa: E402
from sendernames.services import applications_sync_open  # noqa: E402

BENCH_ACCOUNT = "bench-sender-names-sync"
CHANGED_EVERY = 10  # every 10th application has a new status at i-dgtl, so history rows are written


def seed(fake: FakeIdgtl, count: int) -> IdgtlAccount:
    IdgtlAccount.objects.filter(name=BENCH_ACCOUNT).delete()
    account = IdgtlAccount.objects.create(name=BENCH_ACCOUNT, api_url=fake.url, sender_names_key=fake.sender_names_key)
    now = timezone.now()
    date_from = now + dt.timedelta(days=3)
    rows = []
    for n in range(1, count + 1):
        name = f"Bench{n}"[:11]
        rows.append(
            SenderNameApplication(
                account=account,
                common_type="SERVICE",
                brand="MTS",
                date_from=date_from,
                sender_name=name,
                counteragent_name="Bench, LLC",
                counteragent_inn="7707083893",
                submission_state=SubmissionState.SUBMITTED,
                remote_id=n,
                status="PRE_REVIEW",
                submitted_at=now,
                next_status_check_at=now - dt.timedelta(seconds=1),
            )
        )
        fake.sender_names[n] = {
            "id": n,
            "channelType": "SMS",
            "commonType": "SERVICE",
            "brand": "MTS",
            "senderName": name,
            "dateFrom": date_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "counteragentName": "Bench, LLC",
            "counteragentInn": "7707083893",
            "status": "REVIEW" if n % CHANGED_EVERY == 0 else "PRE_REVIEW",
            "fee": 2000,
            "comment": None,
            "files": [],
            "createdAt": now.isoformat(),
        }
    SenderNameApplication.objects.bulk_create(rows, batch_size=1000)
    return account


def make_due(account):
    SenderNameApplication.objects.filter(account=account).update(
        next_status_check_at=timezone.now() - dt.timedelta(seconds=1), status="PRE_REVIEW"
    )
    SenderNameStatusChange.objects.filter(application__account=account).delete()


def plain_loop(fake: FakeIdgtl, remote_ids) -> float:
    session = requests.Session()
    headers = {"Authorization": f"Basic {fake.sender_names_key}", "Accept": "application/json"}
    started = time.perf_counter()
    for remote_id in remote_ids:
        response = session.get(f"{fake.url}/sender-names/{remote_id}", headers=headers, timeout=(5, 70))
        response.raise_for_status()
        response.json()
    elapsed = time.perf_counter() - started
    session.close()
    return elapsed


def sync_cycle():
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        report = applications_sync_open(time_budget=3600)
        elapsed = time.perf_counter() - started
    statements = [q["sql"] for q in queries.captured_queries]
    sql = [q for q in statements if q not in ("BEGIN", "COMMIT")]
    return elapsed, (len(sql), len(statements) - len(sql)), report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--applications", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--quiet-logs",
        action="store_true",
        help="send the per-call INFO logs nowhere (they go to stderr by default, as in production)",
    )
    args = parser.parse_args(argv)
    if args.quiet_logs:
        logging.getLogger().handlers[:] = [logging.NullHandler()]

    call_command("migrate", verbosity=0)
    fake = FakeIdgtl().start()  # its handler sets TCP_NODELAY (no 40 ms delayed-ACK stall per keep-alive reply)
    logging.getLogger("fakes").setLevel(logging.WARNING)
    account = None
    try:
        account = seed(fake, args.applications)
        remote_ids = list(range(1, args.applications + 1))
        plains, syncs = [], []
        for round_no in range(1, args.rounds + 1):
            make_due(account)
            plain = plain_loop(fake, remote_ids)
            with fake.lock:
                fake.requests.clear()
            seconds, query_count, report = sync_cycle()
            with fake.lock:
                requests_made = len(fake.requests)
                fake.requests.clear()
            plains.append(plain)
            syncs.append(seconds)
            print(
                f"round {round_no}: applications={args.applications} requests={requests_made} "
                f"db_queries={query_count[0]} (+{query_count[1]} BEGIN/COMMIT) checked={report.checked} "
                f"changed={report.changed} errors={report.errors} "
                f"sync_seconds={seconds:.2f} plain_seconds={plain:.2f} ratio={seconds / plain:.2f}",
                flush=True,
            )
        print(
            f"best: sync_seconds={min(syncs):.2f} plain_seconds={min(plains):.2f} "
            f"ratio={min(syncs) / min(plains):.2f} (goal <= 1.5)",
            flush=True,
        )
        print(f"database: {connection.vendor}; python {sys.version.split()[0]}; cpus {os.cpu_count()}", flush=True)
    finally:
        if account is not None:
            SenderNameApplication.objects.filter(account=account).delete()
            account.delete()
        fake.stop()


if __name__ == "__main__":
    main()
