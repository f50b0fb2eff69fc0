"""Usage per portal: daily rollups (UsageDay) kept in the transaction of every state change, and read back.

**What a row counts.** ``UsageDay(installation, day, provider, sender_name, state)`` holds how many
messages received on ``day`` (a USAGE_TIME_ZONE day, Moscow by default, of ``Message.created_at``) are
*now* in ``state``, and their SMS parts. A state change moves a message from its previous state's row
to the new state's row (one decrement, one increment), so:

- a day's rows add up to that day's messages that have left ``received`` (a message waiting to be sent
  is not counted yet; an invalid number that fails at the claim is counted as failed);
- a message stays on the day it was received, even when its delivery report comes the next day (a
  statement for a month moves only while its last messages reach their final state, about a day);
- what is billable is a choice of states (Tariff.billable_states), each message counted once.

**Where it is written.** Only ``timeline.messages_change_state`` calls :func:`usage_record_state_change`,
in the caller's transaction, before the messages' state is written: a rollup is committed with the
state change or not at all. Every caller holds the messages' rows (``select_for_update`` or a
state-guarded claim) and passes their current state, so a redelivered task that finds the message
already moved makes no call, and nothing is counted twice. Nothing here ever scans the messages table.

**Concurrent workers.** Each change is one ``INSERT ... ON CONFLICT (key) DO UPDATE SET messages =
messages + excluded.messages, parts = parts + excluded.parts``: the database adds to the row under its
row lock, so two workers finalising messages of the same portal and day both count (no read-modify-write
in Python). One statement takes its rows in key order. Every transaction that changes several groups
of messages (the claim's failed and sending ones, a send answer's sent and failed ones, a callback's
delivered and undelivered ones, a return to waiting, a lookup after an unknown outcome) wraps its calls
in :func:`usage_deferred`: one statement, in key order, at the end of the block, so two transactions
never take the same rollup rows in opposite orders (no deadlock). Were one ever to happen, PostgreSQL
ends one side and all it did rolls back, state changes and counts together, and the usual recovery
redoes it. The same SQL runs on SQLite (UPSERT, 3.24+), where transactions are serialised anyway.
"""

import functools
import threading
from collections import defaultdict
from contextlib import contextmanager
from datetime import date
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import F, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from providers.models import USAGE_STATES, Message, UsageDay

COUNTED_STATES = frozenset(USAGE_STATES)
GROUP_BY_DAY = "day"
GROUP_BY_MONTH = "month"
_UPSERT_CHUNK = 500
_KEY = ("installation_id", "day", "provider_id", "sender_name", "state")


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def usage_zone() -> ZoneInfo:
    return _zone(settings.USAGE_TIME_ZONE)


def usage_day_of(moment) -> date:
    """The USAGE_TIME_ZONE day of an aware datetime (a message's ``created_at``)."""
    return moment.astimezone(usage_zone()).date()


def usage_today() -> date:
    return usage_day_of(timezone.now())


# --- writing -----------------------------------------------------------------------------------------
def usage_record_state_change(*, messages: list[Message], state: str) -> None:
    """Move ``messages`` (whose ``.state`` is still the previous state) to ``state`` in the rollups.

    Called by ``timeline.messages_change_state`` only, inside its transaction. One statement per 500
    distinct rows touched (a batch of 1000 messages of one portal and day touches two).
    """
    deltas = defaultdict(lambda: [0, 0])
    for message in messages:
        previous = message.state
        if previous == state:
            continue
        base = (message.installation_id, usage_day_of(message.created_at), message.provider_id, message.sender_name)
        if previous in COUNTED_STATES:
            delta = deltas[(*base, previous)]
            delta[0] -= 1
            delta[1] -= message.parts
        if state in COUNTED_STATES:
            delta = deltas[(*base, state)]
            delta[0] += 1
            delta[1] += message.parts
    collecting = getattr(_deferred, "deltas", None)
    if collecting is not None:
        for key, (messages_delta, parts_delta) in deltas.items():
            collecting[key][0] += messages_delta
            collecting[key][1] += parts_delta
        return
    _write(deltas)


def _write(deltas) -> None:
    rows = sorted((key, delta) for key, delta in deltas.items() if delta != [0, 0])
    for start in range(0, len(rows), _UPSERT_CHUNK):
        _upsert(rows[start : start + _UPSERT_CHUNK])


_deferred = threading.local()


