"""Task: retention of messages (thin: calls one service; batches commit on their own, so a rerun goes on)."""

from celery import shared_task

from providers.services.retention import messages_anonymise_old

__all__ = ["anonymise_old_messages"]


@shared_task(name="providers.tasks.anonymise_old_messages")
def anonymise_old_messages():
    """Beat, every 5 minutes: anonymise final messages older than MESSAGES_RETENTION_DAYS (0: none)."""
    return messages_anonymise_old()
