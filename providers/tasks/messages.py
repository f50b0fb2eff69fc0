"""Tasks: send waiting messages, reconcile statuses, report statuses to Bitrix24.

Thin: each calls one service. All are idempotent (state guards), so a redelivered task is harmless.
Services enqueue these by name (common/taskqueue.py); only this module imports the services.
"""

from celery import shared_task

from providers.services.delivery import callback_inbox_apply, callback_inbox_sweep, messages_reconcile
from providers.services.reporting import reports_schedule_due, reports_send_pending
from providers.services.sending import sending_run

__all__ = [
    "send_waiting_messages",
    "reconcile_message_statuses",
    "report_pending_statuses",
    "report_installation_statuses",
    "sweep_callback_inbox",
    "apply_callback_events",
]


@shared_task(name="providers.tasks.send_waiting_messages")
def send_waiting_messages():
    """Beat sweep and on-commit run: resolve unknown outcomes, then send everything waiting."""
    return sending_run()


@shared_task(name="providers.tasks.reconcile_message_statuses")
def reconcile_message_statuses():
    return messages_reconcile()


@shared_task(name="providers.tasks.apply_callback_events")
def apply_callback_events():
    """Debounced run asked for by the callbacks: apply the events they stored, in large sets."""
    return callback_inbox_apply()


@shared_task(name="providers.tasks.sweep_callback_inbox")
def sweep_callback_inbox():
    """Beat sweep: apply stored callback events whose uuid is recorded, drop those past the lifetime."""
    return callback_inbox_sweep()


@shared_task(name="providers.tasks.report_pending_statuses")
def report_pending_statuses():
    """Beat sweep: a report run for every installation with status reports due."""
    return reports_schedule_due()


@shared_task(name="providers.tasks.report_installation_statuses")
def report_installation_statuses(installation_id: int):
    return reports_send_pending(installation_id=installation_id)
