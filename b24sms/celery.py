"""The Celery application and the beat schedule of every periodic job.

JSON only, UTC, late acknowledgement with reject-on-worker-lost (a task whose worker dies is
delivered again, so every task is written to be idempotent), and soft/hard time limits.

Nothing relies on a queued task surviving: a Redis restarted empty loses every queued task, every
retry waiting for its countdown and every unacknowledged delivery. Beat's sweeps find the waiting
work in the database instead (messages to send, status reports due, registrations pending), each
within a minute of the broker being back; workers run under something that restarts them (the
supervisor of `make run`, ``restart: unless-stopped`` in docker-compose.yml).
"""

import os

from celery import Celery, signals
from celery.schedules import schedule

from b24sms import broker
from common.logging import configure_logging

broker.register()  # the embedded (SQLite) broker's transport: see broker.py

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "b24sms.settings.production")  # as manage.py and wsgi.py

app = Celery("b24sms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,  # a worker started before Redis waits for it
    # On a lost broker connection, tasks already running finish (their work is committed and their
    # state guards make any rerun harmless) rather than being cancelled for a redelivery that a Redis
    # restarted empty would never make. Also silences Celery's warning that asks for a choice.
    worker_cancel_long_running_tasks_on_connection_loss=False,
)
if str(app.conf.broker_url or "").startswith(("redis://", "rediss://")):
    # An unacknowledged task comes back after this long (acks_late): longer than any task runs.
    app.conf.broker_transport_options = {"visibility_timeout": 3600}

DRIFT_REPAIR_PERIOD = 60.0  # s between drift-repair runs; each run takes its share of the portals

# One place for every periodic job. django-celery-beat copies these into the database,
# where operators can see and edit them in the admin (Periodic tasks).
BEAT_SCHEDULE = {
    "b24sms-heartbeat": {"task": "b24sms.tasks.beat_heartbeat", "schedule": schedule(60.0)},
    "sender-names-sync-statuses": {"task": "sendernames.tasks.sync_open_applications", "schedule": schedule(60.0)},
    # Also takes over sends whose lease lapsed (a worker gone mid-send): recovery waits one interval at most.
    "messages-send-waiting": {"task": "providers.tasks.send_waiting_messages", "schedule": schedule(15.0)},
    "messages-reconcile-statuses": {"task": "providers.tasks.reconcile_message_statuses", "schedule": schedule(60.0)},
    # Applies the callback events a lost applying run left (the broker emptied): a status waits 15 s at most.
    "messages-callback-inbox-sweep": {"task": "providers.tasks.sweep_callback_inbox", "schedule": schedule(15.0)},
    "messages-report-statuses": {"task": "providers.tasks.report_pending_statuses", "schedule": schedule(30.0)},
    # Cheap when nothing is stuck; after the broker lost its messages it asks again at once (see the task).
    "providers-resume-stuck-registrations": {
        "task": "providers.tasks.resume_stuck_registrations",
        "schedule": schedule(30.0),
    },
    # ONAPPUNINSTALL and ONAPPUPDATE bound on installations that lack them (e.g. installed before).
    "providers-bind-missing-events": {"task": "providers.tasks.bind_missing_events", "schedule": schedule(60.0)},
    # sender.list against our registrations, a share of the portals per run (REGISTRATION_DRIFT_REPAIR_INTERVAL).
    "providers-repair-drift": {
        "task": "providers.tasks.repair_provider_drift",
        "schedule": schedule(DRIFT_REPAIR_PERIOD),
        "kwargs": {"period": DRIFT_REPAIR_PERIOD},
    },
    # GET /balance of the accounts last read IDGTL_BALANCE_POLL_INTERVAL ago (so that setting is the period).
    "idgtl-poll-balances": {"task": "idgtl.tasks.poll_balances", "schedule": schedule(60.0)},
    # Retention: anonymises old final messages in short batches, for MESSAGES_RETENTION_TIME_BUDGET at most.
    "messages-retention": {"task": "providers.tasks.anonymise_old_messages", "schedule": schedule(300.0)},
}
if os.environ.get("B24SMS_SANDBOX") == "1" and not os.environ["DJANGO_SETTINGS_MODULE"].endswith("production"):
    # The sandbox's fake i-dgtl reviews a sender name within seconds: follow it closely.
    BEAT_SCHEDULE["sender-names-sync-statuses"]["schedule"] = schedule(10.0)
app.conf.beat_schedule = BEAT_SCHEDULE

app.autodiscover_tasks()


@signals.setup_logging.connect
def _log_like_django(**kwargs):
    """Workers and beat write the same JSON lines (with context, redacted) as the web process."""
    configure_logging()


@signals.beat_init.connect
def _heartbeat_at_start(sender=None, **kwargs):
    """/healthz sees beat as soon as it starts (and a worker picks the heartbeat up), not a minute later."""
    try:
        app.send_task("b24sms.tasks.beat_heartbeat")
    except Exception:  # the broker may still be starting; the schedule sends the next one
        pass
