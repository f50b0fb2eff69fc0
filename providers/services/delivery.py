"""Delivery: i-dgtl callbacks and the reconciler move sent messages to their final status.

Idempotent by (message_uuid, status); a message only moves forward and a final status never changes.
"""
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from idgtl.client import IdgtlClient, IdgtlError
from idgtl.services import account_get_default

from ..models import Installation, Message, MessageState, MessageStatusChange
from ..status_mapping import STATE_RANK, idgtl_status_moves_forward, state_for_idgtl_status
from .timeline import ChangeSource, messages_change_state

logger = logging.getLogger(__name__)

STATUS_EVENTS = {"delivered", "sent", "read"}  # events that carry a message status (§3.4)
LOOKUP_CHUNK = 100
# What may reach a query or a column: printable ASCII (no NUL, no lone surrogate), within the columns.
_UUID_RE = re.compile(r"[\x21-\x7e]{1,64}")  # Message.idgtl_message_uuid
_STATUS_RE = re.compile(r"[\x21-\x7e]{1,32}")  # Message.idgtl_status
_INT_MAX = 2**31 - 1  # Message.error_code


class CallbackError(ValueError):
    def __init__(self, message, field: str = ""):
        super().__init__(str(message))
        self.message = message
        self.field = field


@dataclass(frozen=True)
class CallbackEvent:
    message_uuid: str
    status: str
    status_time: datetime | None = None
    error_code: int | None = None


