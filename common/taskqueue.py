"""The Celery queue as services see it: enqueue a task by its name, and tell whether the broker lost its messages.

One way for the whole project: a service that must have work done in a task enqueues it here, by the
task's registered name (``"providers.tasks.register_provider"``), never by importing the tasks module.
Tasks modules import services (a task loads by id and calls one service); services never import tasks,
so no module imports back up and no import circle exists (docs/architecture.md).

* :func:`enqueue_on_commit` — the usual case: sent once the current transaction commits (nothing is
  sent for work that was rolled back), ``robust`` (a broker that is down is logged and does not fail
  the request whose change was committed; beat's sweeps find the work in the database).
* :func:`enqueue` — sent now (from an on-commit callback, or outside a transaction).
* :func:`enqueue_later` — a delayed run; with tasks run inline (unit tests) a delayed run is left
  to the test, which runs it when it chooses.

Arguments are passed as given (``delay(*args, **kwargs)``, or ``apply_async`` with a countdown).

Every task is looked up in the Celery app's registry; each app's ``AppConfig.ready`` imports its tasks
module, so the registry is complete in every process (tests/test_architecture.py checks that every name
enqueued anywhere is a registered task).
"""

import logging
from datetime import datetime, timedelta

import redis
from celery import current_app
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)


def registered_task(name: str):
    """The task registered under ``name``; KeyError names a task that no tasks module defines."""
    try:
        return current_app.tasks[name]
    except KeyError:
        raise KeyError(
            f"no Celery task is registered as {name!r}: is its app's tasks module imported by its AppConfig.ready()?"
        ) from None


def _send(task, args: tuple, kwargs: dict, countdown: float | None) -> None:
    if countdown is None:
        task.delay(*args, **kwargs)
        return
    options = {"countdown": countdown}
    if args:
        options["args"] = args
    if kwargs:
        options["kwargs"] = kwargs
    task.apply_async(**options)


def enqueue(name: str, *args, countdown: float | None = None, **kwargs) -> None:
    """Send the task ``name`` now (to run after ``countdown`` seconds when given)."""
    _send(registered_task(name), args, kwargs, countdown)


def enqueue_on_commit(name: str, *args, countdown: float | None = None, **kwargs) -> None:
    """Send the task ``name`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: enqueue(name, *args, countdown=countdown, **kwargs), robust=True)


def enqueue_later(name: str, *args, countdown: float, **kwargs) -> None:
    """Send the task ``name`` to run in ``countdown`` seconds; tasks run inline leave a delayed run to the test."""
    if current_app.conf.task_always_eager and countdown > 0:
        return
    _send(registered_task(name), args, kwargs, countdown)


# --- A broker that lost its messages ----------------------------------------------------------------
LOSS_MARKER_KEY = "b24sms:broker-loss-marker:{}"
REDIS_TIMEOUT = 5.0  # seconds


def broker_messages_lost_at(sweep: str) -> datetime | None:
    """When the broker last lost every message it held, if it did since ``sweep`` last asked; else None.

    A Redis restarted without persistence (or flushed) comes back empty: queued tasks, retries held
    for their countdown and unacknowledged deliveries are gone, and nothing brings them back. A sweep
    that would otherwise wait long enough to be sure a task is lost (not merely waiting for its retry)
    asks this: a time means everything that was waiting for a task before it is waiting for nothing.

    Each sweep keeps a marker key in the broker's database; a missing marker means the broker lost
    its contents since it was set. The time is when that Redis started (from its uptime, at the latest),
    so work asked for after the restart, whose task is alive, is not asked for twice. The first call
    ever (no marker yet) answers too. Other brokers (the embedded SQLite one) keep their messages, and
    tasks run inline (unit tests) use none: None.
    """
    url = str(current_app.conf.broker_url or "")
    if current_app.conf.task_always_eager or not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    try:
        now = timezone.now()
        if not client.set(LOSS_MARKER_KEY.format(sweep), now.isoformat(), nx=True):
            return None
        try:
            uptime = float(client.info("server")["uptime_in_seconds"])
        except (redis.ResponseError, KeyError, ValueError):  # INFO not allowed: assume it just happened
            uptime = 0.0
    except redis.RedisError as exc:
        logger.warning("broker unreachable: cannot tell whether it lost its messages", extra={"error": str(exc)})
        return None
    finally:
        client.close()
    # Redis counts its uptime in whole seconds from the whole second it started in: it started after
    # ``now - uptime - 1 s`` and before ``now - uptime + 1 s``. The latest bound is taken (capped at now), so
    # work asked for just before the restart, in the same second, is asked for again (asking twice is
    # harmless); work asked for within a second after it may be asked for twice too.
    lost_at = min(now, now - timedelta(seconds=uptime) + timedelta(seconds=1))
    logger.warning(
        "the broker lost its messages (restarted empty or flushed): asking again for work waiting since before then",
        extra={"sweep": sweep, "lost_at": lost_at.isoformat()},
    )
    return lost_at
