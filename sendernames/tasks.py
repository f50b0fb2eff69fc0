"""Celery tasks for sender-name applications: thin, take ids, idempotent (see services)."""

from celery import shared_task

from common.taskqueue import broker_messages_lost_at
from sendernames.services import (
    SubmitOutcome,
    accounts_recheck_readability,
    application_submit_perform,
    applications_resume_stalled,
    applications_sync_open,
)

SUBMIT_MAX_RETRIES = 5


def submit_retry_countdown(retries: int) -> int:
    # Under the claim lease (CELERY_TASK_TIME_LIMIT + 60 s), so the stalled-submission sweep of the
    # beat job does not enqueue a second task while this one waits for its retry.
    return min(30 * 2**retries, 300)


@shared_task(bind=True, name="sendernames.tasks.submit_application", max_retries=SUBMIT_MAX_RETRIES)
def submit_application(self, application_id: int):
    """Submit one queued application; a redelivered or repeated task finds it claimed or done and stops."""
    result = application_submit_perform(
        application_id=application_id, final_attempt=self.request.retries >= SUBMIT_MAX_RETRIES
    )
    if result.outcome is SubmitOutcome.RETRY:
        if self.request.is_eager:  # no broker to wait in: the beat job's stalled-submission sweep tries again
            return result.outcome.value
        raise self.retry(countdown=submit_retry_countdown(self.request.retries))
    return result.outcome.value


@shared_task(name="sendernames.tasks.sync_open_applications")
def sync_open_applications():
    """Beat job: ask again for accounts whose read endpoint was absent (daily), poll i-dgtl for every due,
    non-final application of a readable account; restart stalled submissions."""
    rechecked = accounts_recheck_readability()
    report = applications_sync_open()
    applications_resume_stalled(broker_lost_at=broker_messages_lost_at("sender-names"))
    return {
        "checked": report.checked,
        "changed": report.changed,
        "errors": report.errors,
        "skipped": report.skipped,
        "accounts_readable_again": sum(rechecked.values()),
    }
