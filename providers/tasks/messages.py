"""Tasks: send waiting messages, reconcile statuses, report statuses to Bitrix24.

Thin: each calls one service. All are idempotent (state guards), so a redelivered task is harmless.
"""
from celery import current_app, shared_task

__all__ = [
    "send_waiting_messages", "reconcile_message_statuses", "report_pending_statuses", "report_installation_statuses",
    "sweep_callback_inbox", "enqueue_later",
]


def enqueue_later(task, *, args=(), countdown: float = 0.0) -> None:
    """apply_async with a delay; in eager mode (unit tests) a delayed run is left to the test."""
    if current_app.conf.task_always_eager and countdown > 0:
        return
    task.apply_async(args=list(args), countdown=countdown)


@shared_task(name="providers.tasks.send_waiting_messages")
def send_waiting_messages():
    """Beat sweep and on-commit run: resolve unknown outcomes, then send everything waiting."""
    from ..services.sending import sending_run

    return sending_run()


@shared_task(name="providers.tasks.reconcile_message_statuses")
def reconcile_message_statuses():
    from ..services.delivery import messages_reconcile

    return messages_reconcile()


@shared_task(name="providers.tasks.sweep_callback_inbox")
def sweep_callback_inbox():
    """Beat sweep: apply kept callback events whose uuid became known, drop those past the lifetime."""
    from ..services.delivery import callback_inbox_sweep

    return callback_inbox_sweep()


@shared_task(name="providers.tasks.report_pending_statuses")
def report_pending_statuses():
    """Beat sweep: a report run for every installation with status reports due."""
    from ..services.reporting import reports_schedule_due

    return reports_schedule_due()


@shared_task(name="providers.tasks.report_installation_statuses")
def report_installation_statuses(installation_id: int):
    from ..services.reporting import reports_send_pending

    return reports_send_pending(installation_id=installation_id)
