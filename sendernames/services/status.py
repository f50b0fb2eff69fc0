"""Following the review status of submitted applications at i-dgtl.

One application (manual refresh) or all that are due (periodic sync). Polling stops at a final
status; an application long in review is polled less often (the interval doubles for every day
in review, up to a cap); an unknown status string is stored as it is, polled on, and warned about
once when it appears. An account whose read endpoint is absent is not polled (``readability``) and
is asked again once a day. A status an operator set by hand is replaced by a read only when the read
is further along the review (``SENDER_NAME_STATUS_STAGE``): never by an older one.
"""

import dataclasses
import datetime as dt
import logging
import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from idgtl.client import IdgtlConfigurationError, IdgtlError, IdgtlNotFound, IdgtlTransientError
from idgtl.contract import SENDER_NAME_FINAL_STATUSES, SENDER_NAME_STATUS_STAGE, SenderNameStatus
from idgtl.models import IdgtlAccount
from sendernames.models import (
    ErrorKind,
    SenderNameApplication,
    SenderNameStatusChange,
    StatusChangeCause,
    StatusReadability,
    SubmissionState,
    status_label,
)
from sendernames.services import readability, remote
from sendernames.services.remote import ReadRouteAbsent
from sendernames.validation import MOSCOW

logger = logging.getLogger(__name__)

BACKOFF_PERIOD = dt.timedelta(days=1)  # the polling interval doubles for every day in review ...
MAX_INTERVAL_FACTOR = 24  # ... up to this many times SENDER_NAME_SYNC_INTERVAL (6 h with the default 15 min)
SYNC_BATCH_SIZE = 500
SYNC_CLAIM_LEASE = dt.timedelta(minutes=10)  # a claimed application is not picked again meanwhile
TRANSIENT_ERRORS_BEFORE_PAUSE = 3  # consecutive failures that pause one account for the rest of a cycle
SYNC_FIELDS = [
    "status",
    "status_comment",
    "fee",
    "status_checked_at",
    "next_status_check_at",
    "last_error_kind",
    "last_error_code",
    "last_error_message",
    "updated_at",
    "status_manual",
    "status_date",
    "status_changed_at",
]
UNREADABLE_KIND = "unreadable"  # RefreshResult.error_kind when i-dgtl has no read endpoint


def sync_interval(submitted_at: dt.datetime | None, now: dt.datetime) -> dt.timedelta:
    base = settings.SENDER_NAME_SYNC_INTERVAL
    days_in_review = max(0, int((now - (submitted_at or now)) / BACKOFF_PERIOD))
    return dt.timedelta(seconds=min(base * 2 ** min(days_in_review, 16), base * MAX_INTERVAL_FACTOR))


def next_check_at(application: SenderNameApplication, now: dt.datetime) -> dt.datetime | None:
    if application.status in SENDER_NAME_FINAL_STATUSES:
        return None
    return now + sync_interval(application.submitted_at, now)


def moscow_date(moment: dt.datetime) -> dt.date:
    return timezone.localtime(moment, MOSCOW).date()


def read_supersedes_manual(manual: str, read: str) -> bool:
    """Whether a status read from i-dgtl replaces one set by hand: only one further along the review."""
    manual_stage, read_stage = SENDER_NAME_STATUS_STAGE.get(manual), SENDER_NAME_STATUS_STAGE.get(read)
    return manual_stage is not None and read_stage is not None and read_stage > manual_stage


def _apply_record(application: SenderNameApplication, record: dict, *, cause: str, now: dt.datetime):
    """Copy i-dgtl's view onto the application; return an unsaved history row if the status changed."""
    previous = application.status
    status = remote.remote_status(record, default=previous)
    comment = str(record.get("comment") or "")
    if application.status_manual and status != previous and not read_supersedes_manual(previous, status):
        # Older (or unknown): the operator's stays. The same stage (APPROVED read, REJECTED set) is a conflict.
        conflict = SENDER_NAME_STATUS_STAGE.get(status, -1) == SENDER_NAME_STATUS_STAGE.get(previous)
        (logger.warning if conflict else logger.info)(
            "i-dgtl reports a status not further along than the one set by hand; the one set by hand stays",
            extra={"application_id": application.pk, "status": status, "manual": previous, "conflict": conflict},
        )
        status, comment = previous, application.status_comment
    elif application.status_manual and status == previous:
        application.status_manual = False  # i-dgtl confirms it: from now on the status is i-dgtl's again
    application.status = status
    application.status_comment = comment
    fee = remote.remote_fee(record)
    if fee is not None:
        application.fee = fee
    application.status_checked_at = now
    application.next_status_check_at = next_check_at(application, now)
    application.last_error_kind, application.last_error_code, application.last_error_message = "", None, ""
    application.updated_at = now
    if status == previous:
        return None
    application.status_manual = False
    application.status_changed_at = now
    application.status_date = moscow_date(now)
    if status not in SenderNameStatus.values:
        logger.warning(
            "i-dgtl reported an unknown sender-name status; it is stored as is and polled on",
            extra={"application_id": application.pk, "status": status},
        )
    return SenderNameStatusChange(
        application=application, previous_status=previous, status=status, comment=comment, cause=cause, created_at=now
    )


