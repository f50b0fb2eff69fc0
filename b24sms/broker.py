"""The embedded Celery broker: kombu's SQLAlchemy transport over SQLite, for `make run`. (What the sweeps
need to know about a broker that lost its messages is common/taskqueue.py's ``broker_messages_lost_at``.)

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

from kombu import transport
from kombu.transport import sqlalchemy
from sqlalchemy.exc import IntegrityError, OperationalError

SCHEME = "b24sqla"
POLLING_INTERVAL = 0.1  # seconds between polls of an empty queue
SQLITE_BUSY_TIMEOUT = 30  # seconds a publish or poll waits for the SQLite file lock
TABLE_CREATE_ATTEMPTS = 3  # kombu has two tables: another process may win the race for each


class Channel(sqlalchemy.Channel):
    def _engine_from_config(self):
        conninfo = self.connection.client
        options = {
            key: value
            for key, value in conninfo.transport_options.items()
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