@contextmanager
def usage_deferred():
    """Write the rollup changes of every ``messages_change_state`` call inside the block as one statement
    at its end, in key order.

    For a transaction that changes several groups of messages (the sent and the failed ones of one send
    answer, the delivered and undelivered ones of one callback): its rollup rows are then all taken in
    one statement, in the one order every transaction uses, so two of them can never wait for each
    other. Use it inside the transaction (the write belongs to it); an exception discards what was
    collected, as the transaction's rollback discards the state changes.
    """
    if getattr(_deferred, "deltas", None) is not None:  # nested: the outermost block writes
        yield
        return
    _deferred.deltas = defaultdict(lambda: [0, 0])
    try:
        yield
        deltas = _deferred.deltas
    finally:
        _deferred.deltas = None
    _write(deltas)


@functools.cache
def _upsert_sql(count: int) -> str:
    quote = connection.ops.quote_name
    table = quote(UsageDay._meta.db_table)
    key = ", ".join(quote(UsageDay._meta.get_field(name).column) for name in _KEY)
    messages, parts = quote("messages"), quote("parts")
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * count)
    # PostgreSQL and SQLite spell the upsert the same way; the sum is taken under the row's lock.
    return (
        f"INSERT INTO {table} ({key}, {messages}, {parts}) VALUES {values} "
        f"ON CONFLICT ({key}) DO UPDATE SET {messages} = {table}.{messages} + excluded.{messages}, "
        f"{parts} = {table}.{parts} + excluded.{parts}"
    )


def _upsert(rows) -> None:
    if connection.vendor not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"usage rollups need an upsert written for {connection.vendor}")
    params = []
    for (installation_id, day, provider_id, sender_name, state), (messages, parts) in rows:
        params += [
            installation_id,
            connection.ops.adapt_datefield_value(day),
            provider_id,
            sender_name,
            str(state),
            messages,
            parts,
        ]
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(len(rows)), params)


# --- reading -----------------------------------------------------------------------------------------
def usage_rows(
    *, date_from: date, date_to: date, group_by: str = GROUP_BY_DAY, installation_ids: list[int] | None = None
) -> list[dict]:
    """Rows of (period, portal, provider, sender name, state) with their messages and parts, from the
    rollups only (one aggregate query). ``period`` is the day (YYYY-MM-DD) or the month (YYYY-MM).
    Rows whose counts are all zero (every message moved on) are left out."""
    queryset = UsageDay.objects.filter(day__gte=date_from, day__lte=date_to)
    if installation_ids is not None:
        queryset = queryset.filter(installation_id__in=installation_ids)
    period = TruncMonth("day") if group_by == GROUP_BY_MONTH else F("day")
    rows = (
        queryset.order_by()
        .annotate(period=period)
        .values(
            "period", "installation_id", "installation__domain", "provider_id", "provider__code", "sender_name", "state"
        )
        .annotate(total_messages=Sum("messages"), total_parts=Sum("parts"))
        .order_by("period", "installation__domain", "installation_id", "provider__code", "sender_name", "state")
    )
    state_order = {state: index for index, state in enumerate(USAGE_STATES)}
    result = [
        {
            "period": row["period"].strftime("%Y-%m" if group_by == GROUP_BY_MONTH else "%Y-%m-%d"),
            "portal": row["installation_id"],
            "portal_domain": row["installation__domain"],
            "provider": row["provider_id"],
            "provider_code": row["provider__code"],
            "sender_name": row["sender_name"],
            "state": row["state"],
            "messages": row["total_messages"],
            "parts": row["total_parts"],
        }
        for row in rows
        if row["total_messages"] or row["total_parts"]
    ]
    result.sort(
        key=lambda r: (
            r["period"],
            r["portal_domain"],
            r["portal"],
            r["provider_code"],
            r["sender_name"],
            state_order.get(r["state"], 99),
        )
    )
    return result


def usage_parts_by_day(*, installation_id: int, date_from: date, date_to: date) -> dict[date, dict[str, int]]:
    """{day: {state: parts}} of one portal (every provider and sender name), for the admin's chart."""
    result: dict[date, dict[str, int]] = defaultdict(dict)
    rows = (
        UsageDay.objects.filter(installation_id=installation_id, day__gte=date_from, day__lte=date_to)
        .order_by()
        .values_list("day", "state")
        .annotate(total=Sum("parts"))
    )
    for day, state, total in rows:
        result[day][state] = total
    return result