def _apply_error(application: SenderNameApplication, error: IdgtlError, *, now: dt.datetime) -> str:
    if isinstance(error, IdgtlConfigurationError):
        kind, message = ErrorKind.CONFIGURATION, remote.configuration_message(error)
    elif isinstance(error, IdgtlNotFound):
        kind, message = ErrorKind.NOT_FOUND, _("i-dgtl does not know id %(id)s.") % {"id": application.remote_id}
    else:
        kind, message = (
            ErrorKind.TRANSIENT,
            _("i-dgtl is not answering (%(error)s).") % {"error": error.message or error.__class__.__name__},
        )
    application.last_error_kind, application.last_error_code, application.last_error_message = kind, error.code, message
    application.status_checked_at = now
    application.next_status_check_at = now + sync_interval(application.submitted_at, now)
    application.updated_at = now
    return message


@dataclasses.dataclass
class RefreshResult:
    application: SenderNameApplication
    previous_status: str
    changed: bool
    error_kind: str = ""
    message: str = ""

    @property
    def summary(self) -> str:
        """What happened, for the operator (admin action) and the API consumer alike."""
        if self.error_kind:
            return self.message
        if self.changed:
            return _("Status changed: %(old)s → %(new)s.") % {
                "old": status_label(self.previous_status) or "—",
                "new": self.application.status_label,
            }
        return _("Status unchanged: %(status)s.") % {"status": self.application.status_label}


def application_refresh_status(
    *, application_id: int, cause: str = StatusChangeCause.MANUAL_REFRESH, client=None, now: dt.datetime | None = None
) -> RefreshResult:
    """Ask i-dgtl for one application's status now and record any change."""
    application = SenderNameApplication.objects.select_related("account").get(pk=application_id)
    if application.submission_state != SubmissionState.SUBMITTED or application.remote_id is None:
        raise ValidationError(_("This application has not been submitted to i-dgtl yet."), code="not_submitted")
    client = client or remote.client_for(application.account)
    now = now or timezone.now()
    try:
        record, error = remote.remote_read(client, application), None
    except ReadRouteAbsent as exc:
        readability.account_mark_unreadable(
            account_id=application.account_id, http_status=exc.http_status, detail=exc.detail, now=now
        )
        return RefreshResult(application, application.status, False, UNREADABLE_KIND, readability.unreadable_message())
    except IdgtlError as exc:
        record, error = None, exc
    if error is None or isinstance(error, IdgtlNotFound):  # the read endpoint answered
        readability.account_mark_readable(account_id=application.account_id, now=now)
    with transaction.atomic():
        application = SenderNameApplication.objects.select_for_update().get(pk=application_id)
        previous = application.status
        if error is not None:
            message = _apply_error(application, error, now=now)
            application.save(update_fields=SYNC_FIELDS)
            logger.warning(
                "Sender-name status refresh failed",
                extra={"application_id": application_id, "kind": application.last_error_kind},
            )
            return RefreshResult(application, previous, False, application.last_error_kind, message)
        change = _apply_record(application, record, cause=cause, now=now)
        application.save(update_fields=SYNC_FIELDS)
        if change is not None:
            change.save()
    return RefreshResult(application, previous, change is not None)


# --- Periodic sync -------------------------------------------------------------------------------
@dataclasses.dataclass
class SyncReport:
    checked: int = 0
    changed: int = 0
    errors: int = 0
    skipped: int = 0  # claimed but not asked this cycle (account paused after errors, or out of time)


