"""Delivery: i-dgtl callbacks and the reconciler move sent messages to their final status.

Idempotent by (message_uuid, status); a message only moves forward and a final status never changes.
A callback's events are stored in the inbox (UnmatchedCallbackEvent) by its request, and applied in large
sets by a worker a moment later (callback_inbox_apply). An event whose uuid is not recorded yet (the
callback beat the send's answer) waits there until the transaction that records the uuid applies it.
"""

import functools
import json
import logging
import time
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from common import metrics
from common.bulk import bulk_update_rows
from common.debounce import DebouncedRun
from common.pg import kept_cursor
from idgtl.client import IdgtlClient, IdgtlError
from idgtl.services import account_get_default
from providers.callback_form import CallbackEvent, parse_error_code, parse_status_time
from providers.models import Installation, Message, MessageState, MessageStatusChange, UnmatchedCallbackEvent
from providers.services.timeline import ChangeSource, messages_change_state
from providers.services.usage import usage_deferred
from providers.status_mapping import STATE_RANK, idgtl_status_moves_forward, state_for_idgtl_status

logger = logging.getLogger(__name__)

LOOKUP_CHUNK = 100


CALLBACK_APPLY_TASK = "providers.tasks.apply_callback_events"
# The inbox's applying run: every callback asks for it, a burst of callbacks costs one run (common/debounce.py).
CALLBACK_APPLY_RUN = DebouncedRun(
    task=CALLBACK_APPLY_TASK, key="providers:callback-apply-scheduled", delay_setting="MESSAGES_CALLBACK_APPLY_DEBOUNCE"
)
APPLY_BATCH = 1000  # events applied per transaction
APPLY_TIME_BUDGET = 20.0  # s per run; what is left goes to the next run


def callback_events_receive(*, installation: Installation, events: list[CallbackEvent]) -> int:
    """Keep a callback's events in the inbox and ask for the run that applies them; returns how many are new.

    The callback's request only stores (one statement): a worker applies what every callback stored, a
    thousand events per transaction (:func:`callback_inbox_apply`), within MESSAGES_CALLBACK_APPLY_DEBOUNCE
    and a moment; beat's sweep (every 15 s) applies them should that run be lost with the broker. The
    request costs about what a trivial view costs, however many events it carries (bench/cpu_per_sms.py).
    When this returns every event is stored, committed: only then may the view answer 2xx.

    Events for uuids not recorded yet (i-dgtl may call back before we record its answer to ``POST
    /message``) stay until the transaction that records those uuids applies them
    (:func:`callback_events_apply_pending`). Storing takes the installation's inbox lock, which that
    transaction also takes once the uuids are recorded, so one of the two always sees the other's work:
    the callback commits first (the recording transaction then finds the events) or after it (the run
    it asks for then finds the uuids). Only statuses that would change a message are kept; repeats of a
    stored event are not stored twice.
    """
    events = [e for e in events if state_for_idgtl_status(e.status) is not None]
    if not events:
        return 0
    if connection.vendor == "postgresql":
        stored = _inbox_store_in_one_statement(installation.pk, events)
    else:
        with transaction.atomic(durable=True):  # (SQLite: every write transaction is already exclusive)
            stored = _inbox_keep(installation, events)
    # robust: a broker hiccup must not turn stored events into a 500 (beat's sweep applies them)
    transaction.on_commit(CALLBACK_APPLY_RUN.schedule, robust=True)
    return stored


@functools.cache
def _inbox_store_sql() -> str:
    quote = connection.ops.quote_name
    meta = UnmatchedCallbackEvent._meta
    columns = ("installation", "message_uuid", "status", "status_time", "error_code", "raw_event", "received_at")
    return (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(meta.get_field(c).column) for c in columns)}) "
        f"SELECT %s, e.uuid, e.status, e.status_time, e.error_code, e.raw, %s "
        f"FROM (SELECT pg_advisory_xact_lock(%s, %s)) AS inbox_lock, json_to_recordset(%s::json) "
        f"AS e(uuid text, status text, status_time timestamptz, error_code integer, raw text) "
        f"ON CONFLICT DO NOTHING RETURNING 1"
    )


