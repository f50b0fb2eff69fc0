"""Workers and beat come back after they exit: the supervisor under `make run`, restart policies in compose.

honcho (behind `make run`) stops every process when one exits and restarts none; a Celery worker can
exit on its own after a Redis restart (kombu's 'hostname' AttributeError). b24sms/supervise.py starts
it again; docker-compose.yml restarts containers with ``restart: unless-stopped``.
"""

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.fixtures.redis_server import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
SUPERVISOR = ROOT / "b24sms" / "supervise.py"
CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *args: (print("child stopping", flush=True), sys.exit(0)))
print("child running", os.getpid(), flush=True)
time.sleep(120)
"""


class Output:
    """A process's output collected in a file (read while it runs)."""

    def __init__(self, path: Path):
        self.path = path

    def text(self) -> str:
        return self.path.read_text(errors="replace") if self.path.exists() else ""

    def started_pids(self, name: str) -> list[int]:
        return [int(pid) for pid in re.findall(rf"\[supervise\] {name}: started \(pid (\d+)\)", self.text())]


def supervise(tmp_path, *args, command) -> tuple[subprocess.Popen, Output]:
    output = Output(tmp_path / "supervise.log")
    with open(output.path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-I", str(SUPERVISOR), "--name", "child", *args, "--", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, output


def stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_a_process_that_exits_is_started_again_until_the_supervisor_is_stopped(tmp_path):
    process, output = supervise(tmp_path, "--restart-delay", "0.2", command=[sys.executable, "-c", CHILD])
    try:
        first = wait_until(
            lambda: "child running" in output.text() and output.started_pids("child"),
            timeout=20,
            message="the child to run",
        )[0]
        os.kill(first, signal.SIGKILL)  # a crash the child cannot clean up after
        pids = wait_until(
            lambda: len(output.started_pids("child")) == 2 and output.started_pids("child"),
            timeout=20,
            message="the child to be started again",
        )
        assert "exited (exit code 137)" in output.text()
        wait_until(lambda: output.text().count("child running") == 2, timeout=20, message="the new child to run")

        process.send_signal(signal.SIGTERM)  # honcho's stop, or Ctrl-C: passed on, and not restarted
        assert process.wait(timeout=20) == 0, output.text()
        assert "child stopping" in output.text() and "[supervise] child: stopped (exit code 0)" in output.text()
        with pytest.raises(ProcessLookupError):
            os.kill(pids[1], 0)
        assert len(output.started_pids("child")) == 2
    finally:
        stop_group(process)


def test_a_process_that_keeps_exiting_at_start_is_given_up(tmp_path):
    """A broken setting is not a crash to retry forever: honcho then stops everything, the error on screen."""
    process, output = supervise(
        tmp_path,
        "--restart-delay",
        "0.05",
        "--give-up-after",
        "3",
        command=[sys.executable, "-c", "import sys; print('bad setting'); sys.exit(3)"],
    )
    try:
        assert process.wait(timeout=30) == 3
        assert len(output.started_pids("child")) == 3 and output.text().count("bad setting") == 3
        assert "not starting it again" in output.text()
    finally:
        stop_group(process)


def test_make_run_puts_worker_and_beat_under_the_supervisor(db):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("run_backoffice", "--dry-run", stdout=out)
    lines = dict(
        line.split(": ", 1) for line in out.getvalue().splitlines() if line.startswith(("web: ", "worker: ", "beat: "))
    )
    assert lines["worker"].startswith(f"{sys.executable} -I {SUPERVISOR} --name worker -- ")
    assert lines["worker"].endswith("-m celery -A b24sms worker --loglevel=INFO --concurrency=2")
    assert lines["beat"].startswith(f"{sys.executable} -I {SUPERVISOR} --name beat -- ")
    assert "supervise" not in lines["web"]


def test_compose_restarts_web_worker_and_beat():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("web", "worker", "beat"):
        assert compose["services"][name].get("restart") == "unless-stopped", name


def test_make_run_brings_a_killed_worker_back(tmp_path):
    """`kill -9` of the worker under run_backoffice: it comes back, and the web never stopped."""
    port = free_port()
    prefixes = (
        "DJANGO_",
        "B24_",
        "B24SMS_",
        "IDGTL_",
        "METRICS_",
        "PUBLIC_BASE_URL",
        "DATABASE_",
        "CELERY_",
        "REDIS_URL",
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "b24sms.settings.local",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "CELERY_BROKER_URL": f"b24sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
            "PORT": str(port),
            "IDGTL_MESSAGES_TOKEN": "a2V5OjE=",
            "IDGTL_SENDER_NAMES_TOKEN": "a2V5OjI=",  # real keys: no sandbox
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "text",
            "DJANGO_DEBUG": "false",
        }
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=180
    )
    output = Output(tmp_path / "run.log")
    with open(output.path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_backoffice"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def web_answers() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5).status == 200
        except OSError:
            return False

    def ready_workers() -> int:
        return len(re.findall(r"worker \|.* ready\.", output.text()))

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # not a zombie

    workers = []
    try:
        try:
            wait_until(
                lambda: ready_workers() == 1 and web_answers(),
                timeout=120,
                interval=0.5,
                message="web and worker to start",
            )
            workers = output.started_pids("worker")
            assert len(workers) == 1
            os.kill(workers[0], signal.SIGKILL)
            wait_until(lambda: ready_workers() == 2, timeout=90, interval=0.5, message="the worker to be back")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{output.text()[-5000:]}") from None
        workers = output.started_pids("worker")
        assert len(workers) == 2 and "[supervise] worker: exited (exit code 137)" in output.text()
        assert process.poll() is None and web_answers()  # nothing else was stopped
        assert "web stopped" not in output.text() and "beat stopped" not in output.text()
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        try:
            process.wait(timeout=40)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    text = output.text()
    for name in ("web", "worker", "beat"):
        assert f"{name} stopped" in text, text[-3000:]
    # Nothing is left running (honcho ends each process group; a Celery worker whose pool children got
    # SIGTERM with it may hang in its warm shutdown until honcho's SIGKILL 5 s later).
    supervised = output.started_pids("worker") + output.started_pids("beat")
    wait_until(lambda: not any(alive(pid) for pid in supervised), timeout=20, message="every supervised process to end")