def open_applications_due(now: dt.datetime):
    """Submitted, not final, due, and of an account whose read endpoint answers."""
    return (
        SenderNameApplication.objects.filter(
            submission_state=SubmissionState.SUBMITTED, remote_id__isnull=False, next_status_check_at__lte=now
        )
        .exclude(status__in=SENDER_NAME_FINAL_STATUSES)
        .exclude(account_id__in=readability.unreadable_account_ids())
    )


def _claim_batch(now: dt.datetime, size: int) -> list[SenderNameApplication]:
    with transaction.atomic():
        batch = list(
            open_applications_due(now).select_for_update(skip_locked=True).order_by("next_status_check_at", "pk")[:size]
        )
        if batch:
            SenderNameApplication.objects.filter(pk__in=[a.pk for a in batch]).update(
                next_status_check_at=now + SYNC_CLAIM_LEASE
            )
    return batch


MAX_UPDATE_GROUPS = 20


def _drop_moved(batch, changes, claimed_status: dict[int, tuple]):
    """Leave out rows whose status someone else (a manual refresh, an operator setting it by hand) wrote
    while this batch was at i-dgtl, so their newer values stay and their change is not recorded twice."""
    current = {
        pk: (status, changed_at)
        for pk, status, changed_at in SenderNameApplication.objects.select_for_update()
        .filter(pk__in=claimed_status)
        .values_list("pk", "status", "status_changed_at")
    }
    moved = {pk for pk, status in claimed_status.items() if current.get(pk) != status}
    if not moved:
        return batch, changes
    return (
        [a for a in batch if a.pk not in moved],
        [change for change in changes if change.application_id not in moved],
    )


def _write_batch(batch: list[SenderNameApplication]) -> None:
    """Save the synced fields of a batch in few statements.

    Most rows of a cycle end up with identical values (same status, no error, same next check), so
    rows are grouped by their values and each group is one ``UPDATE ... WHERE id IN (...)``; rows
    beyond a few distinct groups (e.g. individual rejection comments) go through ``bulk_update``.
    """
    groups: dict[tuple, list[int]] = {}
    for application in batch:
        key = tuple(getattr(application, name) for name in SYNC_FIELDS)
        groups.setdefault(key, []).append(application.pk)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    for key, ids in ordered[:MAX_UPDATE_GROUPS]:
        SenderNameApplication.objects.filter(pk__in=ids).update(**dict(zip(SYNC_FIELDS, key, strict=False)))
    rest = {pk for _key, ids in ordered[MAX_UPDATE_GROUPS:] for pk in ids}
    if rest:
        SenderNameApplication.objects.bulk_update([a for a in batch if a.pk in rest], SYNC_FIELDS)