def _inbox_store_in_one_statement(installation_id: int, events: list[CallbackEvent]) -> int:
    """The events in the inbox with ONE statement (its own transaction), under the installation's inbox lock.

    The events go as one JSON parameter (json_to_recordset), through the kept server-binding cursor: a
    quarter of the client CPU of one array per column through Django's cursor (0.16 against 0.65 ms for
    10 events, measured in one process).
    """
    rows, seen = [], set()
    for event in events:
        key = (event.message_uuid, event.status, event.status_time)
        if key in seen:
            continue  # a repeat inside the call (NULL status times would not meet in the unique constraint)
        seen.add(key)
        rows.append(
            {
                "uuid": event.message_uuid,
                "status": event.status,
                "status_time": event.status_time.isoformat() if event.status_time else None,
                "error_code": event.error_code,  # (the parser keeps only codes that fit the column)
                "raw": UnmatchedCallbackEvent.raw_event_text(event.raw),
            }
        )
    params = [installation_id, timezone.now(), INBOX_LOCK_NAMESPACE, installation_id % 2**31, json.dumps(rows)]
    cursor = kept_cursor()
    with connection.wrap_database_errors:
        cursor.execute(_inbox_store_sql(), params, prepare=True)
        return len(cursor.fetchall())


def callback_inbox_apply(*, batch: int = APPLY_BATCH, time_budget: float = APPLY_TIME_BUDGET) -> int:
    """Apply the inbox's events whose message uuid is recorded, oldest first, ``batch`` per transaction;
    returns how many changed something. The debounced run and beat's sweep call it.

    Each transaction takes the inbox's applying lock (one run at a time, so a message's events apply in
    the order they arrived), locks the messages in id order, judges every event against the message as
    the events before it left it (never back, never twice, final stays final: :func:`_messages_apply_statuses`)
    and deletes the events it took. Events of messages not handed to i-dgtl yet stay.

    An event that cannot be applied does not hold the others back: when a batch fails other than on the
    connection (a lost connection or a deadlock fails the run; the next one, or beat's sweep, goes on), its
    events are applied one per transaction up to the one that fails, which is logged and left in the inbox
    (tried again by the next run; dropped and counted when it outlives a message), and the run goes on
    after it.
    """
    CALLBACK_APPLY_RUN.started()  # events stored from now on ask for a new run
    deadline = time.monotonic() + time_budget
    applied, after = 0, 0
    while True:
        failed = False
        try:
            due, done = _inbox_apply_batch(after=after, limit=batch)
        except OperationalError:
            raise
        except Exception:
            logger.exception("i-dgtl callback inbox: a batch of events could not be applied; applying them one by one")
            due, done = _inbox_apply_until_failure(after=after, limit=batch)
            failed = True
        applied += done
        if not due:
            return applied
        after = due[-1][0]
        if len(due) < batch and not failed:
            return applied
        if time.monotonic() > deadline:
            CALLBACK_APPLY_RUN.schedule()  # more than a run's worth: the next run goes on
            return applied


def _inbox_apply_batch(*, after: int, limit: int) -> tuple[list[tuple], int]:
    """One transaction: up to ``limit`` due events with an id above ``after`` applied and deleted.
    Returns (the due rows, how many changed something)."""
    with transaction.atomic(durable=True):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [INBOX_LOCK_NAMESPACE, APPLY_LOCK_KEY])
        due = _inbox_due(after=after, limit=limit)
        if not due:
            return due, 0
        locked = {m.pk: m for m in _lock_messages(ids=[row[5] for row in due])}
        applied = _messages_apply_statuses(
            [
                (locked[message_id], status, status_time, error_code)
                for _id, status, status_time, error_code, _uuid, message_id in due
            ],
            source=ChangeSource.CALLBACK,
        )
        UnmatchedCallbackEvent.objects.filter(pk__in=[row[0] for row in due]).delete()
    return due, applied


def _inbox_apply_until_failure(*, after: int, limit: int) -> tuple[list[tuple], int]:
    """The events of a failed batch one per transaction, up to the first that fails again: that one is
    logged and skipped for this run. Returns (the rows passed, including the failed one; how many changed
    something)."""
    passed, applied = [], 0
    while len(passed) < limit:
        try:
            due, done = _inbox_apply_batch(after=after, limit=1)
        except OperationalError:
            raise
        except Exception:
            failed = _inbox_due(after=after, limit=1)  # (its transaction was rolled back: read it again)
            if failed:
                logger.exception(
                    "i-dgtl callback inbox: the event for message uuid %s (status %s) could not be applied; "
                    "it stays in the inbox",
                    failed[0][4],
                    failed[0][1],
                )
                passed.append(failed[0])
            return passed, applied
        if not due:
            break
        passed += due
        applied += done
        after = due[-1][0]
    return passed, applied


