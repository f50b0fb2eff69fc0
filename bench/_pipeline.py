"""Real processes for the end-to-end message benches (bench/finals_burst.py, bench/recovery.py).

gunicorn serving the project (HANDLER and i-dgtl callbacks), Celery worker(s) and, when asked, a
real ``celery beat``, all started here as process groups of their own (so a worker can be SIGKILLed
with its pool children), against the bench's PostgreSQL database and Redis; the two fakes run in the
bench process, with timing added to what they record:

* :class:`TimedBitrix24` records when each ``messageservice.message.status.update`` was accepted;
* :class:`TimedIdgtl` records when each message got its final status at i-dgtl and when each
  callback POST to b24sms was answered.

The fake Bitrix24 posts the burst to the HANDLER over HTTP as Bitrix24 does (``send_sms``).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from bench._common import ROOT, bench_rows

CLIENT_ID, CLIENT_SECRET = "local.bench.e2e", "bench-e2e-secret"
PROCESS_SETTINGS = "bench.pipeline_settings"


def bench_environment(*, queue: str) -> None:
    """Defaults of the end-to-end benches (before setup_django): their own database and Redis db."""
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24sms_bench9")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/8")
    os.environ["B24_PORTAL_ALLOW_LOOPBACK"] = "1"  # the fake portals listen on 127.0.0.1
    os.environ["IDGTL_RATE_LIMIT_PER_SECOND"] = os.environ.get("IDGTL_RATE_LIMIT_PER_SECOND", "0")
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = queue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    if what:
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
    return False


# --- the fakes, with timing ---------------------------------------------------------------------------
def timed_fakes():
    """(TimedBitrix24 class, TimedIdgtl class); imported late: the fakes need Django set up."""
    from fakes.bitrix24 import FakeBitrix24, _ci_get
    from fakes.idgtl import FakeIdgtl
    from idgtl.contract import MESSAGE_FINAL_STATUSES

    class TimedBitrix24(FakeBitrix24):
        def _reset_state(self):
            super()._reset_state()
            self.status_log = []  # (time.time(), member_id, message_id, status) per accepted status update

        def _m_messageservice_message_status_update(self, portal, token, params):
            result = super()._m_messageservice_message_status_update(portal, token, params)
            self.status_log.append(
                (time.time(), portal.member_id, str(_ci_get(params, "MESSAGE_ID")), _ci_get(params, "STATUS"))
            )
            return result

    class TimedIdgtl(FakeIdgtl):
        """``callback_threads``: threads posting callbacks (the fake has one; i-dgtl is not a single
        serial client). Events of one message are seconds apart (``auto_deliver_after``), so several
        threads do not reorder them."""

        def __init__(self, *args, callback_threads: int = 1, **kwargs):
            self.callback_threads = max(1, callback_threads)
            self._extra_callback_threads = []
            super().__init__(*args, **kwargs)

        def start(self):
            super().start()
            report = self._httpd.handle_error

            def handle_error(request, client_address):
                # A held answer written to a SIGKILLed worker's socket: expected in bench/recovery.py.
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    report(request, client_address)

            self._httpd.handle_error = handle_error
            for n in range(self.callback_threads - 1):
                thread = threading.Thread(target=self._deliver_callbacks, daemon=True, name=f"fake-idgtl-callbacks-{n}")
                thread.start()
                self._extra_callback_threads.append(thread)
            return self

        def stop(self):
            for _thread in self._extra_callback_threads:
                self._callback_queue.put(None)
            super().stop()
            for thread in self._extra_callback_threads:
                thread.join(timeout=10)
            self._extra_callback_threads = []

        def reset(self):
            super().reset()
            self.final_times = {}  # uuid -> time.time() of its final status at i-dgtl
            self.callback_log = []  # (time.time() answered, [(uuid, status)], delivered)
            self.first_final = threading.Event()
            self.first_final_callback = threading.Event()  # a final status answered 2xx by b24sms

        def set_message_status(self, uuid_, status, error_code=None):
            answer = super().set_message_status(uuid_, status, error_code)
            if status in MESSAGE_FINAL_STATUSES:
                self.final_times.setdefault(uuid_, time.time())
                self.first_final.set()
            return answer

        def _post_callback(self, session, url, payload, generation):
            super()._post_callback(session, url, payload, generation)
            with self.lock:
                delivered = any(r["payload"] is payload and r["delivered"] for r in reversed(self.callbacks[-64:]))
            self.callback_log.append((time.time(), [(e["message_uuid"], e["status"]) for e in payload], delivered))
            if delivered and any(e["status"] in MESSAGE_FINAL_STATUSES for e in payload):
                self.first_final_callback.set()

    return TimedBitrix24, TimedIdgtl


def point_default_account_at(fake_idgtl) -> None:
    from idgtl.services import account_get_default

    account = account_get_default()
    account.api_url, account.messages_key = fake_idgtl.url, fake_idgtl.messages_key
    account.save()


def retire_old_rows() -> None:
    """The bench database: earlier runs' installations are marked removed (beat leaves them alone, and
    their fake portals are gone), and no message of theirs is left waiting to be sent."""
    from providers.models import Installation, InstallationState, Message

    Message.objects.all().delete()
    Installation.objects.exclude(state=InstallationState.REMOVED).update(state=InstallationState.REMOVED)


def portal_installation(fake_b24, base_url: str):
    """A new portal at the fake with an active installation of ours and provider 'bench' registered on
    both sides (its HANDLER the installation's URL at ``base_url``). Returns (portal, installation)."""
    from django.urls import reverse
    from django.utils import timezone

    portal = fake_b24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    installation, _provider = bench_rows(
        portal.member_id,
        client_endpoint=portal.client_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        domain=portal.domain,
        server_endpoint=fake_b24.server_endpoint,
        access_token=portal.admin_access_token,
        refresh_token=portal.admin_refresh_token,
        access_token_expires_at=timezone.now() + timedelta(hours=1),
        application_token=portal.application_token,
        scope=portal.scope,
        rate_limit_burst=fake_b24.burst,
        rate_limit_drain_per_second=fake_b24.drain_per_second,
    )
    handler = base_url.rstrip("/") + reverse("b24-handler", kwargs={"secret": installation.handler_secret})
    with fake_b24.lock:
        portal.providers["bench"] = {
            "CODE": "bench",
            "TYPE": "SMS",
            "HANDLER": handler,
            "NAME": {"": "bench"},
            "DESCRIPTION": {},
        }
    return portal, installation


def send_burst(
    fake_b24, portal, count: int, *, threads: int = 8, first_number: int = 1
) -> tuple[list[str], float, int]:
    """``count`` SMS posted by the fake portal to provider 'bench''s HANDLER, from ``threads`` threads.
    Returns (message_ids, seconds, answers other than 200)."""

    def one(n):
        try:
            message_id, response = fake_b24.send_sms(portal, "bench", f"+7999{n:07d}", f"Code {n}")
            return message_id, response.status_code
        except Exception as exc:  # noqa: BLE001 - counted, not fatal
            return None, type(exc).__name__

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(one, range(first_number, first_number + count)))
    seconds = time.monotonic() - started
    return [m for m, _s in outcomes if m], seconds, sum(1 for _m, s in outcomes if s != 200)


