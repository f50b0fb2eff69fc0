"""The Celery broker: the embedded one (kombu's SQLAlchemy transport over SQLite, for `make run`), and
what the sweeps need to know about a broker that lost its messages (Redis).

kombu's SQLAlchemy transport passes every transport option straight to ``create_engine``, so the
virtual transport's ``polling_interval`` cannot be set through ``broker_transport_options``. With
``worker_prefetch_multiplier=1`` and the default 1 s poll, a worker then takes about one task per
second per process. This subclass accepts ``polling_interval`` (and keeps it out of
``create_engine``), and is registered as the ``b24sqla`` scheme used by the default broker URL.

Several processes (web, worker, beat, a producer script) open the same SQLite file at once. kombu
creates the tables and each queue's row on first use, after a read that says they are missing; its
lock guards the threads of one process only, so two processes may both try to create the same table
(``table ... already exists``) or the same queue (``UNIQUE constraint failed: kombu_queue.name``).
Both are taken here as what they mean: another process created it first.
"""
import logging
from datetime import datetime, timedelta

import redis
from celery import current_app
from django.utils import timezone
from kombu import transport
from kombu.transport import sqlalchemy
from sqlalchemy.exc import IntegrityError, OperationalError

logger = logging.getLogger(__name__)

SCHEME = "b24sqla"
POLLING_INTERVAL = 0.1  # seconds between polls of an empty queue
SQLITE_BUSY_TIMEOUT = 30  # seconds a publish or poll waits for the SQLite file lock
TABLE_CREATE_ATTEMPTS = 3  # kombu has two tables: another process may win the race for each


class Channel(sqlalchemy.Channel):
    def _engine_from_config(self):
        conninfo = self.connection.client
        options = {
            key: value for key, value in conninfo.transport_options.items()
            if key in ("pool_size", "max_overflow", "pool_recycle", "pool_timeout", "echo", "connect_args")
        }
        if conninfo.hostname.startswith("sqlite"):
            # Web, worker and beat all write to one SQLite file: wait for its lock rather than fail a
            # publish with "database is locked" (SQLite's default wait is 5 s).
            options.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT)
        return sqlalchemy.create_engine(conninfo.hostname, **options)

    def _open(self):
        """The engine, once kombu's tables exist (whichever process created them)."""
        for attempt in range(TABLE_CREATE_ATTEMPTS):
            try:
                return super()._open()
            except OperationalError as exc:
                # Another process created a table between SQLAlchemy's check and its CREATE TABLE; the
                # engine was not kept, so the next attempt checks again and creates only what is missing.
                if "already exists" not in str(exc) or attempt == TABLE_CREATE_ATTEMPTS - 1:
                    raise

    def _get_or_create(self, queue):
        """The queue's row, created if missing; a row another process inserted first is read back."""
        queue_cls = self.queue_cls
        found = self.session.query(queue_cls).filter(queue_cls.name == queue).first()
        if found is not None:
            return found
        self.session.add(queue_cls(queue))
        try:
            self.session.commit()
        except IntegrityError:  # UNIQUE kombu_queue.name: it exists now
            self.session.rollback()
        # (A "database is locked" OperationalError propagates: a connection error kombu retries.)
        return self.session.query(queue_cls).filter(queue_cls.name == queue).one()


class Transport(sqlalchemy.Transport):
    Channel = Channel
    polling_interval = POLLING_INTERVAL


def register():
    transport.TRANSPORT_ALIASES[SCHEME] = "b24sms.broker:Transport"


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
    its contents since it was set. The time is when that Redis started (its uptime, to the second),
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
    lost_at = now - timedelta(seconds=uptime)
    logger.warning("the broker lost its messages (restarted empty or flushed): asking again for work waiting "
                   "since before then", extra={"sweep": sweep, "lost_at": lost_at.isoformat()})
    return lost_at