def _inbox_due(*, after: int, limit: int) -> list[tuple]:
    """(event id, status, status time, error code, message uuid, message id) of the events whose message
    has its uuid recorded, with an id above ``after``, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(_inbox_due_sql(), [MessageState.RECEIVED, MessageState.SENDING, after, limit])
        return cursor.fetchall()


APPLY_LOCK_KEY = -1  # second key of the applying run's advisory lock (installations' inbox locks are >= 0)


@functools.cache
def _inbox_due_sql() -> str:
    quote = connection.ops.quote_name
    event, message = UnmatchedCallbackEvent._meta, Message._meta

    def e(name):
        return f"e.{quote(event.get_field(name).column)}"

    def m(name):
        return f"m.{quote(message.get_field(name).column)}"

    return (
        f"SELECT {e('id')}, {e('status')}, {e('status_time')}, {e('error_code')}, {e('message_uuid')}, {m('id')} "
        f"FROM {quote(event.db_table)} e JOIN {quote(message.db_table)} m "
        f"ON {m('installation')} = {e('installation')} AND {m('idgtl_message_uuid')} = {e('message_uuid')} "
        f"WHERE {m('state')} NOT IN (%s, %s) AND {e('id')} > %s ORDER BY {e('id')} LIMIT %s"
    )


def _lock_messages(*, ids=None, installation_id: int | None = None, uuids=None) -> list[Message]:
    """The messages with these ``ids``, or those of ``installation_id`` with these ``uuids``, read and
    locked for this transaction in id order (two callbacks that share messages then wait for each
    other instead of deadlocking).

    On PostgreSQL one SQL text whatever the number of messages (the ids or uuids are one array
    parameter), built once per process: Django's compilation of the same query cost a callback
    more CPU than the query itself (bench/cpu_per_sms.py).
    """
    values = sorted(set(ids if ids is not None else uuids))
    if not values:
        return []
    if connection.vendor != "postgresql":
        queryset = (
            Message.objects.filter(pk__in=values)
            if ids is not None
            else Message.objects.filter(installation_id=installation_id, idgtl_message_uuid__in=values)
        )
        return list(queryset.select_for_update().order_by("pk"))
    if ids is not None:
        return list(Message.objects.raw(_lock_sql("id"), [values]))
    return list(Message.objects.raw(_lock_sql("uuid"), [installation_id, values]))


@functools.cache
def _lock_sql(by: str) -> str:
    quote = connection.ops.quote_name
    meta = Message._meta
    columns = ", ".join(quote(f.column) for f in meta.concrete_fields)
    where = {
        "id": f"{quote(meta.pk.column)} = ANY(%s::bigint[])",
        "uuid": (
            f"{quote(meta.get_field('installation').column)} = %s "
            f"AND {quote(meta.get_field('idgtl_message_uuid').column)} = ANY(%s::text[])"
        ),
    }[by]
    return f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {where} ORDER BY {quote(meta.pk.column)} FOR UPDATE"


# --- callback inbox ----------------------------------------------------------------------------------
INBOX_LOCK_NAMESPACE = 0x62323469  # first key of PostgreSQL advisory locks on an installation's inbox
INBOX_CHUNK = 500


def _inbox_lock(installation_ids) -> None:
    """Serialise, per installation, "look uuids up, then keep the unknown events" (a callback) with
    "record uuids, then apply kept events" (a send's answer), until the transaction ends.

    PostgreSQL: a transaction-level advisory lock per installation, in id order (not the
    Installation row, which a token refresh holds during its HTTP call). SQLite: nothing to do, every
    transaction already holds the database's write lock from its start (transaction_mode IMMEDIATE).
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for installation_id in sorted(set(installation_ids)):
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [INBOX_LOCK_NAMESPACE, installation_id % 2**31])


def _inbox_keep(installation: Installation, events: list[CallbackEvent]) -> int:
    """Store events for unknown uuids, each (uuid, status, status time) once; returns how many are new.

    Only statuses that would change a message are kept. Runs under the inbox lock, so the check for
    repeats sees every stored event (the unique constraint is the backstop; it cannot catch repeats
    without a status time, whose NULLs are distinct).
    """
    events = [e for e in events if state_for_idgtl_status(e.status) is not None]
    if not events:
        return 0
    stored = set()
    uuids = sorted({e.message_uuid for e in events})
    for start in range(0, len(uuids), INBOX_CHUNK):
        stored.update(
            UnmatchedCallbackEvent.objects.filter(
                installation=installation,
                message_uuid__in=uuids[start : start + INBOX_CHUNK],
            ).values_list("message_uuid", "status", "status_time")
        )
    now = timezone.now()
    rows = []
    for event in events:
        key = (event.message_uuid, event.status, event.status_time)
        if key in stored:
            continue
        stored.add(key)
        rows.append(
            UnmatchedCallbackEvent(
                installation=installation,
                message_uuid=event.message_uuid,
                status=event.status,
                status_time=event.status_time,
                error_code=event.error_code,
                raw_event=UnmatchedCallbackEvent.raw_event_text(event.raw),
                received_at=now,
            )
        )
    UnmatchedCallbackEvent.objects.bulk_create(rows, batch_size=INBOX_CHUNK, ignore_conflicts=True)
    return len(rows)