# --- processes -------------------------------------------------------------------------------------------
class Process:
    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path):
        self.name, self.popen, self.log_path = name, popen, log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None


class Processes:
    """Subprocesses started by a bench, each the leader of a process group of its own."""

    def __init__(self, log_dir: Path, env: dict):
        self.log_dir, self.env = log_dir, env
        self.started: list[Process] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], env: dict | None = None) -> Process:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "w") as log:
            popen = subprocess.Popen(
                args,
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log_path)
        self.started.append(process)
        return process

    def gunicorn(self, port: int, workers: int) -> Process:
        process = self.start(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "b24sms.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--log-level",
                "warning",
                "--backlog",
                "2048",
                "--timeout",
                "60",
            ],
            env={"LOG_LEVEL": "WARNING"},
        )

        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(lambda: listening() or not process.alive(), 60, 0.2, "gunicorn to listen")
        if not process.alive():
            raise RuntimeError(f"gunicorn exited:\n{process.log()[-3000:]}")
        return process

    def worker(self, queue: str, concurrency: int, name: str, env: dict | None = None) -> Process:
        process = self.start(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "b24sms",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                "--pool=prefork",
                "-Q",
                queue,
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"{name}@%h",
            ],
            env={"LOG_LEVEL": "INFO", **(env or {})},
        )
        wait_for(lambda: " ready." in process.log() or not process.alive(), 90, 0.1, f"{name} to be ready")
        if not process.alive():
            raise RuntimeError(f"{name} exited:\n{process.log()[-3000:]}")
        return process

    def beat(self, env: dict | None = None) -> Process:
        process = self.start(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "b24sms",
                "beat",
                "--loglevel=INFO",
                "-S",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--pidfile=",
            ],
            env={"LOG_LEVEL": "INFO", **(env or {})},
        )
        wait_for(lambda: "beat: Starting" in process.log() or not process.alive(), 60, 0.2, "beat to start")
        if not process.alive():
            raise RuntimeError(f"beat exited:\n{process.log()[-3000:]}")
        return process

    @staticmethod
    def kill_group(process: Process) -> None:
        """SIGKILL the process and its whole group (a worker's pool children too)."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.popen.wait(timeout=10)

    @staticmethod
    def stop(process: Process, timeout: float = 30.0) -> None:
        """SIGTERM the group (a worker's warm shutdown finishes its tasks), SIGKILL after ``timeout``."""
        if not process.alive():
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            Processes.kill_group(process)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            self.stop(process)


def beat_sweeps(beat: Process, task_name: str = "messages-send-waiting") -> list[float]:
    """Wall-clock times (time.time()) at which beat sent ``task_name``, from its log lines."""
    from datetime import datetime

    times = []
    pattern = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Sending due task " + re.escape(task_name) + r"\b")
    for line in beat.log().splitlines():
        match = pattern.match(line)
        if match:
            times.append(datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return times


def forget_queue(broker_url: str, queue: str) -> None:
    """Drop the bench's queue and the unacknowledged deliveries of it (a SIGKILLed worker's), so
    nothing of this run comes back an hour later."""
    import json

    import redis

    client = redis.Redis.from_url(broker_url)
    client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    for tag, raw in client.hscan_iter("unacked"):
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key == queue:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


def forget_scheduling_keys(broker_url: str) -> None:
    """The send-run flag, report locks and flags and the portal limiters of earlier runs (not the
    broker-loss markers of beat's sweeps: without them the sweeps would take the broker for lost)."""
    import redis

    from common.taskqueue import LOSS_MARKER_KEY

    keep = LOSS_MARKER_KEY.split("{")[0].encode()
    client = redis.Redis.from_url(broker_url)
    for pattern in ("providers:*", "b24sms:*"):
        for key in client.scan_iter(pattern, count=1000):
            if not key.startswith(keep):
                client.delete(key)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


# --- where the CPU went ------------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_snapshot(processes: "Processes", database: str) -> dict:
    """CPU seconds used so far by each started process group (live processes), by PostgreSQL backends
    of ``database``, by this process (the fakes and the burst's client threads), and the machine's busy
    and total time: the difference shows what other work on the machine took."""
    groups = {p.pid: p.name.split("-")[0] for p in processes.started}
    snapshot = dict.fromkeys(groups.values(), 0.0)
    snapshot.update({"postgres (bench db, live backends)": 0.0})
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            pgid, ticks = int(fields[2]), int(fields[11]) + int(fields[12])
            if pgid in groups:
                snapshot[groups[pgid]] += ticks / _TICK
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
            if args.startswith("postgres: ") and f" {database} " in args:
                snapshot["postgres (bench db, live backends)"] += ticks / _TICK
        except OSError:
            continue
    times = os.times()
    snapshot["bench process (fakes)"] = times.user + times.system
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    snapshot["machine busy"] = (sum(ticks) - ticks[3] - ticks[4]) / _TICK
    snapshot["machine total"] = sum(ticks) / _TICK
    return snapshot


def cpu_report(before: dict, after: dict) -> str:
    used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    ours = sum(v for name, v in used.items() if not name.startswith("machine"))
    wall = used["machine total"] / (os.cpu_count() or 1)
    parts = ", ".join(f"{name} {v:.1f}" for name, v in used.items() if not name.startswith("machine"))
    return (
        f"CPU s over {wall:.0f} s x {os.cpu_count()} CPUs: {parts}; machine busy {used['machine busy']:.1f} "
        f"({100 * used['machine busy'] / (used['machine total'] or 1):.0f} %), of which other work on the machine "
        f"{max(0.0, used['machine busy'] - ours):.1f}"
    )
