"""Reporting to Bitrix24: each status owed is sent with messageservice.message.status.update.

Reports go out grouped in ``batch`` calls (at most 50 commands) per installation, one portal at a
time (a lock per installation), under the portal's rate limit (the client waits for it). Per message
only the highest pending status is sent; lower ones are SKIPPED, so Bitrix24 never sees a status go
back. Transient failures are retried with backoff; a permanent error (ERROR_MESSAGE_NOT_FOUND, ...)
is recorded as REJECTED. An uninstalled portal is never called: its pending reports are closed.
"""

import logging
import time
import uuid
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from bitrix24.client import (
    Bitrix24AccessDenied,
    Bitrix24Client,
    Bitrix24Error,
    Bitrix24MethodError,
    Bitrix24OperationTimeLimit,
    InstallationInactive,
)
from common.taskqueue import enqueue, enqueue_later
from providers.models import Installation, InstallationState, StatusReport, StatusReportState
from providers.services.portal_access import portal_client
from providers.status_mapping import BITRIX24_RANK

logger = logging.getLogger(__name__)

STATUS_UPDATE_METHOD = "messageservice.message.status.update"
BATCH_MAX_COMMANDS = 50  # docs/contracts/bitrix24.md §5
REPORT_TASK = "providers.tasks.report_installation_statuses"
SCHEDULED_KEY = "providers:report-scheduled:{}"
LOCK_KEY = "providers:report-lock:{}"
PERMANENT_ERRORS = (Bitrix24MethodError, Bitrix24AccessDenied)


def reports_schedule(*, installation_ids) -> None:
    """Ask for a report run for these installations soon (many asks within a moment cost one task)."""
    for installation_id in installation_ids:
        if cache.add(SCHEDULED_KEY.format(installation_id), 1, timeout=settings.MESSAGES_REPORT_SCHEDULE_WINDOW):
            enqueue(REPORT_TASK, installation_id, countdown=settings.MESSAGES_REPORT_DEBOUNCE)


def _ready(now):
    return Q(state=StatusReportState.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))


def reports_schedule_due() -> int:
    """The beat sweep: a report run for every installation with reports due."""
    installation_ids = set(
        StatusReport.objects.filter(_ready(timezone.now()))
        .values_list("message__installation_id", flat=True)
        .distinct()
    )
    for installation_id in installation_ids:
        cache.delete(SCHEDULED_KEY.format(installation_id))
    reports_schedule(installation_ids=installation_ids)
    return len(installation_ids)


def _backoff(attempts: int) -> float:
    return min(settings.MESSAGES_REPORT_RETRY_BACKOFF * (2 ** max(0, attempts - 1)), 3600.0)


def reports_close_for_removed(*, installation: Installation) -> int:
    """An uninstalled portal: its pending reports are closed (REJECTED) without calling it."""
    return StatusReport.objects.filter(message__installation=installation, state=StatusReportState.PENDING).update(
        state=StatusReportState.REJECTED,
        last_error=_("Not reported: the application was uninstalled from this portal."),
        next_attempt_at=None,
    )


def _next_batch(installation: Installation, now) -> list[StatusReport]:
    """Up to 50 reports to send now, one per message (its highest status); superseded ones SKIPPED.

    Two queries: the reports due (with what the command needs), and the other live reports of
    their messages (to know what is already accepted or still waiting at a higher status).
    """
    due = list(
        StatusReport.objects.filter(_ready(now), message__installation=installation)
        .select_related("message__provider")
        .only(
            "id",
            "message_id",
            "status",
            "state",
            "attempts",
            "next_attempt_at",
            "message__message_id",
            "message__provider__code",
        )
        # As many as a batch takes: usually one report per message (only finals are reported), so more would be
        # loaded for nothing and loaded again by the next batch (a third of the report worker's CPU at four
        # times as many, bench/cpu_per_sms.py); reports a later status superseded only make a batch smaller.
        .order_by("id")[:BATCH_MAX_COMMANDS]
    )
    if not due:
        return []
    due_by_id = {report.pk: report for report in due}
    message_ids = list(dict.fromkeys(report.message_id for report in due))
    others = defaultdict(list)  # message id -> [(id, status, state, next_attempt_at)]
    for row in (
        StatusReport.objects.filter(message_id__in=message_ids)
        .exclude(state=StatusReportState.SKIPPED)
        .values_list("id", "message_id", "status", "state", "next_attempt_at")
    ):
        others[row[1]].append(row)
    chosen, skipped = [], []
    for message_id in message_ids:
        rows = others[message_id]
        rank = lambda row: BITRIX24_RANK.get(row[2], 0)  # noqa: E731
        done_rank = max((rank(row) for row in rows if row[3] == StatusReportState.ACCEPTED), default=-1)
        pending = [row for row in rows if row[3] == StatusReportState.PENDING]
        if not pending:
            continue
        top = max(pending, key=lambda row: (rank(row), row[0]))
        skipped += [row[0] for row in pending if row is not top]
        if rank(top) <= done_rank:
            skipped.append(top[0])
        elif top[0] in due_by_id:
            chosen.append(due_by_id[top[0]])
        if len(chosen) >= BATCH_MAX_COMMANDS:
            break
    if skipped:
        StatusReport.objects.filter(pk__in=skipped, state=StatusReportState.PENDING).update(
            state=StatusReportState.SKIPPED, last_error=_("Superseded by a later status."), next_attempt_at=None
        )
    return chosen


