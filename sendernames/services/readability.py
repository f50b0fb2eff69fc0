"""Whether an account's sender-name statuses can be read from i-dgtl at all.

``GET /sender-names/{id}`` is an assumption of the contract (§2.4). When i-dgtl answers that the
route does not exist (``remote.ReadRouteAbsent``), the account is marked unreadable: its applications
are no longer polled (``status.open_applications_due`` leaves them out), the start page and each
affected application say so, operators set statuses by hand, and the beat job asks again once a day
(``status.accounts_recheck_readability``). Any successful read marks it readable again.
"""

import datetime as dt
import logging

from django.db import transaction
from django.utils.translation import gettext as _

from sendernames.models import SenderNameApplication, StatusReadability, SubmissionState

logger = logging.getLogger(__name__)

RECHECK_INTERVAL = dt.timedelta(days=1)
DETAIL_MAX_LENGTH = 500


def unreadable_message() -> str:
    return _("Status not readable from i-dgtl — set it from the cabinet.")


def unreadable_account_ids():
    return StatusReadability.objects.filter(readable=False).values("account_id")


def account_mark_unreadable(
    *, account_id: int, http_status: int | None, detail: str, now: dt.datetime
) -> StatusReadability:
    """Record that the read endpoint is absent for the account; the next check is a day later."""
    with transaction.atomic():
        state, _created = StatusReadability.objects.select_for_update().get_or_create(account_id=account_id)
        if state.readable:
            state.unreadable_since = now
            logger.warning(
                "i-dgtl has no sender-name read endpoint for an account: polling stops, statuses are "
                "set by hand; checked again daily",
                extra={"account_id": account_id, "code": http_status},
            )
        state.readable = False
        state.http_status = http_status
        state.detail = (detail or "")[:DETAIL_MAX_LENGTH]
        state.checked_at = now
        state.next_check_at = now + RECHECK_INTERVAL
        state.save()
    return state


def account_mark_readable(*, account_id: int, now: dt.datetime) -> bool:
    """A read answered: if the account was unreadable, it is readable again and its open applications are
    due at once. Returns whether it was unreadable."""
    with transaction.atomic():
        state = StatusReadability.objects.select_for_update().filter(account_id=account_id, readable=False).first()
        if state is None:
            return False
        state.readable = True
        state.unreadable_since = None
        state.http_status = None
        state.detail = ""
        state.checked_at = now
        state.next_check_at = None
        state.save()
        SenderNameApplication.objects.filter(
            account_id=account_id,
            submission_state=SubmissionState.SUBMITTED,
            remote_id__isnull=False,
            next_status_check_at__isnull=False,
        ).update(next_status_check_at=now)
    logger.info(
        "i-dgtl answers sender-name reads for the account again: polling resumes", extra={"account_id": account_id}
    )
    return True
