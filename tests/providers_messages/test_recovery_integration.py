"""A worker SIGKILLed while i-dgtl holds its POST /message: every message still ends final, none sent twice.

Real processes: a Celery worker of its own (killed with its whole process group, pool children
included), PostgreSQL, Redis, the fakes over HTTP. Nothing waits for Celery to redeliver the lost
task (Redis would after an hour): the send lease lapses and the sweep that beat runs every
15 seconds (played here by the test, which enqueues that same task on that period) looks the
messages up at i-dgtl.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from providers.models import Installation, Message, MessageState, ProviderRegistration, RegistrationState
from tests.fixtures.worker import ROOT, WorkerProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CLIENT_ID = "local.recovery0000.1"
CLIENT_SECRET = "recovery-client-secret"
SENDER_NAME = "MyShop"
IDGTL_TIMEOUT = 6.0  # the worker's read timeout: the lease is connect + read + margin = 10 s
SWEEP_PERIOD = 15.0  # b24sms/celery.py: messages-send-waiting


def start_worker_group(env: dict, log_path, queue: str) -> WorkerProcess:
    log = open(log_path, "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "b24sms",
            "worker",
            "--loglevel=INFO",
            "--concurrency=2",
            "--pool=prefork",
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{queue}-{uuid.uuid4().hex[:6]}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = WorkerProcess(process, log_path, queue)
    wait_until(
        lambda: " ready." in worker.logs() or process.poll() is not None, timeout=60, message="celery worker to start"
    )
    assert process.poll() is None, worker.logs()[-4000:]
    return worker


def kill_group(worker: WorkerProcess):
    try:
        os.killpg(worker.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    worker.process.wait(timeout=10)


@pytest.fixture
def own_queue(transactional_db, live_server, settings):
    from b24sms.celery import app

    queue = f"b24sms-recovery-{uuid.uuid4().hex[:8]}"
    previous = (app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.task_always_eager, app.conf.task_default_queue = False, queue
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.PUBLIC_BASE_URL = live_server.url
    yield queue
    app.conf.task_always_eager, app.conf.task_default_queue = previous


@pytest.fixture
def workers(worker_environment, own_queue, tmp_path):
    env = {
        **os.environ,
        **worker_environment,
        "CELERY_TASK_DEFAULT_QUEUE": own_queue,
        "IDGTL_TIMEOUT": str(IDGTL_TIMEOUT),
        "IDGTL_CONNECT_TIMEOUT": "2",
        "MESSAGES_SEND_LEASE_MARGIN": "2",
        "MESSAGES_SEND_DEBOUNCE": "0.5",
    }
    started: list[WorkerProcess] = []

    def start():
        worker = start_worker_group(env, tmp_path / f"worker-{len(started)}.log", own_queue)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        kill_group(worker)


class Beat:
    """The messages-send-waiting beat entry: the same task, on the same period, from another thread."""

    def __init__(self, period: float):
        self.period, self.stopped = period, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from providers.tasks.messages import send_waiting_messages

        while not self.stopped.wait(self.period):
            send_waiting_messages.apply_async()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(timeout=5)


def test_worker_killed_mid_send_every_message_final_within_the_bound_none_twice(
    workers, live_server, bitrix24, idgtl, settings
):
    from providers.services.installations import application_sync_default
    from providers.services.registration import provider_create

    worker = workers()
    settings.B24_CLIENT_ID, settings.B24_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    application_sync_default()
    portal = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert bitrix24.install(portal, live_server.url + "/b24/install/", mode="event").status_code == 200
    installation = Installation.objects.get(member_id=portal.member_id)
    provider_create(code="sms1", name="SMS via i-dgtl", sender_name=SENDER_NAME, installations=[installation])
    wait_until(
        lambda: ProviderRegistration.objects.filter(state=RegistrationState.REGISTERED).exists(),
        timeout=30,
        message="the provider to be registered",
    )
    idgtl.allowed_sender_names.add(SENDER_NAME)
    idgtl.auto_deliver_after = 1.0  # i-dgtl delivers a second after it took a message (and calls back)
    idgtl.send_answer_delay = IDGTL_TIMEOUT - 1  # ... but holds its answer to POST /message

    ids = [bitrix24.send_sms(portal, "sms1", f"+7999000{n:04d}", f"kill {n}")[0] for n in range(2000, 2040)]
    wait_until(
        lambda: any(r.method == "POST" and r.path.endswith("/message") for r in idgtl.requests),
        timeout=30,
        message="the worker to be inside POST /message",
    )
    kill_group(worker)
    killed_at = time.monotonic()
    idgtl.send_answer_delay = 0
    workers()  # what the process manager does: a new worker

    with Beat(SWEEP_PERIOD):
        wait_until(
            lambda: Message.objects.filter(message_id__in=ids, final_at__isnull=False).count() == len(ids),
            timeout=IDGTL_TIMEOUT + 60,
            interval=0.5,
            message="every message to reach a final status",
        )
    recovered_in = time.monotonic() - killed_at

    sent = [
        item["externalMessageId"]
        for r in idgtl.requests
        if r.method == "POST" and r.path.endswith("/message")
        for item in r.json
    ]
    assert sorted(sent) == sorted(set(sent)), "a message was sent to i-dgtl twice"
    assert len(set(sent)) == len(ids)
    assert set(Message.objects.filter(message_id__in=ids).values_list("state", flat=True)) == {MessageState.DELIVERED}
    wait_until(
        lambda: all(list(portal.message_statuses.get(mid, []))[-1:] == ["delivered"] for mid in ids),
        timeout=60,
        message="the portal to show every delivery",
    )
    print(f"recovered {len(ids)} messages {recovered_in:.1f} s after the kill")
