"""Retention: a final message ``MESSAGES_RETENTION_DAYS`` after its final status loses its text and phone numbers.

What goes: the text, the recipient (``message_to``, ``destination``), the CRM bindings and the document id
(they name the contact the SMS went to), and the number wherever it was copied into a text: the message's
error ("Invalid phone number: …", or i-dgtl's ``msg``), the details of its timeline entries (they copy the
error) and its status reports' errors. What stays: portal, provider, sender name, states and their times,
the timeline and the status reports themselves, i-dgtl's uuid, status and error code, the workflow and its
author, and whatever was counted from the message (parts, usage, statements never read the text again).
i-dgtl callback events kept in the inbox carry no number, and are dropped after a day anyway.

How: beat runs :func:`messages_anonymise_old` every 5 minutes. Each batch takes the oldest rows of the
partial index ``providers_msg_retention_idx`` (final, not anonymised yet, by final status time, or receipt
time for a row without one) in its own short transaction: ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL
(a second run at the same time takes the next rows, never waits for these), a few UPDATEs, commit. Runs go
on until nothing is due or ``MESSAGES_RETENTION_TIME_BUDGET`` is spent, pausing between batches
(``MESSAGES_RETENTION_PAUSE_FACTOR``) so that the HANDLER keeps its throughput meanwhile. A run that stops
anywhere (worker killed, time limit, database restart) loses at most the batch it was in: the marker is
``anonymised_at`` itself, so the next run starts where this one stopped. Only row locks, on rows nothing else
writes any more: the HANDLER's inserts (new rows, outside the partial index) and the pipeline never wait for it.
"""

import logging
import re
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common import metrics
from common.bulk import bulk_update_rows
from providers.models import (
    MESSAGE_RETAINED_SINCE,
    MESSAGE_RETENTION_PENDING,
    Message,
    MessageStatusChange,
    StatusReport,
)

logger = logging.getLogger(__name__)

NUMBER_MASK = "***"
# A phone number as it may be written inside a text: digits with spaces, dots, dashes and brackets, a leading +.
PHONE_LIKE = re.compile(r"\+?\d[\d\s().\-]*\d")
MIN_NUMBER_DIGITS = 7  # shorter digit runs (error codes, counts) are never taken for a number
NATIONAL_DIGITS = 10  # a number is recognised by its last ten digits: 8 900…, +7 900… and 7900… are one number


def retention_cutoff(*, now, days: int):
    """Final messages that reached their final status before this are due."""
    return now - timedelta(days=days)


def messages_due(*, cutoff):
    """Final messages not anonymised yet whose final status (or receipt) is older than ``cutoff``, oldest first:
    an index range scan of providers_msg_retention_idx."""
    return (
        Message.objects.filter(MESSAGE_RETENTION_PENDING)
        .alias(retained_since=MESSAGE_RETAINED_SINCE)
        .filter(retained_since__lt=cutoff)
        .order_by("retained_since", "id")
    )


class NumberScrubber:
    """Replaces one message's recipient, in whatever way it was written, inside a text."""

    def __init__(self, *raw_numbers: str):
        self.literals = sorted({n.strip() for n in raw_numbers if n and len(n.strip()) >= 3}, key=len, reverse=True)
        digits = {re.sub(r"\D", "", n or "") for n in raw_numbers}
        self.tails = {d[-NATIONAL_DIGITS:] for d in digits if len(d) >= MIN_NUMBER_DIGITS}

    def _mask_number(self, match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if len(digits) >= MIN_NUMBER_DIGITS and digits[-NATIONAL_DIGITS:] in self.tails:
            return NUMBER_MASK
        return match.group(0)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self.tails:
            text = PHONE_LIKE.sub(self._mask_number, text)
        for literal in self.literals:  # as entered, even when it is not a number ("Invalid phone number: call me")
            text = text.replace(literal, NUMBER_MASK)
        return text


def _scrub_rows(model, field: str, rows, scrubbers: dict[int, NumberScrubber]) -> int:
    """Write back ``field`` of the rows (pk, message_id, text) whose text held the number; how many changed."""
    changed = []
    for pk, message_id, text in rows:
        scrubbed = scrubbers[message_id](text)
        if scrubbed != text:
            changed.append(model(pk=pk, **{field: scrubbed}))
    bulk_update_rows(model, changed, [field])
    return len(changed)


def messages_anonymise_batch(*, cutoff, batch_size: int) -> int:
    """Anonymise up to ``batch_size`` due messages in one short transaction; how many were."""
    now = timezone.now()
    with transaction.atomic():
        due = messages_due(cutoff=cutoff)
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        rows = list(due.values_list("id", "message_to", "destination", "error_message")[:batch_size])
        if not rows:
            return 0
        ids = [pk for pk, *_rest in rows]
        scrubbers = {pk: NumberScrubber(message_to, destination) for pk, message_to, destination, _error in rows}
        Message.objects.filter(pk__in=ids).update(
            text="", message_to="", destination="", bindings=[], document_id=[], anonymised_at=now, updated_at=now
        )
        _scrub_rows(Message, "error_message", [(pk, pk, error) for pk, _to, _dest, error in rows if error], scrubbers)
        _scrub_rows(
            MessageStatusChange,
            "detail",
            MessageStatusChange.objects.filter(message_id__in=ids)
            .exclude(detail="")
            .values_list("id", "message_id", "detail"),
            scrubbers,
        )
        _scrub_rows(
            StatusReport,
            "last_error",
            StatusReport.objects.filter(message_id__in=ids)
            .exclude(last_error="")
            .values_list("id", "message_id", "last_error"),
            scrubbers,
        )
    metrics.record_messages_anonymised(len(ids))
    return len(ids)


def messages_anonymise_old(
    *,
    now=None,
    days: int | None = None,
    batch_size: int | None = None,
    time_budget: float | None = None,
    pause_factor: float | None = None,
) -> int:
    """Beat: anonymise every due message, batch after batch, within the time budget; how many were.

    ``MESSAGES_RETENTION_DAYS`` = 0 (or less) keeps everything: nothing is read or written. Between two
    batches the run pauses ``MESSAGES_RETENTION_PAUSE_FACTOR`` times as long as the last batch took: a
    backlog (retention turned on over months of messages) is worked off beside the HANDLER's load, not
    in its way, and the pause grows by itself when the database is busy and batches take longer.
    """
    days = settings.MESSAGES_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    batch_size = max(1, settings.MESSAGES_RETENTION_BATCH_SIZE if batch_size is None else batch_size)
    budget = settings.MESSAGES_RETENTION_TIME_BUDGET if time_budget is None else time_budget
    pause_factor = max(0.0, settings.MESSAGES_RETENTION_PAUSE_FACTOR if pause_factor is None else pause_factor)
    cutoff = retention_cutoff(now=now or timezone.now(), days=days)
    deadline = time.monotonic() + budget
    total = 0
    while True:
        started = time.monotonic()
        n = messages_anonymise_batch(cutoff=cutoff, batch_size=batch_size)
        total += n
        # A short batch: nothing more is due (or a concurrent run holds the rest).
        if n < batch_size or time.monotonic() >= deadline:
            break
        pause = (time.monotonic() - started) * pause_factor
        if time.monotonic() + pause >= deadline:
            break
        if pause:
            time.sleep(pause)
    if total:
        logger.info(
            "retention: %d messages anonymised (final before %s)",
            total,
            cutoff.isoformat(),
            extra={"anonymised": total},
        )
    return total