def applications_sync_open(
    *,
    now: dt.datetime | None = None,
    batch_size: int = SYNC_BATCH_SIZE,
    time_budget: float | None = None,
    client_for=None,
) -> SyncReport:
    """One sync cycle: ask i-dgtl for every due, non-final application and record the changes.

    Reads and writes in batches (one claim query and one update per batch, history rows in bulk),
    one client (one HTTP session) per account for the whole cycle, and a time budget under the
    task's soft limit, checked before every call: what is not reached stays due for the next cycle.
    """
    client_for = client_for or remote.client_for
    budget = time_budget if time_budget is not None else settings.CELERY_TASK_SOFT_TIME_LIMIT * 0.8
    deadline = time.monotonic() + budget
    report = SyncReport()
    clients: dict[int, object] = {}
    accounts: dict[int, IdgtlAccount] = {}
    paused: dict[int, IdgtlError] = {}
    transient_streak: dict[int, int] = {}
    while time.monotonic() < deadline:
        cycle_now = now or timezone.now()
        batch = _claim_batch(cycle_now, batch_size)
        if not batch:
            break
        missing = {a.account_id for a in batch} - accounts.keys()
        if missing:
            accounts.update(IdgtlAccount.objects.in_bulk(missing))
        changes = []
        claimed_status = {application.pk: (application.status, application.status_changed_at) for application in batch}
        checked_at = now or timezone.now()  # one time for the batch, so equal rows are written together
        for application in batch:
            account_id = application.account_id
            if time.monotonic() >= deadline:  # e.g. a rate limit shared with message sending slowed the calls
                application.next_status_check_at = checked_at  # due again at once: the next cycle asks
                application.updated_at = checked_at
                report.skipped += 1
                continue
            if account_id in paused:
                application.next_status_check_at = checked_at + sync_interval(application.submitted_at, checked_at)
                application.updated_at = checked_at
                report.skipped += 1
                continue
            client = clients.get(account_id)
            if client is None:
                client = clients[account_id] = client_for(accounts[account_id])
            try:
                record = remote.remote_read(client, application)
            except ReadRouteAbsent as exc:
                # The route, not this id: stop polling the account (it is asked again daily) and leave the row
                # as it was.
                readability.account_mark_unreadable(
                    account_id=account_id, http_status=exc.http_status, detail=exc.detail, now=checked_at
                )
                paused[account_id] = exc
                application.next_status_check_at = checked_at + sync_interval(application.submitted_at, checked_at)
                application.updated_at = checked_at
                report.skipped += 1
                continue
            except IdgtlError as exc:
                _apply_error(application, exc, now=checked_at)
                report.errors += 1
                if isinstance(exc, IdgtlConfigurationError):
                    paused[account_id] = exc
                elif isinstance(exc, IdgtlTransientError):
                    transient_streak[account_id] = transient_streak.get(account_id, 0) + 1
                    if transient_streak[account_id] >= TRANSIENT_ERRORS_BEFORE_PAUSE:
                        paused[account_id] = exc
                continue
            transient_streak[account_id] = 0
            report.checked += 1
            change = _apply_record(application, record, cause=StatusChangeCause.PERIODIC_SYNC, now=checked_at)
            if change is not None:
                changes.append(change)
        with transaction.atomic():
            batch, changes = _drop_moved(batch, changes, claimed_status)
            _write_batch(batch)
            SenderNameStatusChange.objects.bulk_create(changes)
        report.changed += len(changes)
    for account_id, error in paused.items():
        logger.warning(
            "Sender-name sync paused for an account this cycle",
            extra={
                "account_id": account_id,
                "error": error.__class__.__name__,
                "code": getattr(error, "code", getattr(error, "http_status", None)),
            },
        )
    for client in clients.values():
        close = getattr(client, "close", None)
        if callable(close):
            close()
    return report


# --- Accounts whose read endpoint is absent: asked again once a day ---------------------------------
RECHECK_AFTER_ERROR = dt.timedelta(hours=1)  # the daily check itself failed (i-dgtl down, a bad key): sooner


def _probe_application(account_id: int) -> SenderNameApplication | None:
    """The application whose read decides: an open one if any, else the latest submitted."""
    submitted = SenderNameApplication.objects.filter(
        account_id=account_id, submission_state=SubmissionState.SUBMITTED, remote_id__isnull=False
    )
    return (
        submitted.exclude(status__in=SENDER_NAME_FINAL_STATUSES).order_by("submitted_at", "pk").first()
        or submitted.order_by("-submitted_at", "-pk").first()
    )


def accounts_recheck_readability(*, now: dt.datetime | None = None, client_for=None) -> dict[int, bool]:
    """Beat job: ask i-dgtl again for each unreadable account whose daily check is due, with one read of
    one of its applications. Returns account id -> readable now."""
    client_for = client_for or remote.client_for
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            StatusReadability.objects.select_for_update(skip_locked=True)
            .filter(readable=False, next_check_at__lte=now)
            .select_related("account")
        )
        StatusReadability.objects.filter(pk__in=[state.pk for state in due]).update(
            next_check_at=now + SYNC_CLAIM_LEASE
        )  # claimed: a concurrent beat run leaves them alone
    results = {}
    for state in due:
        application = _probe_application(state.account_id)
        if application is None:  # nothing submitted to read: ask again tomorrow
            StatusReadability.objects.filter(pk=state.pk).update(
                checked_at=now, next_check_at=now + readability.RECHECK_INTERVAL
            )
            results[state.account_id] = False
            continue
        client = client_for(state.account)
        try:
            result = application_refresh_status(
                application_id=application.pk, cause=StatusChangeCause.PERIODIC_SYNC, client=client, now=now
            )
        finally:
            close = getattr(client, "close", None)
            if callable(close):
                close()
        readable = (
            result.error_kind != UNREADABLE_KIND
            and not StatusReadability.objects.filter(pk=state.pk, readable=False).exists()
        )
        if not readable and result.error_kind != UNREADABLE_KIND:  # the check failed otherwise: try again sooner
            StatusReadability.objects.filter(pk=state.pk).update(
                checked_at=now, next_check_at=now + RECHECK_AFTER_ERROR
            )
        results[state.account_id] = readable
    return results
