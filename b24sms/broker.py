"""The embedded Celery broker: kombu's SQLAlchemy transport over SQLite, tuned for `make run`.

kombu's SQLAlchemy transport passes every transport option straight to ``create_engine``, so the
virtual transport's ``polling_interval`` cannot be set through ``broker_transport_options``. With
``worker_prefetch_multiplier=1`` and the default 1 s poll, a worker then takes about one task per
second per process. This subclass accepts ``polling_interval`` (and keeps it out of
``create_engine``), and is registered as the ``b24sqla`` scheme used by the default broker URL.
"""
from kombu import transport
from kombu.transport import sqlalchemy

SCHEME = "b24sqla"
POLLING_INTERVAL = 0.1  # seconds between polls of an empty queue
SQLITE_BUSY_TIMEOUT = 30  # seconds a publish or poll waits for the SQLite file lock


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


class Transport(sqlalchemy.Transport):
    Channel = Channel
    polling_interval = POLLING_INTERVAL


def register():
    transport.TRANSPORT_ALIASES[SCHEME] = "b24sms.broker:Transport"