def callback_events_apply_pending(*, messages: list[Message]) -> int:
    """Apply the kept callback events of ``messages``, whose uuids were just recorded, and empty them
    from the inbox. Returns how many changed something.

    Call it inside the transaction that records the uuids, after recording them: the events then
    apply in the same commit, through the same path as a live callback, in i-dgtl's order (status
    time, then arrival), so the timeline shows "sent" before "delivered" and the final status wins.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("callback_events_apply_pending must run inside the transaction that records the uuids")
    by_key = {(m.installation_id, m.idgtl_message_uuid): m for m in messages if m.idgtl_message_uuid}
    if not by_key:
        return 0
    _inbox_lock(installation_id for installation_id, _uuid in by_key)
    uuids_by_installation = defaultdict(list)
    for installation_id, uuid in by_key:
        uuids_by_installation[installation_id].append(uuid)
    pending = []
    for installation_id, uuids in uuids_by_installation.items():
        for start in range(0, len(uuids), INBOX_CHUNK):
            pending += UnmatchedCallbackEvent.objects.filter(
                installation_id=installation_id, message_uuid__in=uuids[start : start + INBOX_CHUNK]
            )
    if not pending:
        return 0
    pending.sort(key=lambda e: (e.status_time or e.received_at, e.received_at, e.pk))
    message_ids = [by_key[(e.installation_id, e.message_uuid)].pk for e in pending]
    locked = {m.pk: m for m in _lock_messages(ids=message_ids)}
    applied = _messages_apply_statuses(
        [(locked[pk], e.status, e.status_time, e.error_code) for pk, e in zip(message_ids, pending, strict=False)],
        source=ChangeSource.CALLBACK,
    )
    UnmatchedCallbackEvent.objects.filter(pk__in=[e.pk for e in pending]).delete()
    logger.info("i-dgtl callback: %d kept events applied once their uuids were recorded", len(pending))
    return applied


def callback_inbox_sweep(*, now=None) -> dict:
    """Beat's sweep of the inbox: apply the events whose uuid is recorded (those a lost applying run left,
    or whose uuid became known some other way, a lookup after an unknown outcome, say), then drop those
    older than a message lives."""
    now = now or timezone.now()
    applied = callback_inbox_apply()
    dropped, _by_model = UnmatchedCallbackEvent.objects.expired(now).delete()
    if dropped:
        logger.warning(
            "i-dgtl callback inbox: %d events dropped, their uuids never recorded within the message lifetime", dropped
        )
        metrics.record_callback_events_dropped(dropped)
    return {"applied": applied, "dropped": dropped}


def _status_is_news(message: Message, status: str, new_state: str) -> bool:
    """Whether i-dgtl ``status`` (our ``new_state``) changes ``message`` as it stands now: repeats,
    and anything that would move it back or reach it before its uuid is stored, do not."""
    if message.is_final or message.idgtl_status == status:
        return False
    if message.state in (MessageState.RECEIVED, MessageState.SENDING):
        return False  # only a message with its uuid stored takes statuses
    if STATE_RANK[new_state] < STATE_RANK[message.state]:
        return False
    if new_state == message.state and not idgtl_status_moves_forward(message.idgtl_status, status):
        return False
    return True


def message_apply_idgtl_status(
    *, message: Message, status: str, status_time=None, error_code=None, source: str
) -> bool:
    """Record an i-dgtl status of a message; True when it changed anything.

    Unknown statuses, repeats and anything that would move the message back are ignored.
    """
    with transaction.atomic():
        locked = Message.objects.select_for_update().get(pk=message.pk)
        return bool(_messages_apply_statuses([(locked, status, status_time, error_code)], source=source))


def _messages_apply_statuses(statuses: list[tuple], *, source: str) -> int:
    """Record i-dgtl statuses ``(message, status, status time, error code)``, in the order given, on
    messages read and locked in this transaction; returns how many changed something.

    Each status is judged against the message as the ones before it left it (:func:`_status_is_news`),
    exactly as if they were applied one by one; then the lot is written with a few statements: one
    INSERT of the timeline entries and one UPDATE for the statuses that keep the state (i-dgtl
    ``sending`` -> ``sent``), and one :func:`messages_change_state` per (new state, status) for the
    others. A message whose change of state is gathered but not written yet gets the next status of
    its own only after a write (so each change sees the state before it); that never happens today:
    a message takes statuses while it is SENT, and every other state it reaches is final.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("i-dgtl statuses are recorded inside the transaction that locked the messages")
    now = timezone.now()
    timeline: list[MessageStatusChange] = []  # of the statuses that keep the state, in order
    keeping: dict[int, Message] = {}  # messages with such a status, by id
    moving: dict[tuple, list[Message]] = defaultdict(list)  # (new state, status, error code set) -> messages
    moving_ids: set[int] = set()

    def write():
        MessageStatusChange.objects.bulk_create(timeline, batch_size=1000)
        kept = [message for pk, message in keeping.items() if pk not in moving_ids]  # moving ones: written below
        for message in kept:
            message.updated_at = now
        bulk_update_rows(Message, kept, ("idgtl_status", "idgtl_status_at", "updated_at"))
        for (new_state, status, with_error), messages in moving.items():
            fields = ("idgtl_status", "idgtl_status_at") + (("error_code", "error_message") if with_error else ())
            messages_change_state(
                messages=messages,
                state=new_state,
                source=source,
                detail=_("i-dgtl status: %(status)s") % {"status": status},
                update_fields=fields,
            )
        timeline.clear()
        keeping.clear()
        moving.clear()
        moving_ids.clear()

    applied = 0
    with usage_deferred():  # one rollup statement for all the state changes, in key order (usage.py)
        for message, status, status_time, error_code in statuses:
            new_state = state_for_idgtl_status(status)
            if new_state is None:
                logger.info("Unknown i-dgtl status %r for message %s ignored", status, message.pk)
                continue
            if message.pk in moving_ids:
                write()  # its change of state first, then this status is judged against the new state
            if not _status_is_news(message, status, new_state):
                continue
            applied += 1
            message.idgtl_status = status
            message.idgtl_status_at = parse_status_time(status_time) or now
            if new_state == message.state:  # e.g. i-dgtl sending -> sent: no new state, still on the timeline
                keeping[message.pk] = message
                timeline.append(
                    MessageStatusChange(
                        message=message,
                        previous_state=message.state,
                        state=message.state,
                        idgtl_status=status,
                        source=source,
                        detail=_("i-dgtl status: %(status)s") % {"status": status},
                    )
                )
                continue
            error_code = parse_error_code(error_code)
            with_error = new_state in (MessageState.UNDELIVERED, MessageState.FAILED) and isinstance(error_code, int)
            if with_error:
                message.error_code = error_code
                message.error_message = _("i-dgtl error %(code)s") % {"code": error_code}
            moving[(new_state, status, with_error)].append(message)
            moving_ids.add(message.pk)
        write()
    return applied


