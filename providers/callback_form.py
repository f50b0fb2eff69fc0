"""The wire format of i-dgtl's delivery callbacks (docs/contracts/idgtl.md §3.4): a JSON array of events,
parsed into :class:`CallbackEvent` values or refused with a :class:`CallbackError` naming the event's field.
Knows nothing of our models: the view authenticates, this parses, services/delivery.py applies."""

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy

STATUS_EVENTS = {"delivered", "sent", "read"}  # events that carry a message status (docs/contracts/idgtl.md §3.4)
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
    raw: object = field(default=None, compare=False, repr=False)  # the event as parsed, kept when it waits


def parse_status_time(value) -> datetime | None:
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
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def parse_error_code(value) -> int | None:
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
            raise CallbackError(
                gettext_lazy("message_uuid is missing or not a string of at most 64 printable ASCII characters."),
                f"[{index}].message_uuid",
            )
        if not isinstance(status, str) or not _STATUS_RE.fullmatch(status):
            raise CallbackError(
                gettext_lazy("status is missing or not a string of at most 32 printable ASCII characters."),
                f"[{index}].status",
            )
        events.append(
            CallbackEvent(
                message_uuid=uuid,
                status=status,
                status_time=parse_status_time(item.get("status_time")),
                error_code=parse_error_code(item.get("error_code")),
                raw=item,
            )
        )
    return events


def callback_body_parse(body: bytes) -> list[CallbackEvent]:
    """The status events of a callback's raw body; CallbackError when it is not a JSON array of events."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CallbackError(gettext_lazy("The body is not a JSON array of events.")) from None
    return callback_events_parse(payload)
