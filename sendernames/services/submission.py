"""Submitting a queued application to i-dgtl, exactly once.

State guard: QUEUED → SUBMITTING is claimed under a row lock before any HTTP, and the outcome is
recorded under the lock again. A SUBMITTING application whose claim is younger than a task can
run belongs to another worker and is left alone; an older one is resumed. Whenever an earlier
attempt may have reached i-dgtl (a transient error or an abandoned claim), the application is
looked up at i-dgtl before anything is sent again.
"""

import dataclasses
import datetime as dt
import enum
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from common.taskqueue import enqueue_on_commit
from idgtl.client import (
    IdgtlConfigurationError,
    IdgtlError,
    IdgtlNotFound,
    IdgtlOutcomeUnknown,
    IdgtlTransientError,
    IdgtlValidationError,
)
from sendernames.models import (
    ErrorKind,
    SenderNameApplication,
    SenderNameStatusChange,
    StatusChangeCause,
    SubmissionState,
)
from sendernames.services import remote
from sendernames.services.status import moscow_date, next_check_at

logger = logging.getLogger(__name__)

SUBMIT_TASK = "sendernames.tasks.submit_application"
# Sends of the same application within one attempt: the second only after a lookup found nothing.
MAX_SENDS_PER_ATTEMPT = 2


def claim_lease() -> dt.timedelta:
    """How long a SUBMITTING claim belongs to its worker: longer than any task may run."""
    return dt.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


class SubmitOutcome(enum.Enum):
    SUBMITTED = "submitted"
    FAILED = "failed"  # permanent: configuration or rejected; the operator must act
    RETRY = "retry"  # transient: the task tries again later (looking up first)
    SKIPPED = "skipped"  # nothing to do: not queued, already submitted, or another worker has it


@dataclasses.dataclass
class SubmitResult:
    outcome: SubmitOutcome
    application: SenderNameApplication | None = None


def _claim(application_id: int) -> tuple[SenderNameApplication | None, bool, bool]:
    """Move the application to SUBMITTING; return it, whether this worker claimed it, and whether it
    must be looked up at i-dgtl before sending."""
    with transaction.atomic():
        application = (
            SenderNameApplication.objects.select_for_update()
            .select_related("account")
            .filter(pk=application_id)
            .first()
        )
        if application is None:
            return None, False, False
        state = application.submission_state
        if state == SubmissionState.QUEUED:
            needs_lookup = application.last_error_kind == ErrorKind.TRANSIENT
        elif state == SubmissionState.SUBMITTING and application.updated_at < timezone.now() - claim_lease():
            needs_lookup = True  # its worker died mid-call
            logger.warning("Resuming an abandoned submission", extra={"application_id": application.pk})
        else:
            return application, False, False
        application.submission_state = SubmissionState.SUBMITTING
        application.save(update_fields=["submission_state", "updated_at"])
        return application, True, needs_lookup


def _record_success(application_id: int, record: dict) -> SenderNameApplication:
    now = timezone.now()
    with transaction.atomic():
        application = SenderNameApplication.objects.select_for_update().get(pk=application_id)
        status = remote.remote_status(record)
        previous = application.status
        application.remote_id = remote.remote_id_of(record)
        application.status = status
        application.fee = remote.remote_fee(record)
        application.submission_state = SubmissionState.SUBMITTED
        application.submitted_at = application.submitted_at or now
        application.status_checked_at = now
        application.next_status_check_at = next_check_at(application, now)
        application.last_error_kind, application.last_error_code, application.last_error_message = "", None, ""
        if status != previous:
            application.status_manual = False
            application.status_changed_at = now
            application.status_date = moscow_date(now)
        application.save()
        if status != previous:
            SenderNameStatusChange.objects.create(
                application=application,
                previous_status=previous,
                status=status,
                comment=str(record.get("comment") or ""),
                cause=StatusChangeCause.SUBMISSION,
            )
    logger.info(
        "Sender-name application submitted",
        extra={"application_id": application_id, "remote_id": application.remote_id, "status": status},
    )
    return application


def _record_error(application_id: int, *, kind: str, error: IdgtlError | None, message: str, state: str):
    with transaction.atomic():
        application = SenderNameApplication.objects.select_for_update().get(pk=application_id)
        application.submission_state = state
        application.last_error_kind = kind
        application.last_error_code = getattr(error, "code", None)
        application.last_error_message = message
        application.save(
            update_fields=["submission_state", "last_error_kind", "last_error_code", "last_error_message", "updated_at"]
        )
    log = logger.info if kind == ErrorKind.REJECTED else logger.warning
    log(
        "Sender-name submission failed",
        extra={"application_id": application_id, "kind": kind, "code": getattr(error, "code", None), "state": state},
    )
    return application


def _adopt_duplicate(client, application, error: IdgtlValidationError) -> dict | None:
    """After an unanswered send, i-dgtl's 'Duplicates with existing name (id = N)' may be our own record."""
    remote_id = remote.duplicate_remote_id(error.message)
    if remote_id is None:
        return None
    record = client.get_sender_name(remote_id)
    record.setdefault("id", remote_id)
    if remote.remote_record_matches(application, record) and remote._unclaimed(application, remote_id):
        return record
    return None