# --- reconciler ---------------------------------------------------------------------------------------
def messages_reconcile(*, now=None, limit: int = 5000) -> dict:
    """Look up sent messages still without a final status; fail those past the lifetime and a margin."""
    now = now or timezone.now()
    lifetime_end = now - timedelta(hours=settings.MESSAGES_LIFETIME_HOURS, seconds=settings.MESSAGES_LIFETIME_MARGIN)
    expired = messages_fail_expired(before=lifetime_end)
    due = list(
        Message.objects.filter(state=MessageState.SENT, next_check_at__lte=now)
        .select_related("installation__account")
        .order_by("next_check_at")[:limit]
    )
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
        messages = list(
            Message.objects.select_for_update().filter(
                state__in=(MessageState.SENDING, MessageState.SENT), sending_started_at__lt=before
            )[:1000]
        )
        for message in messages:
            message.error_message = _("No final status from i-dgtl within the message lifetime.")
        messages_change_state(
            messages=messages,
            state=MessageState.FAILED,
            source=ChangeSource.RECONCILER,
            update_fields=("error_message",),
        )
    return len(messages)


def _reconcile_account(account, messages: list[Message], now) -> int:
    found: dict[str, dict] = {}
    client = IdgtlClient.for_messages(account)
    try:
        for start in range(0, len(messages), LOOKUP_CHUNK):
            chunk = messages[start : start + LOOKUP_CHUNK]
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
            message_apply_idgtl_status(
                message=message,
                status=item["status"],
                status_time=item.get("statusTime"),
                error_code=item.get("errorCode"),
                source=ChangeSource.RECONCILER,
            )
    by_due = defaultdict(list)
    for message in messages:
        by_due[Message.reconcile_due_at(sent_at=message.sent_at or now, now=now)].append(message.pk)
    for due, ids in by_due.items():
        Message.objects.filter(pk__in=ids, state=MessageState.SENT).update(next_check_at=due)
    return len(messages)
