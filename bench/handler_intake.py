"""Benchmark 1: HANDLER intake under gunicorn with PostgreSQL and Redis, against a trivial Django view.

Both are served by the same gunicorn (same settings, middleware, workers); a load generator (several
processes, each with threads, one connection per request as gunicorn's sync workers close them)
POSTs the same Bitrix24 form body for a fixed time. Every handler request carries a new message_id,
so each one stores a message and enqueues its send (the on-commit debounce makes a burst cost few
enqueues). Prints requests/s of both and the ratio (goal: >= 0.5), and checks that every accepted
request stored exactly one message.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/b24sms_bench CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \
        python bench/handler_intake.py [--seconds 10] [--rounds 3] [--workers 2xCPUs+1] [--clients 16]
"""

import argparse
import http.client
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._common import BENCH_APPLICATION_TOKEN, bench_rows, drop_queue, setup_django  # noqa: E402

QUEUE = "bench-intake"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed() -> tuple[str, str]:
    """An active installation with provider 'bench' registered; returns (handler path, application token)."""
    installation, _provider = bench_rows("bench-member", domain="bench.bitrix24.test")
    return f"/b24/handler/{installation.handler_secret}/", BENCH_APPLICATION_TOKEN


def body_template(application_token: str) -> str:
    fields = {
        "module_id": "crm",
        "bindings[0][OWNER_TYPE_ID]": "3",
        "bindings[0][OWNER_ID]": "123",
        "properties[phone_number]": "+79990001234",
        "properties[message_text]": "Your code: 1234",
        "type": "SMS",
        "code": "bench",
        "message_id": "MESSAGEID",
        "message_to": "+79990001234",
        "message_body": "Your code: 1234",
        "ts": str(int(time.time())),
        "auth[access_token]": "x" * 40,
        "auth[expires_in]": "3600",
        "auth[domain]": "bench.bitrix24.test",
        "auth[member_id]": "bench-member",
        "auth[user_id]": "1",
        "auth[application_token]": application_token,
    }
    return urllib.parse.urlencode(fields)


def _load_process(port, path, template, seconds, threads, unique, out):
    stop_at = time.monotonic() + seconds
    counts = {"ok": 0, "other": 0}
    lock = threading.Lock()
    prefix = uuid.uuid4().hex[:12]

    def run(thread_no):
        n = 0
        ok = other = 0
        while time.monotonic() < stop_at:
            n += 1
            body = template.replace("MESSAGEID", f"{prefix}{thread_no:03d}{n:017d}" if unique else "same").encode()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    ok += 1
                else:
                    other += 1
            except OSError:
                other += 1
            finally:
                conn.close()
        with lock:
            counts["ok"] += ok
            counts["other"] += other

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(counts)