def _postpone(reports: list[StatusReport], error: str, *, until=None) -> None:
    now = timezone.now()
    rejected = []
    for report in reports:
        report.attempts += 1
        report.last_error = error[:2000]
        if report.attempts >= settings.MESSAGES_REPORT_MAX_ATTEMPTS:
            report.state = StatusReportState.REJECTED
            report.last_error = _("Gave up after %(n)d attempts: %(error)s") % {"n": report.attempts, "error": error}
            report.next_attempt_at = None
            rejected.append(report)
        else:
            report.next_attempt_at = until or now + timedelta(seconds=_backoff(report.attempts))
    StatusReport.objects.bulk_update(reports, ["attempts", "last_error", "state", "next_attempt_at"])


def _describe(error: Bitrix24Error) -> str:
    code = getattr(error, "error", "") or type(error).__name__
    description = getattr(error, "description", "") or ""
    return f"{code}: {description}" if description else str(code)


def _apply_batch_result(reports: list[StatusReport], result) -> int:
    now = timezone.now()
    results = getattr(result, "results", {}) or {}
    errors = getattr(result, "errors", {}) or {}
    accepted, rejected, retry = [], [], []
    for report in reports:
        key = f"r{report.pk}"
        if key in errors:
            error = errors[key]
            if isinstance(error, PERMANENT_ERRORS):
                report.attempts += 1
                report.state = StatusReportState.REJECTED
                report.last_error = _describe(error)
                report.next_attempt_at = None
                rejected.append(report)
            else:
                retry.append((report, _describe(error), getattr(error, "reset_at", None)))
        elif key in results:
            accepted.append(report)
        else:
            retry.append((report, _("Bitrix24 gave no answer for this command."), None))
    if accepted:
        StatusReport.objects.filter(pk__in=[r.pk for r in accepted]).update(
            state=StatusReportState.ACCEPTED,
            reported_at=now,
            last_error="",
            next_attempt_at=None,
            attempts=F("attempts") + 1,
        )
    if rejected:
        StatusReport.objects.bulk_update(rejected, ["attempts", "state", "last_error", "next_attempt_at"])
    for report, error, until in retry:
        _postpone([report], error, until=until)
    if rejected:
        logger.warning("Bitrix24 rejected %d status reports: %s", len(rejected), rejected[0].last_error)
    return len(accepted)


def reports_send_pending(*, installation_id: int, time_budget: float | None = None) -> int:
    """Send the reports due for one installation; returns how many Bitrix24 accepted."""
    # First let later reports schedule a run again: a run that finds the lock taken leaves its reports
    # to the lock holder, whose follow-up (after releasing the lock) must be able to schedule.
    cache.delete(SCHEDULED_KEY.format(installation_id))
    lock_key, token = LOCK_KEY.format(installation_id), uuid.uuid4().hex
    # The lock is a lease renewed before every batch: a worker killed while reporting blocks its portal
    # for one lease, not for a task's whole time limit. Should a slow batch outlive it, a second runner
    # may send the same reports again, which changes nothing (one final status per message).
    if not cache.add(lock_key, token, timeout=settings.MESSAGES_REPORT_LOCK_LEASE):
        return 0  # another worker is reporting to this portal; its follow-up picks these up
    accepted = 0
    try:
        accepted = _send_pending_locked(installation_id, time_budget, renew=lambda: _lease_renew(lock_key, token))
    finally:
        if cache.get(lock_key) == token:
            cache.delete(lock_key)
    _schedule_follow_up(installation_id)
    return accepted


def _schedule_follow_up(installation_id: int) -> None:
    """Reports that arrived while the lock was held run now; postponed ones when they are due."""
    now = timezone.now()
    pending = StatusReport.objects.filter(message__installation_id=installation_id, state=StatusReportState.PENDING)
    if pending.filter(_ready(now)).exists():
        reports_schedule(installation_ids=[installation_id])
        return
    earliest = pending.order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    if earliest is not None:
        enqueue_later(REPORT_TASK, installation_id, countdown=max(0.0, (earliest - now).total_seconds()) + 0.1)


def _lease_renew(lock_key: str, token: str) -> None:
    if cache.get(lock_key) == token:
        cache.touch(lock_key, timeout=settings.MESSAGES_REPORT_LOCK_LEASE)


def _send_pending_locked(installation_id: int, time_budget: float | None, renew=lambda: None) -> int:
    installation = Installation.objects.filter(pk=installation_id).first()
    if installation is None:
        return 0
    if installation.state == InstallationState.REMOVED:
        reports_close_for_removed(installation=installation)
        return 0
    deadline = time.monotonic() + (time_budget if time_budget is not None else settings.MESSAGES_REPORT_TIME_BUDGET)
    with portal_client(installation) as client:
        return _send_batches(installation, client, deadline, renew)


def _send_batches(installation: Installation, client: Bitrix24Client, deadline: float, renew=lambda: None) -> int:
    accepted = 0
    while time.monotonic() < deadline:
        renew()
        reports = _next_batch(installation, timezone.now())  # one runner per portal: the lock
        if not reports:
            break
        commands = {
            f"r{report.pk}": (
                STATUS_UPDATE_METHOD,
                {
                    "CODE": report.message.provider.code,
                    "MESSAGE_ID": report.message.message_id,
                    "STATUS": report.status,
                },
            )
            for report in reports
        }
        try:
            result = client.batch(commands)
        except InstallationInactive as exc:
            installation.refresh_from_db(fields=["state"])
            if installation.state == InstallationState.REMOVED:
                reports_close_for_removed(installation=installation)
            else:
                _postpone(
                    reports, _("The portal needs the application reinstalled: %(error)s") % {"error": _describe(exc)}
                )
            break
        except Bitrix24OperationTimeLimit as exc:
            _postpone(reports, _describe(exc), until=getattr(exc, "reset_at", None))
            break
        except Bitrix24Error as exc:
            logger.warning("Reporting %d statuses to %s failed: %s", len(reports), installation, _describe(exc))
            _postpone(reports, _describe(exc))
            break
        accepted += _apply_batch_result(reports, result)
    return accepted
