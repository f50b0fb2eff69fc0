"""The embedded default (`make run` with nothing configured): SQLite database + SQLite broker.

A real worker process takes a burst of tasks from the SQLite-backed broker sent by two producers at
once, and every task runs exactly once (the pitfall of kombu's filesystem transport was lost or
half-read messages under load).
"""
import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
BURST = 150


def test_embedded_broker_runs_a_burst_of_tasks_once(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "b24sms.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": f"b24sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        "REDIS_URL": "",
        "LOG_FORMAT": "text",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "b24sms", "worker", "-l", "INFO", "-c", "2", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        producer = (
            "import django; django.setup()\n"
            "from b24sms.tasks import beat_heartbeat\n"
            f"[beat_heartbeat.delay() for _ in range({BURST // 2})]\n"
        )
        results = []

        def produce():
            results.append(subprocess.run([sys.executable, "-c", producer], cwd=ROOT, env=env,
                                          capture_output=True, text=True, timeout=180))

        producers = [threading.Thread(target=produce) for _ in range(2)]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        # Every publish succeeded, even with two producers and the worker on one SQLite file.
        assert [r.returncode for r in results] == [0, 0], "\n".join(r.stderr[-2000:] for r in results)
        succeeded = lambda: log_path.read_text(errors="replace").count("succeeded in")  # noqa: E731
        wait_until(lambda: succeeded() >= BURST, timeout=150, interval=0.5, message=f"{BURST} tasks to succeed")
        text = log_path.read_text(errors="replace")
        assert succeeded() == BURST
        assert "Traceback" not in text and "JSONDecodeError" not in text
    finally:
        worker.terminate()
        worker.wait(timeout=20)
