"""A status set by hand: an operator read it in i-dgtl's cabinet (when i-dgtl cannot be read, or reads late).

Recorded like any change (a history row), with who did it and the date the operator gave, and marked
as set by hand; the periodic sync replaces it only with a status further along the review
(``status.read_supersedes_manual``).
"""

import dataclasses
import datetime as dt
import logging

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from sendernames.models import (
    SenderNameApplication,
    SenderNameStatusChange,
    StatusChangeCause,
    SubmissionState,
    status_label,
)
from sendernames.services.status import next_check_at
from sendernames.validation import MOSCOW, parse_status_date, validate_manual_status

logger = logging.getLogger(__name__)

NOTE_MAX_LENGTH = 2000


@dataclasses.dataclass
class ManualStatusResult:
    application: SenderNameApplication
    previous_status: str
    changed: bool

    @property
    def summary(self) -> str:
        if not self.changed:
            return _("Status already set by hand to %(status)s on that date; nothing changed.") % {
                "status": self.application.status_label
            }
        return _("Status set by hand: %(old)s → %(new)s (dated %(date)s).") % {
            "old": status_label(self.previous_status) or "—",
            "new": self.application.status_label,
            "date": self.application.status_date.isoformat(),
        }


def validate_manual_input(
    *, application: SenderNameApplication, status, status_date, note, now: dt.datetime | None = None
) -> tuple[str, dt.date, str]:
    """The cleaned status, date and note, or one ValidationError keyed by field (status, date, note)."""
    errors = {}
    if application.submission_state != SubmissionState.SUBMITTED or application.remote_id is None:
        raise ValidationError(
            _("This application has not been submitted to i-dgtl yet: it has no status to set."), code="not_submitted"
        )
    try:
        status = validate_manual_status(status)
    except ValidationError as exc:
        errors["status"] = exc.error_list
    submitted_on = timezone.localtime(application.submitted_at, MOSCOW).date() if application.submitted_at else None
    try:
        status_date = parse_status_date(status_date, not_before=submitted_on, now=now)
    except ValidationError as exc:
        errors["date"] = exc.error_list
    note = str(note or "").strip()
    if len(note) > NOTE_MAX_LENGTH:
        errors["note"] = [ValidationError(_("At most %(n)d characters.") % {"n": NOTE_MAX_LENGTH}, code="max_length")]
    if errors:
        raise ValidationError(errors)
    return status, status_date, note


def application_set_status(
    *, application_id: int, status, status_date, note="", user=None, now: dt.datetime | None = None
) -> ManualStatusResult:
    """Set an application's status by hand (an operator read it in i-dgtl's cabinet).

    Repeating the same status, date and note (a double submit) changes nothing and records nothing.
    """
    now = now or timezone.now()
    with transaction.atomic():
        application = SenderNameApplication.objects.select_for_update().get(pk=application_id)
        status, status_date, note = validate_manual_input(
            application=application, status=status, status_date=status_date, note=note, now=now
        )
        previous = application.status
        if (
            application.status_manual
            and previous == status
            and application.status_date == status_date
            and application.status_comment == note
        ):
            return ManualStatusResult(application, previous, False)
        application.status = status
        application.status_comment = note
        application.status_manual = True
        application.status_date = status_date
        application.status_changed_at = now
        application.next_status_check_at = next_check_at(application, now)
        application.last_error_kind, application.last_error_code, application.last_error_message = "", None, ""
        application.save()
        SenderNameStatusChange.objects.create(
            application=application,
            previous_status=previous,
            status=status,
            comment=note,
            cause=StatusChangeCause.MANUAL_STATUS,
            status_date=status_date,
            changed_by=user,
        )
    logger.info(
        "Sender-name status set by hand",
        extra={
            "application_id": application_id,
            "status": status,
            "previous": previous,
            "user_id": getattr(user, "pk", None),
        },
    )
    return ManualStatusResult(application, previous, True)
