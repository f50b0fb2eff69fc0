"""Redis restarted empty in the middle of a burst: every SMS still ends final in Bitrix24, none sent twice.

The whole back-office in processes of its own, on a Redis of the test's own (the machine's shared
Redis is never restarted): gunicorn (the HANDLER and i-dgtl's callbacks), a Celery worker and Celery
beat, each under b24sms/supervise.py as under `make run` (a worker may exit after the restart with
kombu's 'hostname' AttributeError: the supervisor starts it again). PostgreSQL, the fake portal and
the fake i-dgtl (which delivers every message a second after taking it) over HTTP.

Mid-burst Redis is killed; the second half of the burst arrives while it is away, and it is started
empty a second after the burst: queued sends and reports, and a registration's task, are gone, and
no HANDLER call comes after it to ask for a send run. Nothing brings the work back but beat's sweeps
(messages-send-waiting, messages-report-statuses, providers-resume-stuck-registrations), which find
it in the database.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from providers.models import Message, ProviderRegistration, RegistrationState
from tests.fixtures.redis_server import free_port
from tests.fixtures.worker import ROOT, _database_url
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SUPERVISOR = ROOT / "b24sms" / "supervise.py"
CLIENT_ID = "local.brokerloss000.1"
CLIENT_SECRET = "broker-loss-client-secret"
SENDER_NAME = "MyShop"
BURST = 200
KILL_AFTER = BURST // 2  # HANDLER calls answered before Redis is killed; the rest come while it is away
FINAL_WITHIN = 90.0  # seconds after Redis is back: every SMS final on the portal
REGISTERED_WITHIN = 60.0  # seconds after Redis is back: the registration whose task was lost


class Stack:
    """web, worker and beat as processes (each in a process group of its own), logs in files."""

    def __init__(self, env: dict, tmp_path, queue: str):
        self.env, self.tmp_path, self.queue = env, tmp_path, queue
        self.web_port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _start(self, name: str, command: list[str]) -> None:
        with open(self.tmp_path / f"{name}.log", "w") as log:
            self.processes[name] = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _supervised(self, name: str, command: list[str]) -> list[str]:
        return [sys.executable, "-I", str(SUPERVISOR), "--name", name, "--restart-delay", "0.5", "--", *command]

    def start(self) -> None:
        celery = [sys.executable, "-m", "celery", "-A", "b24sms"]
        self._start(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "b24sms.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "2",
                "--threads",
                "8",
                "--timeout",
                "60",
                "--no-control-socket",
            ],
        )  # its default path is one for every gunicorn of the machine
        self._start(
            "worker",
            self._supervised(
                "worker",
                [
                    *celery,
                    "worker",
                    "--loglevel=INFO",
                    "--concurrency=2",
                    "--pool=prefork",
                    "-Q",
                    self.queue,
                    "--without-gossip",
                    "--without-mingle",
                    "-n",
                    f"{self.queue}@%h",
                ],
            ),
        )
        self._start("beat", self._supervised("beat", [*celery, "beat", "--loglevel=INFO"]))
        try:
            wait_until(
                lambda: (
                    " ready." in self.log("worker")
                    and "[supervise] beat: started" in self.log("beat")
                    and self.web_answers()
                ),
                timeout=60,
                interval=0.2,
                message="web, worker and beat",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def web_answers(self) -> bool:
        try:
            return urllib.request.urlopen(f"{self.web_url}/admin/login/", timeout=5).status == 200
        except OSError:
            return False

    def log(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)[-tail:]}" for name in ("web", "worker", "beat"))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes.values():  # the whole group: pool children of a killed worker too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)


@pytest.fixture
def stack(transactional_db, private_redis, fake_idgtl, fake_bitrix24, settings, tmp_path):
    """The back-office processes on the test's own Redis; the test's own database settings point at it too."""
    from django.db import connection

    queue = f"b24sms-brokerloss-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "b24sms.settings.test",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "CELERY_BROKER_URL": private_redis.url(0),
        "REDIS_URL": "",  # the cache and the send-schedule flag live in the broker's Redis, as in production
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "B24_OAUTH_URL": fake_bitrix24.oauth_url,
        "LOG_FORMAT": "text",
        "PYTHONUNBUFFERED": "1",
    }
    stack = Stack(env, tmp_path, queue)
    env["PUBLIC_BASE_URL"] = stack.web_url
    settings.PUBLIC_BASE_URL = stack.web_url  # the HANDLER registered from this process (tasks run inline here)
    settings.B24_OAUTH_URL = fake_bitrix24.oauth_url
    yield stack
    stack.stop()


def delivered_on_portal(portal, message_ids) -> int:
    return sum(1 for message_id in message_ids if portal.message_statuses.get(message_id, [])[-1:] == ["delivered"])


def test_redis_restarted_empty_mid_burst_every_sms_final_none_sent_twice(
    stack, private_redis, bitrix24, idgtl, installation_factory
):
    from providers.services.registration import provider_create

    # A portal with provider sms1 registered (inline here: the HANDLER is the gunicorn of the stack).
    portal = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    installation = installation_factory(portal)
    provider_create(code="sms1", name="SMS via i-dgtl", sender_name=SENDER_NAME, installations=[installation])
    assert ProviderRegistration.objects.get().state == RegistrationState.REGISTERED and "sms1" in portal.providers
    second = provider_create(code="sms2", name="Second", sender_name=SENDER_NAME)
    idgtl.allowed_sender_names.add(SENDER_NAME)
    idgtl.auto_deliver_after = 1.0  # i-dgtl: sent a second after it took a message, delivered a second later
    stack.start()

    answered, redis_back = [], {}

    def post(n: int):
        message_id, response = bitrix24.send_sms(portal, "sms1", f"+7999{n + 1:07d}", f"burst {n}")  # no ...0000
        answered.append(response.status_code)
        return message_id

    def lose_redis():
        from django.db import connection

        wait_until(lambda: len(answered) >= KILL_AFTER, timeout=60, interval=0.01, message="half the burst")
        # A registration asked for just before: its task was queued in the Redis about to be lost.
        ProviderRegistration.objects.create(provider=second, installation=installation, state=RegistrationState.PENDING)
        connection.close()  # this thread's own
        private_redis.kill()
        # The burst goes on: the HANDLER stores each SMS and answers 200; its send run cannot be queued.
        wait_until(lambda: len(answered) >= BURST, timeout=120, interval=0.05, message="the whole burst")
        time.sleep(1.0)
        private_redis.start()
        redis_back["at"] = time.monotonic()

    loser = threading.Thread(target=lose_redis)
    loser.start()
    with ThreadPoolExecutor(max_workers=8) as pool:  # Bitrix24's queue posts in parallel
        message_ids = []
        for n in range(BURST):
            message_ids.append(pool.submit(post, n))
            time.sleep(0.02)  # about 50 SMS a second: Redis dies with the burst under way
        message_ids = [future.result() for future in message_ids]
    loser.join(timeout=60)
    assert "at" in redis_back, "Redis was not restarted"
    assert Counter(answered) == {200: BURST}  # Bitrix24 got 200 for every SMS, also while Redis was away
    assert Message.objects.filter(message_id__in=message_ids).count() == BURST

    registration = ProviderRegistration.objects.get(provider=second)
    try:
        wait_until(
            lambda: delivered_on_portal(portal, message_ids) == BURST,
            timeout=FINAL_WITHIN - (time.monotonic() - redis_back["at"]),
            interval=0.5,
            message=f"all {BURST} SMS to be delivered on the portal",
        )
        final_after = time.monotonic() - redis_back["at"]
        wait_until(
            lambda: ProviderRegistration.objects.get(pk=registration.pk).state == RegistrationState.REGISTERED,
            timeout=max(1.0, REGISTERED_WITHIN - (time.monotonic() - redis_back["at"])),
            interval=0.5,
            message="the registration whose task was lost to be done",
        )
        registered_after = time.monotonic() - redis_back["at"]
    except AssertionError as exc:
        states = Counter(Message.objects.filter(message_id__in=message_ids).values_list("state", flat=True))
        raise AssertionError(f"{exc}\nmessage states: {dict(states)}\n{stack.logs()}") from None
    assert "sms2" in portal.providers

    # i-dgtl took each message once: no send was repeated by the recovery.
    sends = Counter(m["externalMessageId"] for m in idgtl.messages.values())
    ours = {str(pk) for pk in Message.objects.filter(message_id__in=message_ids).values_list("pk", flat=True)}
    assert set(sends) == ours and set(sends.values()) == {1}
    restarts = stack.log("worker").count("[supervise] worker: exited")
    print(
        f"final {final_after:.1f}s and registered {registered_after:.1f}s after Redis was back; "
        f"worker restarted {restarts} time(s)"
    )