def application_submit_perform(*, application_id: int, final_attempt: bool = False, client=None) -> SubmitResult:
    """Run by the submit task: send a queued application to i-dgtl and record what happened."""
    application, claimed, needs_lookup = _claim(application_id)
    if not claimed:
        return SubmitResult(SubmitOutcome.SKIPPED, application)
    client = client or remote.client_for(application.account)
    try:
        if needs_lookup:
            found = remote.remote_lookup(client, application)
            if found is not None:
                logger.info("Found the earlier submission at i-dgtl", extra={"application_id": application_id})
                return SubmitResult(SubmitOutcome.SUBMITTED, _record_success(application_id, found))
        body = remote.application_remote_body(application)
        files = remote.application_remote_files(application)
        sends = 0
        while True:
            sends += 1
            try:
                record = client.create_sender_name(body, files)
                if remote.remote_id_of(record) is None:
                    raise IdgtlOutcomeUnknown("i-dgtl answered 200 without an application id.")
                return SubmitResult(SubmitOutcome.SUBMITTED, _record_success(application_id, record))
            except IdgtlOutcomeUnknown:
                needs_lookup = True
                found = remote.remote_lookup(client, application)
                if found is not None:
                    return SubmitResult(SubmitOutcome.SUBMITTED, _record_success(application_id, found))
                if sends >= MAX_SENDS_PER_ATTEMPT:
                    raise
            except IdgtlValidationError as exc:
                if needs_lookup:
                    found = _adopt_duplicate(client, application, exc)
                    if found is not None:
                        return SubmitResult(SubmitOutcome.SUBMITTED, _record_success(application_id, found))
                raise
    except remote.DocumentUnreadable as exc:
        message = _(
            "The document “%(name)s” cannot be read from storage, so nothing was sent; attach the "
            "documents again (or restore the media volume) and submit again."
        ) % {"name": exc.document.original_name}
        return SubmitResult(
            SubmitOutcome.FAILED,
            _record_error(
                application_id, kind=ErrorKind.CONFIGURATION, error=None, message=message, state=SubmissionState.FAILED
            ),
        )
    except IdgtlConfigurationError as exc:
        return SubmitResult(
            SubmitOutcome.FAILED,
            _record_error(
                application_id,
                kind=ErrorKind.CONFIGURATION,
                error=exc,
                message=remote.configuration_message(exc),
                state=SubmissionState.FAILED,
            ),
        )
    except IdgtlValidationError as exc:
        return SubmitResult(
            SubmitOutcome.FAILED,
            _record_error(
                application_id, kind=ErrorKind.REJECTED, error=exc, message=exc.message, state=SubmissionState.FAILED
            ),
        )
    except IdgtlNotFound as exc:
        message = _("i-dgtl answered 404 Not Found: check the account's API URL.")
        return SubmitResult(
            SubmitOutcome.FAILED,
            _record_error(
                application_id, kind=ErrorKind.CONFIGURATION, error=exc, message=message, state=SubmissionState.FAILED
            ),
        )
    except (IdgtlTransientError, IdgtlError) as exc:
        # Unanswered or refused for now: queue again (looking up first next time) or give up visibly.
        state = SubmissionState.FAILED if final_attempt else SubmissionState.QUEUED
        message = _("i-dgtl is not answering (%(error)s).") % {"error": exc.message or exc.__class__.__name__}
        if final_attempt:
            message += " " + _("Gave up after several attempts; submit again later (i-dgtl will be checked first).")
        application = _record_error(application_id, kind=ErrorKind.TRANSIENT, error=exc, message=message, state=state)
        return SubmitResult(SubmitOutcome.FAILED if final_attempt else SubmitOutcome.RETRY, application)


def applications_resume_stalled(
    *, now: dt.datetime | None = None, broker_lost_at: dt.datetime | None = None
) -> list[int]:
    """Enqueue again submissions whose task was lost (queued, or claimed by a worker that died).

    After the claim lease, as a task waiting for its retry is still queued in the broker. When the
    broker lost its messages (``broker_lost_at``, common/taskqueue.py), the queued ones from before then
    wait for nothing: they are enqueued at once. A claimed one keeps its lease (its worker may still be
    calling i-dgtl; a second task would find it claimed and stop).
    """
    now = now or timezone.now()
    stale = Q(
        submission_state__in=[SubmissionState.QUEUED, SubmissionState.SUBMITTING], updated_at__lt=now - claim_lease()
    )
    if broker_lost_at is not None:
        stale |= Q(submission_state=SubmissionState.QUEUED, updated_at__lt=broker_lost_at)
    stalled = list(SenderNameApplication.objects.filter(stale).order_by("pk").values_list("pk", flat=True)[:1000])
    for application_id in stalled:
        logger.warning("Re-enqueuing a stalled submission", extra={"application_id": application_id})
        enqueue_on_commit(SUBMIT_TASK, application_id)
    return stalled