def _parse_time(value) -> datetime | None:
    """An aware datetime (UTC when no offset is given), or None for anything else."""
    if isinstance(value, str) and value:
        try:
            value = parse_datetime(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    try:
        if timezone.is_naive(value):
            return value.replace(tzinfo=dt_timezone.utc)
        return value.astimezone(dt_timezone.utc)
    except (OverflowError, ValueError):
        return None


def _error_code(value) -> int | None:
    """i-dgtl's error code when it is an integer that fits the column."""
    if isinstance(value, int) and not isinstance(value, bool) and -_INT_MAX <= value <= _INT_MAX:
        return value
    return None


def callback_events_parse(payload) -> list[CallbackEvent]:
    """The status events of a callback body (a JSON array); price/click and other events are dropped."""
    if not isinstance(payload, list):
        raise CallbackError(gettext_lazy("The body must be a JSON array of events."))
    events = []
    for index, item in enumerate(payload):
        if not isinstance(item, dict):
            raise CallbackError(gettext_lazy("Each event must be a JSON object."), f"[{index}]")
        callback_event = item.get("callback_event")
        if not isinstance(callback_event, str) or not callback_event:
            raise CallbackError(gettext_lazy("callback_event is missing."), f"[{index}].callback_event")
        if callback_event not in STATUS_EVENTS:
            continue  # price, click, ...: acknowledged and ignored
        uuid, status = item.get("message_uuid"), item.get("status")
        if not isinstance(uuid, str) or not _UUID_RE.fullmatch(uuid):
            raise CallbackError(gettext_lazy("message_uuid is missing or not a string of at most 64 printable "
                                             "ASCII characters."), f"[{index}].message_uuid")
        if not isinstance(status, str) or not _STATUS_RE.fullmatch(status):
            raise CallbackError(gettext_lazy("status is missing or not a string of at most 32 printable "
                                             "ASCII characters."), f"[{index}].status")
        events.append(CallbackEvent(
            message_uuid=uuid, status=status, status_time=_parse_time(item.get("status_time")),
            error_code=_error_code(item.get("error_code"))))
    return events


@dataclass(frozen=True)
class CallbackOutcome:
    applied: int  # events that changed something
    retry_later: bool  # an event may be for a message whose send answer is still being recorded


def callback_events_apply(*, installation: Installation, events: list[CallbackEvent]) -> CallbackOutcome:
    """Apply callback events to this installation's messages.

    i-dgtl may call back before we have stored the uuid from its answer to ``POST /message``. An
    event for an unknown uuid while a send of this installation is in flight asks for a retry
    (i-dgtl retries a non-2xx answer); otherwise it is ignored (the reconciler is the fallback).
    """
    if not events:
        return CallbackOutcome(0, False)
    messages = {m.idgtl_message_uuid: m for m in Message.objects.filter(
        installation=installation, idgtl_message_uuid__in={e.message_uuid for e in events})}
    applied, unknown = 0, 0
    for event in events:
        message = messages.get(event.message_uuid)
        if message is None:
            unknown += 1
            continue
        applied += message_apply_idgtl_status(
            message=message, status=event.status, status_time=event.status_time, error_code=event.error_code,
            source=ChangeSource.CALLBACK)
    retry_later = bool(unknown) and Message.objects.filter(
        installation=installation, state=MessageState.SENDING,
        sending_started_at__gte=timezone.now() - timedelta(seconds=settings.MESSAGES_SENDING_STALE_AFTER)).exists()
    if unknown:
        logger.info("i-dgtl callback: %d events for unknown message uuids (%s)", unknown,
                    "retry asked, a send is in flight" if retry_later else "ignored")
    return CallbackOutcome(applied, retry_later)


def message_apply_idgtl_status(*, message: Message, status: str, status_time=None, error_code=None,
                               source: str) -> bool:
    """Record an i-dgtl status of a message; True when it changed anything.

    Unknown statuses, repeats and anything that would move the message back are ignored.
    """
    new_state = state_for_idgtl_status(status)
    if new_state is None:
        logger.info("Unknown i-dgtl status %r for message %s ignored", status, message.pk)
        return False
    status_time = _parse_time(status_time) or timezone.now()
    error_code = _error_code(error_code)
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        if message.is_final or message.idgtl_status == status:
            return False
        if message.state in (MessageState.RECEIVED, MessageState.SENDING):
            return False  # only a message with its uuid stored takes statuses
        if STATE_RANK[new_state] < STATE_RANK[message.state]:
            return False
        if new_state == message.state and not idgtl_status_moves_forward(message.idgtl_status, status):
            return False
        message.idgtl_status = status
        message.idgtl_status_at = status_time
        fields = ["idgtl_status", "idgtl_status_at"]
        if new_state == message.state:  # e.g. i-dgtl sending -> sent: no new state, still on the timeline
            message.save(update_fields=[*fields, "updated_at"])
            MessageStatusChange.objects.create(
                message=message, previous_state=message.state, state=message.state, idgtl_status=status, source=source,
                detail=_("i-dgtl status: %(status)s") % {"status": status})
            return True
        if new_state in (MessageState.UNDELIVERED, MessageState.FAILED) and isinstance(error_code, int):
            message.error_code = error_code
            message.error_message = _("i-dgtl error %(code)s") % {"code": error_code}
            fields += ["error_code", "error_message"]
        messages_change_state(messages=[message], state=new_state, source=source,
                              detail=_("i-dgtl status: %(status)s") % {"status": status}, update_fields=tuple(fields))
    return True


# --- reconciler ---------------------------------------------------------------------------------------
def messages_reconcile(*, now=None, limit: int = 5000) -> dict:
    """Look up sent messages still without a final status; fail those past the lifetime and a margin."""
    now = now or timezone.now()
    lifetime_end = now - timedelta(hours=settings.MESSAGES_LIFETIME_HOURS, seconds=settings.MESSAGES_LIFETIME_MARGIN)
    expired = messages_fail_expired(before=lifetime_end)
    due = list(Message.objects.filter(state=MessageState.SENT, next_check_at__lte=now)
               .select_related("installation__account").order_by("next_check_at")[:limit])
    default_account = None
    by_account = defaultdict(list)
    for message in due:
        account = message.installation.account
        if account is None:
            default_account = default_account or account_get_default()
            account = default_account
        by_account[account.pk].append((account, message))
    checked = 0
    for pairs in by_account.values():
        checked += _reconcile_account(pairs[0][0], [m for _a, m in pairs], now)
    return {"expired": expired, "checked": checked}


def messages_fail_expired(*, before) -> int:
    """Messages handed to i-dgtl before ``before`` and still without a final status become FAILED."""
    with transaction.atomic():
        messages = list(Message.objects.select_for_update().filter(
            state__in=(MessageState.SENDING, MessageState.SENT), sending_started_at__lt=before)[:1000])
        for message in messages:
            message.error_message = _("No final status from i-dgtl within the message lifetime.")
        messages_change_state(messages=messages, state=MessageState.FAILED, source=ChangeSource.RECONCILER,
                              update_fields=("error_message",))
    return len(messages)


def _reconcile_account(account, messages: list[Message], now) -> int:
    later = now + timedelta(seconds=settings.MESSAGES_RECONCILE_INTERVAL)
    found: dict[str, dict] = {}
    client = IdgtlClient.for_messages(account)
    try:
        for start in range(0, len(messages), LOOKUP_CHUNK):
            chunk = messages[start:start + LOOKUP_CHUNK]
            answer = client.get_messages(message_uuids=[m.idgtl_message_uuid for m in chunk], per_page=LOOKUP_CHUNK)
            for item in (answer.get("items") or []) if isinstance(answer, dict) else []:
                if isinstance(item, dict) and item.get("messageUuid"):
                    found[str(item["messageUuid"])] = item
    except IdgtlError as exc:
        logger.warning("Reconciling %d messages at i-dgtl failed: %s", len(messages), exc)
    finally:
        client.close()
    for message in messages:
        item = found.get(message.idgtl_message_uuid)
        if item and item.get("status"):
            message_apply_idgtl_status(message=message, status=item["status"], status_time=item.get("statusTime"),
                                       error_code=item.get("errorCode"), source=ChangeSource.RECONCILER)
    Message.objects.filter(pk__in=[m.pk for m in messages], state=MessageState.SENT).update(next_check_at=later)
    return len(messages)