_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int, *, with_children: bool = False) -> float:
    """CPU seconds (user + system) a live process has used, with those of its children that have
    ended if ``with_children`` (a PostgreSQL backend that ends is counted in its postmaster's); 0 if
    it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def cpu_snapshot(server_pid: int) -> dict:
    """CPU seconds used so far by gunicorn (master and workers), PostgreSQL, Redis, and this script's
    reaped children (the load generator), plus the machine's busy and total time."""
    parents = {}
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                parents[pid] = int(stat.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    names = {pid: _process_name(pid) for pid in parents}
    snapshot = {"gunicorn": _process_cpu(server_pid, with_children=True), "postgres": 0.0, "redis": 0.0}
    for pid, parent in parents.items():
        if parent == server_pid:
            snapshot["gunicorn"] += _process_cpu(pid)
        elif names[pid] == "postgres":
            postmaster = names.get(parent) != "postgres"
            snapshot["postgres"] += _process_cpu(pid, with_children=postmaster)
        elif names[pid].startswith("redis-server"):
            snapshot["redis"] += _process_cpu(pid)
    times = os.times()
    snapshot["load generator"] = times.children_user + times.children_system
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    snapshot["machine busy"] = (sum(ticks) - ticks[3] - ticks[4]) / _TICK  # all but idle and iowait
    snapshot["machine total"] = sum(ticks) / _TICK
    return snapshot


def load(port, path, template, seconds, clients, unique=True, server_pid: int | None = None) -> dict:
    before = cpu_snapshot(server_pid) if server_pid else None
    processes = 2
    out = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(
            target=_load_process, args=(port, path, template, seconds, max(1, clients // processes), unique, out)
        )
        for _ in range(processes)
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = time.monotonic() - started
    ok = sum(r["ok"] for r in results)
    outcome = {"ok": ok, "other": sum(r["other"] for r in results), "rps": ok / elapsed}
    if before is not None:
        after = cpu_snapshot(server_pid)
        outcome["cpu"] = {name: after[name] - before[name] for name in after}
    return outcome


def cpu_report(label: str, runs: list[dict]) -> str:
    """CPU milliseconds per request answered, by process, over ``runs``."""
    answered = sum(r["ok"] + r["other"] for r in runs) or 1
    cpu = {name: sum(r["cpu"][name] for r in runs) for name in runs[0]["cpu"]}
    parts = [
        f"{name} {1000 * cpu[name] / answered:.2f}" for name in ("gunicorn", "postgres", "redis", "load generator")
    ]
    busy = cpu["machine busy"] / (cpu["machine total"] or 1)
    return f"{label} CPU ms per request: {', '.join(parts)}; machine busy {100 * busy:.0f} %"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1) + 1,
        help="gunicorn sync workers (default: 2 x CPUs + 1, gunicorn's recommendation)",
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent client connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/handler rounds")
    parser.add_argument(
        "--server-side-binding",
        action="store_true",
        help="DATABASE_SERVER_SIDE_BINDING=1 (psycopg prepares repeated statements)",
    )
    args = parser.parse_args()
    if args.server_side_binding:
        os.environ["DATABASE_SERVER_SIDE_BINDING"] = "1"

    _database_url, broker_url = setup_django(QUEUE)
    handler_path, application_token = seed()
    template = body_template(application_token)

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "b24sms.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
        ],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        load(port, "/bench/trivial/", template, 2, args.clients)  # warm-up: imports, connections
        load(port, handler_path, template, 2, args.clients)
        from providers.models import Message

        Message.objects.filter(installation__member_id="bench-member").delete()
        baseline, handler = [], []
        for _round in range(args.rounds):
            baseline.append(load(port, "/bench/trivial/", template, args.seconds, args.clients, server_pid=server.pid))
            handler.append(load(port, handler_path, template, args.seconds, args.clients, server_pid=server.pid))
        stored = Message.objects.filter(installation__member_id="bench-member").count()
        duplicate = load(port, handler_path, template, 2, args.clients, unique=False)
    finally:
        server.terminate()
        server.wait(timeout=30)
        drop_queue(broker_url, QUEUE)

    base_rps = sum(r["rps"] for r in baseline) / len(baseline)
    handler_rps = sum(r["rps"] for r in handler) / len(handler)
    accepted = sum(r["ok"] for r in handler)
    errors = sum(r["other"] for r in baseline + handler)
    print(
        f"gunicorn sync workers: {args.workers}, clients: {args.clients}, {args.rounds} x {args.seconds:.0f} s each, "
        f"server-side binding: {'on' if args.server_side_binding else 'off'}"
    )
    print(f"baseline (trivial Django view): {base_rps:8.1f} req/s")
    print(f"handler intake (PG + Redis):    {handler_rps:8.1f} req/s")
    print(f"ratio: {handler_rps / base_rps:.2f} (goal >= 0.5)")
    print(cpu_report("baseline", baseline))
    print(cpu_report("handler ", handler))
    print(f"handler requests answered 200: {accepted}, messages stored: {stored}, non-200 answers: {errors}")
    print(f"repeated message_id: {duplicate['ok']} answered 200, {duplicate['other']} other")
    if stored != accepted:
        print("MISMATCH: stored messages differ from accepted requests")
        sys.exit(1)


if __name__ == "__main__":
    main()
