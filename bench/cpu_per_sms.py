"""Benchmark 5: CPU per SMS of a burst's whole life, by process kind and stage, against a trivial view.

Real processes as in production: gunicorn (sync workers) serving the project, a Celery worker
(prefork), optionally beat, PostgreSQL and Redis; the fakes of Bitrix24 and i-dgtl over HTTP in this
process. One run:

1. **trivial** — the fake portal POSTs ``--messages`` form bodies, the same bodies a HANDLER call
   gets, to ``/bench/trivial-form/`` (bench/cpu_urls.py: parses the form with the project's parser and
   answers a small JSON; same gunicorn, Django and middleware; no database, no Redis);
2. **intake + send** — the fake portal POSTs the burst to provider 'bench''s HANDLER (``--threads``
   threads, a form POST per SMS as Bitrix24 does); the worker sends it to the fake i-dgtl as it
   arrives (batches as the send debounce makes them); the window ends when every message is SENT
   and the queue is empty. Web CPU is the HANDLER's, worker CPU the sending's;
3. **callbacks + reports** — the fake i-dgtl moves every message to ``sent``, then to ``delivered``
   (``undelivered`` for numbers ending 0000) and calls b24sms back (``--callback-batch`` events per
   POST, ``--callback-threads`` threads); b24sms reports the final statuses to the fake portal
   (``batch`` calls). The window ends when every final status is at the portal. Web CPU is the
   callbacks' (their requests store the events), worker CPU applying them and the reporting;
4. **trivial** again (the figure used is the mean of both rounds: the machine's speed drifts).

Holding the i-dgtl statuses back until the burst is sent keeps the stages apart in time, so each
process's CPU belongs to one stage; the work per message is the same as when they overlap.

CPU is read from ``/proc`` (utime + stime), sampled every 0.2 s per process so that processes which
end are counted up to their last sample: gunicorn master and workers (web), Celery main and pool
processes (worker), beat, the PostgreSQL backends of the bench database by the client they serve
(``application_name`` from ``PGAPPNAME``: web, worker, beat, this script), and redis-server. Redis
is shared with other work on the machine: its figure is the server's whole CPU delta minus its rate
during the trivial rounds (which use no Redis), so it is approximate. PostgreSQL's shared processes
(WAL writer, checkpointer) are not counted. Other load on the machine does not enter the figures,
but it slows everything (cache, scheduling), so compare runs made in the same conditions.

``--profile DIR`` runs py-spy (``pip install py-spy``; needs ptrace) on gunicorn and on the worker
during each stage and prints the top functions per stage; py-spy's sampling costs the profiled
processes some CPU, so the figures of a profiled run are not comparable with an unprofiled one.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/b24sms_bench13 CELERY_BROKER_URL=redis://127.0.0.1:6379/2 \\
        .venv/bin/python bench/cpu_per_sms.py [--messages 3000] [--callback-batch 10] [--profile /tmp/prof]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24sms_bench13")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")
os.environ["PGAPPNAME"] = "b24sms-bench"  # this script's own connections (not the host's cost)
from bench._common import setup_django  # noqa: E402
from bench._pipeline import (  # noqa: E402
    Processes,
    bench_environment,
    forget_queue,
    forget_scheduling_keys,
    free_port,
    load_average,
    point_default_account_at,
    portal_installation,
    retire_old_rows,
    timed_fakes,
    wait_for,
)

QUEUE = f"bench-cpu-{os.getpid()}"
RUN_LOCK = 0x62323463  # advisory lock: one run per bench database at a time
SETTINGS = "bench.cpu_settings"
FINALS = {"delivered", "undelivered", "failed"}
_TICK = os.sysconf("SC_CLK_TCK")
HOST_KINDS = ("web", "worker", "beat", "pg web", "pg worker", "pg beat", "pg other", "redis~")


# --- CPU by process kind, from /proc ------------------------------------------------------------------------
class CpuSampler(threading.Thread):
    """Samples the CPU of every process of interest; ``mark()`` returns a snapshot, ``used(a, b)``
    the CPU seconds by kind between two snapshots (processes born or ended in between included, up
    to their last sample)."""

    def __init__(self, groups: dict[int, str], database: str, interval: float = 0.02):
        super().__init__(daemon=True, name="cpu-sampler")
        self.groups, self.database, self.interval = groups, database, interval
        self._ticks: dict[tuple[int, int], int] = {}  # (pid, start time) -> utime + stime, last seen
        self._kind: dict[tuple[int, int], str] = {}
        self._watched: dict[int, tuple[int, int]] = {}  # live pids of interest -> key
        self._listed: set[int] = set()  # every pid of the last scan (only new ones are looked at)
        self._unsure: set[int] = set()  # postgres processes whose command line is not set yet
        self._unnamed: dict[int, int] = {}  # backends of the bench database without a name yet -> tries
        self._lock = threading.Lock()
        self._scanning = threading.Lock()
        self._halt = threading.Event()
        self._pg = None

    def _pg_names(self, pids: list[int]) -> dict[int, str]:
        import psycopg

        try:
            if self._pg is None or self._pg.closed:
                self._pg = psycopg.connect(
                    os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1),
                    autocommit=True,
                    application_name="b24sms-bench",
                )
            rows = self._pg.execute(
                "SELECT pid, application_name FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
            ).fetchall()
            return dict(rows)
        except Exception:  # noqa: BLE001 - a missed name only makes the backend "pg other"
            return {}

    @staticmethod
    def _stat(pid: int) -> tuple[str, list[str]] | None:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                raw = stat.read()
        except OSError:
            return None
        return raw[raw.index("(") + 1 : raw.rindex(")")], raw.rsplit(")", 1)[1].split()

    def _watch(self, pid: int, fields: list[str], kind: str, readings: dict) -> None:
        key = (pid, int(fields[19]))
        self._kind[key], self._watched[pid] = kind, key
        readings[key] = int(fields[11]) + int(fields[12])

    def scan(self) -> None:
        """New processes are classified once; then only those of interest are read again (a scan
        every 20 ms sees a backend that lives for one task)."""
        with self._scanning:
            self._scan()

    def _scan(self) -> None:
        listed = {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}
        readings = {}
        for pid in (listed - self._listed) | self._unsure | set(self._unnamed) | set(self._watched):
            stat = self._stat(pid) if pid in listed else None
            if stat is None:
                continue
            comm, fields = stat
            if pid in self._watched:
                if self._watched[pid] == (pid, int(fields[19])):
                    readings[self._watched[pid]] = int(fields[11]) + int(fields[12])
                    continue
                del self._watched[pid]  # the pid was reused
            if pid in self._unnamed:
                continue
            self._unsure.discard(pid)
            if int(fields[2]) in self.groups:
                self._watch(pid, fields, self.groups[int(fields[2])], readings)
            elif comm.startswith("redis-server"):
                self._watch(pid, fields, "redis~", readings)
            elif comm == "postgres":
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        args = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if not args.startswith("postgres: "):
                    self._unsure.add(pid)  # just forked: it still shows the postmaster's command line
                elif f" {self.database} " in args:
                    self._unnamed[pid] = 0
        if self._unnamed:
            names = self._pg_names(list(self._unnamed))
            for pid in list(self._unnamed):
                stat = self._stat(pid)
                if stat is None:
                    del self._unnamed[pid]
                    continue
                self._unnamed[pid] += 1
                if pid not in names and self._unnamed[pid] < 25:
                    continue  # not in pg_stat_activity yet
                del self._unnamed[pid]
                self._watch(
                    pid,
                    stat[1],
                    {
                        "b24sms-web": "pg web",
                        "b24sms-worker": "pg worker",
                        "b24sms-beat": "pg beat",
                        "b24sms-bench": "pg bench",
                    }.get(names.get(pid, ""), "pg other"),
                    readings,
                )
        for pid in [pid for pid in self._watched if pid not in listed]:
            del self._watched[pid]  # ended: its last reading stays
        self._unsure &= listed
        self._listed = listed
        with self._lock:
            self._ticks.update(readings)

    def run(self):
        while not self._halt.wait(self.interval):
            self.scan()

    def stop(self):
        self._halt.set()
        self.join(timeout=5)

    def mark(self) -> dict:
        self.scan()
        with self._lock:
            ticks = dict(self._ticks)
        return {"ticks": ticks, "wall": time.monotonic(), "os": os.times()}

    def backends(self) -> dict:
        """How many PostgreSQL backends of each kind were seen."""
        return dict(Counter(kind for kind in self._kind.values() if kind.startswith("pg ")))

    def used(self, a: dict, b: dict) -> dict:
        cpu = defaultdict(float)
        for key, ticks in b["ticks"].items():
            cpu[self._kind[key]] += (ticks - a["ticks"].get(key, 0)) / _TICK
        cpu["bench process"] = (b["os"].user + b["os"].system) - (a["os"].user + a["os"].system)
        cpu["wall"] = b["wall"] - a["wall"]
        return dict(cpu)


# --- profiles (py-spy) ------------------------------------------------------------------------------------
class Profiles:
    def __init__(self, directory: Path | None, targets: dict[str, int]):
        self.directory, self.targets = directory, targets
        self.running: list[tuple[subprocess.Popen, Path, str, str]] = []

    def start(self, stage: str):
        if not self.directory:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        py_spy = Path(sys.executable).with_name("py-spy")
        for kind, pid in self.targets.items():
            out = profile_path(self.directory, stage, kind)
            popen = subprocess.Popen(
                [
                    str(py_spy),
                    "record",
                    "--pid",
                    str(pid),
                    "--subprocesses",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--rate",
                    "200",
                    "--nolineno",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.running.append((popen, out, stage, kind))
        time.sleep(1.0)  # py-spy attaches

    def stop(self):
        for popen, _out, _stage, _kind in self.running:
            popen.send_signal(signal.SIGINT)
        for popen, _out, _stage, _kind in self.running:
            try:
                popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                popen.kill()
        self.running = []


def profile_path(directory: Path, stage: str, kind: str) -> Path:
    return directory / f"{stage.replace(' + ', '-').replace(' ', '-')}-{kind}.txt"


_GROUPS = (  # innermost frame's file -> what it is (first match)
    ("psycopg", "PostgreSQL client (psycopg)"),
    ("django/db/models/sql", "ORM: SQL compilation"),
    ("django/db/models", "ORM: models, querysets"),
    ("django/db/backends", "Django DB backend"),
    ("django/db/transaction", "Django DB backend"),
    ("django/core/handlers", "Django request handling"),
    ("django/middleware", "Django middleware"),
    ("django/contrib", "Django contrib middleware"),
    ("django_prometheus", "django-prometheus"),
    ("django/", "Django (other)"),
    ("gunicorn", "gunicorn"),
    ("redis/", "Redis client"),
    ("kombu", "Celery/kombu"),
    ("celery", "Celery/kombu"),
    ("billiard", "Celery/kombu"),
    ("requests/", "HTTP client (requests, urllib3)"),
    ("urllib3", "HTTP client (requests, urllib3)"),
    ("http/client", "HTTP client (requests, urllib3)"),
    ("json/", "json"),
    ("logging/", "logging"),
    ("axes/", "django-axes"),
    ("audit/", "audit"),
    ("providers/", "b24sms code"),
    ("b24sms/", "b24sms code"),
    ("idgtl/", "b24sms code"),
    ("bitrix24/", "b24sms code"),
    ("phonenumbers", "phonenumbers"),
    ("socket", "sockets (stdlib)"),
    ("ssl", "sockets (stdlib)"),
    ("selectors", "sockets (stdlib)"),
)


def _group(frame: str) -> str:
    for needle, name in _GROUPS:
        if needle in frame:
            return name
    return "other (stdlib, ...)"


# Leaves where a thread waits (py-spy, pausing the process, still catches some of them).
_WAITING = (
    "Connection.wait (psycopg",
    "EpollSelector.select",
    "Arbiter.wait_for_signals",
    "SyncWorker.wait ",
    "_epoll.poll",
    "Connection._recv (billiard",
    "Connection._poll (billiard",
    "select (selectors",
    "SocketIO.readinto",
    "socket.accept",
    "sleep (",
)


def profile_summary(path: Path, top: int = 18) -> str:
    """Self time by library and the top functions (inclusive) of a py-spy raw profile, leaving out the
    samples taken while the process waited (for PostgreSQL, a socket, its next task)."""
    if not path.exists() or not path.stat().st_size:
        return f"  (no samples in {path.name})"
    total, by_group, inclusive, self_time = 0, Counter(), Counter(), Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _sep, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames or frames[-1].startswith(_WAITING):
            continue
        total += n
        by_group[_group(frames[-1])] += n
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [
        f"  {total} samples; self time by library: "
        + ", ".join(f"{name} {100 * n / total:.0f} %" for name, n in by_group.most_common(10))
    ]
    ours = [
        (f, n)
        for f, n in inclusive.most_common()
        if any(p in f for p in ("providers/", "b24sms/", "idgtl/", "bitrix24/", "audit/"))
    ]
    lines.append("  b24sms functions, inclusive: " + "; ".join(f"{f} {100 * n / total:.0f} %" for f, n in ours[:top]))
    lines.append("  top self: " + "; ".join(f"{f} {100 * n / total:.1f} %" for f, n in self_time.most_common(top)))
    return "\n".join(lines)


# --- the burst ---------------------------------------------------------------------------------------------
def post_forms(fake_b24, portal, count: int, threads: int, first: int, handler_url: str | None = None):
    """``count`` HANDLER form bodies POSTed by the fake portal (to ``handler_url`` if given)."""

    def one(n):
        try:
            message_id, response = fake_b24.send_sms(
                portal, "bench", f"+7999{n:07d}", f"Code {n}", handler_url=handler_url
            )
            return message_id, response.status_code
        except Exception as exc:  # noqa: BLE001 - counted, not fatal
            return None, type(exc).__name__

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(one, range(first, first + count)))
    refused = sum(1 for _m, status in outcomes if status != 200)
    return [m for m, status in outcomes if m and status == 200], time.monotonic() - started, refused


def vacuum() -> None:
    """VACUUM ANALYZE the tables a message's life writes: each run deletes the last one's rows, and a
    server without autovacuum (a development one) would otherwise make every run dearer than the last."""
    from django.db import connection

    from providers.models import Message, MessageStatusChange, StatusReport, UnmatchedCallbackEvent, UsageDay

    with connection.cursor() as cursor:
        for model in (Message, MessageStatusChange, StatusReport, UnmatchedCallbackEvent, UsageDay):
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def queue_empty(broker_url: str) -> bool:
    import redis

    client = redis.Redis.from_url(broker_url)
    return client.llen(QUEUE) == 0 and not any(
        json.loads(raw)[2] == QUEUE for _tag, raw in client.hscan_iter("unacked")
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--gunicorn-workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes (Procfile: 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads of the fake portal posting the burst")
    parser.add_argument("--callback-batch", type=int, default=10, help="events per callback POST from the fake i-dgtl")
    parser.add_argument("--callback-threads", type=int, default=4, help="threads of the fake i-dgtl posting callbacks")
    parser.add_argument(
        "--portal-limit",
        action="store_true",
        help="enforce the fake portal's leaky bucket (burst 50, 2/s): reports then take 30 s per 3,000",
    )
    parser.add_argument("--beat", action="store_true", help="run celery beat too (its CPU is counted)")
    parser.add_argument(
        "--worker-db-reuse",
        type=int,
        default=0,
        metavar="N",
        help="Celery pool processes keep their database connection for N tasks (CELERY_DB_REUSE_MAX; "
        "default 0: Celery closes it before and after every task)",
    )
    parser.add_argument("--profile", type=Path, help="directory for py-spy profiles of each stage")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    bench_environment(queue=QUEUE)
    _db, broker_url = setup_django(QUEUE)
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    from django.db import connection

    with connection.cursor() as cursor:  # held by this session until the script ends
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [RUN_LOCK])
        if not cursor.fetchone()[0]:
            sys.exit(f"another bench/cpu_per_sms.py is running on {database}: each run clears the database")
    TimedBitrix24, TimedIdgtl = timed_fakes()
    load_before = load_average()
    fake_b24 = TimedBitrix24(enforce_rate_limit=args.portal_limit).start()
    fake_idgtl = TimedIdgtl(
        auto_deliver_after=None, callback_batch_max=args.callback_batch, callback_threads=args.callback_threads
    ).start()
    fake_idgtl.allowed_sender_names.add("Bench")
    port = free_port()
    base_url = f"http://localhost:{port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "PUBLIC_BASE_URL": base_url,
        "B24_OAUTH_URL": fake_b24.oauth_url,
        "IDGTL_API_URL": fake_idgtl.url,
        "IDGTL_MESSAGES_TOKEN": fake_idgtl.messages_key,
        "LOG_FORMAT": "text",
    }
    if args.worker_db_reuse:
        env["BENCH_CELERY_DB_REUSE_MAX"] = str(args.worker_db_reuse)
    processes = Processes(Path(tempfile.mkdtemp(prefix="bench-cpu-")), env)
    sampler = None
    figures, counts = {}, {}
    try:
        from django.conf import settings

        settings.B24_OAUTH_URL = fake_b24.oauth_url
        forget_scheduling_keys(broker_url)
        retire_old_rows()
        vacuum()
        point_default_account_at(fake_idgtl)
        processes.env["PGAPPNAME"] = "b24sms-web"
        web = processes.gunicorn(port, args.gunicorn_workers)
        worker = processes.worker(QUEUE, args.concurrency, "worker-1", env={"PGAPPNAME": "b24sms-worker"})
        if args.beat:
            processes.beat(env={"PGAPPNAME": "b24sms-beat"})
        portal, installation = portal_installation(fake_b24, base_url)
        trivial_url = f"{base_url}/bench/trivial-form/"
        kinds = {"gunicorn": "web", "worker": "worker", "beat": "beat"}
        sampler = CpuSampler({p.pid: kinds[p.name.split("-")[0]] for p in processes.started}, database)
        sampler.start()
        profiles = Profiles(args.profile, {"web": web.pid, "worker": worker.pid})

        from providers.models import Message, MessageState

        # warm-up: imports, connections, prepared statements (its messages are deleted)
        post_forms(fake_b24, portal, 200, args.threads, 9_000_000, trivial_url)
        post_forms(fake_b24, portal, 200, args.threads, 9_100_000)
        wait_for(
            lambda: (
                not Message.objects.filter(
                    installation=installation, state__in=(MessageState.RECEIVED, MessageState.SENDING)
                ).exists()
            ),
            60,
            0.2,
            "the warm-up to be sent",
        )
        wait_for(lambda: queue_empty(broker_url), 60, 0.2, "the queue to empty")
        Message.objects.filter(installation=installation).delete()
        vacuum()
        time.sleep(1.0)

        def stage(name, run):
            profiles.start(name)
            before = sampler.mark()
            result = run()
            after = sampler.mark()
            profiles.stop()
            figures[name] = sampler.used(before, after)
            return result

        def trivial():
            ok, seconds, refused = post_forms(fake_b24, portal, args.messages, args.threads, 1_000_000, trivial_url)
            return {"requests": len(ok) + refused, "seconds": seconds, "refused": refused}

        counts["trivial 1"] = stage("trivial 1", trivial)

        def intake_and_send():
            ids, seconds, refused = post_forms(fake_b24, portal, args.messages, args.threads, 1)
            wait_for(
                lambda: (
                    not Message.objects.filter(
                        installation=installation, state__in=(MessageState.RECEIVED, MessageState.SENDING)
                    ).exists()
                ),
                args.timeout,
                0.1,
                "the burst to be sent",
            )
            wait_for(lambda: queue_empty(broker_url), 60, 0.1, "the queue to empty")
            return {"ids": ids, "seconds": seconds, "refused": refused}

        fake_idgtl.requests.clear()
        burst = stage("intake + send", intake_and_send)
        n = len(burst["ids"])
        posts = [r for r in list(fake_idgtl.requests) if r.method == "POST" and r.path.endswith("/message")]
        counts["send"] = {"posts": len(posts), "sizes": sorted(len(r.json) for r in posts if isinstance(r.json, list))}

        vacuum()  # as autovacuum would by now (3,000 rows in, each updated twice); not in a measured stage
        uuids = list(
            Message.objects.filter(installation=installation, state=MessageState.SENT)
            .order_by("id")
            .values_list("idgtl_message_uuid", flat=True)
        )
        wanted = set(burst["ids"])

        def finals_at_portal() -> int:
            return len(
                {
                    mid
                    for _t, member, mid, status in list(fake_b24.status_log)
                    if member == portal.member_id and status in FINALS and mid in wanted
                }
            )

        def callbacks_and_reports():
            started = time.monotonic()
            for uuid_ in uuids:
                fake_idgtl.set_message_status(uuid_, "sent")
            for uuid_ in uuids:
                if fake_idgtl.is_undeliverable(fake_idgtl.messages[uuid_]["destination"]):
                    fake_idgtl.set_message_status(uuid_, "undelivered", 1)
                else:
                    fake_idgtl.set_message_status(uuid_, "delivered")
            wait_for(lambda: finals_at_portal() >= n, args.timeout, 0.1, "every final status at the portal")
            wait_for(lambda: fake_idgtl._callbacks_done >= fake_idgtl._callbacks_queued, 60, 0.1, "the callbacks")
            wait_for(lambda: queue_empty(broker_url), 60, 0.1, "the queue to empty")
            return {"seconds": time.monotonic() - started}

        counts["callbacks"] = stage("callbacks + reports", callbacks_and_reports)
        counts["trivial 2"] = stage("trivial 2", trivial)
        load_after = load_average()

        time.sleep(1.0)  # anything reported twice would arrive now
        updates = Counter(
            mid for _t, member, mid, status in list(fake_b24.status_log) if member == portal.member_id and mid in wanted
        )
        pks = {str(pk) for pk in Message.objects.filter(installation=installation).values_list("pk", flat=True)}
        sent = Counter(
            item.get("externalMessageId")
            for r in list(fake_idgtl.requests)
            if r.method == "POST" and r.path.endswith("/message") and isinstance(r.json, list)
            for item in r.json
            if item.get("externalMessageId") in pks
        )
        callbacks = list(fake_idgtl.callbacks)
        batch_calls = sum(1 for r in list(fake_b24.requests) if r.method == "batch" and r.portal == portal.domain)
        states = Counter(Message.objects.filter(installation=installation).values_list("state", flat=True))
        backends = sampler.backends()
    finally:
        if sampler:
            sampler.stop()
        processes.stop_all()
        fake_idgtl.stop()
        fake_b24.stop()
        forget_queue(broker_url, QUEUE)
        forget_scheduling_keys(broker_url)

    # --- the figures ---------------------------------------------------------------------------------
    redis_rate = sum(figures[t].get("redis~", 0.0) for t in ("trivial 1", "trivial 2")) / sum(
        figures[t]["wall"] for t in ("trivial 1", "trivial 2")
    )
    for cpu in figures.values():
        cpu["redis raw"] = cpu.get("redis~", 0.0)
        cpu["redis~"] = max(0.0, cpu["redis raw"] - redis_rate * cpu["wall"])
    trivial_requests = counts["trivial 1"]["requests"] + counts["trivial 2"]["requests"]

    def per(cpu: dict, kinds, count) -> float:
        return 1000 * sum(cpu.get(k, 0.0) for k in kinds) / max(1, count)

    trivial_cpu = {k: figures["trivial 1"].get(k, 0.0) + figures["trivial 2"].get(k, 0.0) for k in HOST_KINDS}
    trivial_ms = per(trivial_cpu, ("web", "pg web", "redis~"), trivial_requests)
    life = {
        k: figures["intake + send"].get(k, 0.0) + figures["callbacks + reports"].get(k, 0.0)
        for k in (*HOST_KINDS, "bench process", "pg bench", "wall", "redis raw")
    }
    cols = [k for k in HOST_KINDS if any(f.get(k) for f in figures.values()) or k in ("web", "worker")]

    print(f"load average (1, 5, 15 min): before {load_before}; after {load_after} ({os.cpu_count()} CPUs)")
    print(
        f"burst: {n} SMS ({burst['refused']} refused) posted in {burst['seconds']:.1f} s from {args.threads} "
        f"threads ({n / burst['seconds']:.0f}/s); gunicorn {args.gunicorn_workers} sync workers, Celery worker "
        f"concurrency {args.concurrency}{', beat' if args.beat else ''}; i-dgtl callbacks: "
        f"{args.callback_batch} event(s) per POST from {args.callback_threads} thread(s); portal bucket "
        f"{'on' if args.portal_limit else 'off'}; worker DB connection "
        f"{f'kept for {args.worker_db_reuse} tasks' if args.worker_db_reuse else 'closed around each task'}"
    )
    sizes = counts["send"]["sizes"]
    if sizes:
        print(
            f"send: {counts['send']['posts']} POST /message, {min(sizes)}-{max(sizes)} messages each "
            f"(median {sizes[len(sizes) // 2]})"
        )
    events = sum(len(c["payload"]) for c in callbacks)
    print(
        f"callbacks: {len(callbacks)} POSTs carrying {events} events in {counts['callbacks']['seconds']:.1f} s; "
        f"report batch calls: {batch_calls}"
    )
    header = f"{'CPU ms per SMS (per request)':34}" + "".join(f"{k:>10}" for k in cols) + f"{'total':>10}{'wall s':>8}"
    print(header)
    for name, cpu in figures.items():
        count = counts[name]["requests"] if name.startswith("trivial") else n
        print(
            f"{name:34}"
            + "".join(f"{per(cpu, (k,), count):10.2f}" for k in cols)
            + f"{per(cpu, cols, count):10.2f}{cpu['wall']:8.1f}"
        )
    print(
        f"{'whole life':34}"
        + "".join(f"{per(life, (k,), n):10.2f}" for k in cols)
        + f"{per(life, cols, n):10.2f}{life['wall']:8.1f}"
    )
    print(
        f"(redis~: the shared server's CPU minus its rate in the trivial rounds, {1000 * redis_rate:.1f} ms/s; "
        f"raw whole-life {per(life, ('redis raw',), n):.2f} ms/SMS. Not the host's: this script "
        f"{per(life, ('bench process',), n):.2f} ms/SMS (fakes, load generator), its PostgreSQL backends "
        f"{per(life, ('pg bench',), n):.2f})"
    )
    whole = per(life, cols, n)
    intake = per(figures["intake + send"], ("web", "pg web", "redis~"), n)
    send = per(figures["intake + send"], ("worker",), n)
    callback = per(figures["callbacks + reports"], ("web", "pg web"), n)
    report = per(figures["callbacks + reports"], ("worker", "pg worker"), n)
    print(f"PostgreSQL backends seen: {backends}")
    print(
        f"trivial view: {trivial_ms:.2f} ms per request (web + its PostgreSQL + Redis; rounds "
        f"{per(figures['trivial 1'], ('web',), counts['trivial 1']['requests']):.2f} and "
        f"{per(figures['trivial 2'], ('web',), counts['trivial 2']['requests']):.2f} ms web)"
    )
    print(
        f"by stage, ms per SMS: intake (web + PG + Redis) {intake:.2f}; send (worker + PG) "
        f"{send + per(figures['intake + send'], ('pg worker',), n):.2f}; callbacks, 2 events (web + PG) "
        f"{callback:.2f}; applying the events + reports (worker + PG) {report:.2f}"
    )
    print(
        f"RATIOS: whole life / trivial = {whole / trivial_ms:.2f} (goal <= 3.5); intake / trivial = "
        f"{intake / trivial_ms:.2f} (goal <= 2); worker send = {send:.2f} ms per SMS (goal <= 0.5)"
    )
    print(
        f"ceiling from CPU: {os.cpu_count()} CPUs / {whole:.2f} ms = {os.cpu_count() * 1000 / whole:.0f} SMS/s "
        f"end to end (all CPUs busy with this work only)"
    )
    twice_portal = sum(1 for v in updates.values() if v > 1)
    twice_idgtl = sum(1 for v in sent.values() if v > 1)
    finals = len(updates)
    print(
        f"checks: {finals} of {n} with a status at the portal, {twice_portal} reported more than "
        f"once, {twice_idgtl} sent to i-dgtl more than once; states {dict(states)}; logs in {processes.log_dir}"
    )
    if args.profile:
        for name in figures:
            for kind in ("web", "worker"):
                print(f"profile {name} / {kind}:")
                print(profile_summary(profile_path(args.profile, name, kind)))
    if finals < n or twice_portal or twice_idgtl or burst["refused"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
