"""How the admin shows times and dates: what a reader compares (timeline steps, audit entries) to the second."""

from django.utils import timezone
from django.utils.formats import date_format, time_format

EMPTY = "—"


def datetime_to_second(value) -> str:
    """A time to the second in the reader's language ("24 ноября 2026 г. 7:09:15"): steps of one minute tell apart."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return f"{date_format(local, 'DATE_FORMAT')} {time_format(local, 'G:i:s')}"


def date_only(value) -> str:
    """A time that stands for a day (a sender name's start: 00:00 Moscow time) as its date alone."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return date_format(local, "DATE_FORMAT")
