"""The embedded database (SQLite) with real processes: where callbacks were seen overtaking the send's answer.

gunicorn (web: HANDLER and i-dgtl callbacks) and a Celery worker share one SQLite file, as under
`make run`; the broker is the integration stack's Redis (a queue of this test's own). The fakes run
in the test process: Bitrix24 posts a burst of SMS, and i-dgtl posts every callback (sent, then
delivered or undelivered) before it answers POST /message. Every message must end final at the portal.
"""

import json
import os
import socket
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fixtures.worker import ROOT, start_worker
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CLIENT_ID = "local.sqlite0000.1"
CLIENT_SECRET = "sqlite-client-secret"
SENDER_NAME = "MyShop"
BURST = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SqliteStack:
    def __init__(self, env: dict, url: str):
        self.env, self.url = env, url

    def manage(self, *args, timeout=120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stdout

    def python(self, code: str):
        """Run ``code`` (which sets ``result``) in a Django process on this stack's database; its result as JSON."""
        script = "import json, django\ndjango.setup()\n" + code + "\nprint('RESULT=' + json.dumps(result))\n"
        completed = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert completed.returncode == 0, completed.stderr[-4000:]
        return json.loads(completed.stdout.rsplit("RESULT=", 1)[1])


@pytest.fixture
def sqlite_stack(tmp_path, fake_idgtl, fake_bitrix24):
    port = _free_port()
    env = {
        **os.environ,  # the fake i-dgtl's URL and keys (exported by its fixture), the Redis broker
        "DJANGO_SETTINGS_MODULE": "b24sms.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'b24sms.sqlite3'}",
        "REDIS_URL": os.environ["CELERY_BROKER_URL"],
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_TASK_DEFAULT_QUEUE": f"b24sms-sqlite-{uuid.uuid4().hex[:10]}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "B24_OAUTH_URL": fake_bitrix24.oauth_url,
        "B24_CLIENT_ID": CLIENT_ID,
        "B24_CLIENT_SECRET": CLIENT_SECRET,
        "DJANGO_MEDIA_ROOT": str(tmp_path / "media"),
        "LOG_FORMAT": "text",
    }
    stack = SqliteStack(env, env["PUBLIC_BASE_URL"])
    stack.manage("migrate", "--noinput", "-v0")
    web_log = open(tmp_path / "web.log", "w")
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "b24sms.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdout=web_log,
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        worker = start_worker(env, tmp_path, env["CELERY_TASK_DEFAULT_QUEUE"])
        wait_until(
            lambda: web.poll() is not None or "Booting worker" in (tmp_path / "web.log").read_text(),
            timeout=30,
            message="gunicorn to start",
        )
        assert web.poll() is None, (tmp_path / "web.log").read_text()[-4000:]
        stack.web_log, stack.worker = tmp_path / "web.log", worker
        yield stack
    finally:
        if worker is not None:
            worker.stop()
        web.terminate()
        web.wait(timeout=20)
        web_log.close()


@pytest.fixture
def fakes(fake_idgtl, bitrix24):
    fake_idgtl.reset()
    fake_idgtl.allowed_sender_names.add(SENDER_NAME)
    yield fake_idgtl, bitrix24
    fake_idgtl.reset()


def test_callbacks_before_the_send_answer_on_sqlite_lose_nothing(sqlite_stack, fakes):
    idgtl, bitrix24 = fakes
    portal = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    response = wait_until(
        lambda: (
            (r := bitrix24.install(portal, sqlite_stack.url + "/b24/install/", mode="event")).status_code == 200 and r
        ),
        timeout=30,
        interval=0.5,
        message="the install to be accepted",
    )
    assert response.status_code == 200
    sqlite_stack.python(
        "from providers.models import Installation\n"
        "from providers.services.registration import provider_create\n"
        f"provider_create(code='sms1', name='SMS via i-dgtl', sender_name={SENDER_NAME!r},"
        " installations=list(Installation.objects.all()))\n"
        "result = True"
    )
    wait_until(lambda: "sms1" in portal.providers, timeout=60, message="the provider to be registered on the portal")

    idgtl.callbacks_before_answer = True
    numbers = [f"+7999200{n:04d}" for n in range(1, BURST)] + ["+79992000000"]  # ...0000: undeliverable
    with ThreadPoolExecutor(max_workers=8) as pool:  # Bitrix24's queue posts a burst in parallel
        posted = list(pool.map(lambda number: bitrix24.send_sms(portal, "sms1", number, "early callbacks"), numbers))
    assert {r.status_code for _mid, r in posted} == {200}
    expected = {
        mid: "undelivered" if number.endswith("0000") else "delivered"
        for (mid, _response), number in zip(posted, numbers, strict=False)
    }

    def finals_at_the_portal():
        return sum(1 for mid, status in expected.items() if portal.message_statuses.get(mid, [])[-1:] == [status])

    wait_until(
        lambda: finals_at_the_portal() == len(expected),
        timeout=150,
        interval=0.5,
        message="every final status to reach the portal",
    )

    stored = sqlite_stack.python(
        "from django.db.models import Count\n"
        "from providers.models import Message, UnmatchedCallbackEvent\n"
        "result = {'states': dict(Message.objects.order_by().values_list('state').annotate(n=Count('id'))),\n"
        "          'kept': UnmatchedCallbackEvent.objects.count()}"
    )
    assert stored == {"states": {"delivered": BURST - 1, "undelivered": 1}, "kept": 0}
    posts = [r for r in idgtl.requests if r.method == "POST" and r.path.endswith("/message")]
    assert sum(len(r.json) for r in posts) == BURST  # each sent once
    # Every callback came before its uuid was recorded, was stored, and was answered 200 at once.
    assert len(idgtl.callbacks) == 2 * BURST
    assert all(c["attempts"] == [200] and json.loads(c["answer"])["stored"] == 1 for c in idgtl.callbacks)
    logs = sqlite_stack.web_log.read_text() + sqlite_stack.worker.logs()
    assert "Traceback" not in logs and "database is locked" not in logs
