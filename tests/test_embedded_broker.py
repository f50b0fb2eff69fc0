"""The embedded default (`make run` with nothing configured): SQLite database + SQLite broker.

A real worker process takes a burst of tasks from the SQLite-backed broker sent by two producers at
once, and every task runs exactly once (the pitfall of kombu's filesystem transport was lost or
half-read messages under load). Producers that start at once each create kombu's tables and
queue rows in the one SQLite file without tripping over one another.
"""

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.concurrency import run_in_processes
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
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "b24sms",
                "worker",
                "-l",
                "INFO",
                "-c",
                "2",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        producer = (
            "import django; django.setup()\n"
            "from b24sms.tasks import beat_heartbeat\n"
            f"[beat_heartbeat.delay() for _ in range({BURST // 2})]\n"
        )
        results = []

        def produce():
            results.append(
                subprocess.run(
                    [sys.executable, "-c", producer], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
                )
            )

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


PRODUCERS = 4
QUEUES = [f"race-{n}" for n in range(40)]
ROUNDS = 6  # each on a new file; without the fix, some round failed in every run


def publish_to_each_queue(url: str, queues: list[str]) -> int:
    """One producer (in a process of its own): a first message to each queue of a new broker file."""
    from kombu import Connection

    from b24sms import broker

    broker.register()
    with Connection(url) as connection:
        for name in queues:
            with connection.SimpleQueue(name) as simple_queue:
                simple_queue.put({"queue": name})
    return len(queues)


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")  # kombu's models
def test_producers_starting_at_once_create_each_queue_once(tmp_path):
    """Seen in CI: `UNIQUE constraint failed: kombu_queue.name` (and `table kombu_queue already exists`)
    when producers created the embedded broker's tables and queues at the same moment."""
    for round_number in range(ROUNDS):
        path = tmp_path / f"broker-{round_number}.sqlite3"
        url = f"b24sqla+sqlite:///{path}"
        if round_number % 2:
            # The tables exist already (as after any earlier start): the producers stay in step, all
            # racing for each new queue. Otherwise they also race to create the tables.
            publish_to_each_queue(url, ["warm-up"])
        results = run_in_processes(publish_to_each_queue, PRODUCERS, args=(url, QUEUES), timeout=120)
        assert results == [len(QUEUES)] * PRODUCERS
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "SELECT q.name, COUNT(DISTINCT q.id), COUNT(m.id) FROM kombu_queue q "
                "LEFT JOIN kombu_message m ON m.queue_id = q.id WHERE q.name LIKE 'race-%' "
                "GROUP BY q.name"
            ).fetchall()
        assert sorted(rows) == sorted((name, 1, PRODUCERS) for name in QUEUES)
