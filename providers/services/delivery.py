"""Delivery: i-dgtl callbacks and the reconciler move sent messages to their final status.

Idempotent by (message_uuid, status); a message only moves forward and a final status never changes.
A callback may come before the uuids of the send's answer are recorded: its events wait in the inbox
(UnmatchedCallbackEvent) and are applied in the transaction that records those uuids.
"""

import functools
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from common import metrics
from common.bulk import bulk_update_rows
from idgtl.client import IdgtlClient, IdgtlError
from idgtl.services import account_get_default
from providers.callback_form import CallbackEvent, parse_error_code, parse_status_time
from providers.models import Installation, Message, MessageState, MessageStatusChange, UnmatchedCallbackEvent
from providers.services.timeline import ChangeSource, messages_change_state
from providers.services.usage import usage_deferred
from providers.status_mapping import STATE_RANK, idgtl_status_moves_forward, state_for_idgtl_status

logger = logging.getLogger(__name__)

LOOKUP_CHUNK = 100


@dataclass(frozen=True)
class CallbackOutcome:
    applied: int  # events that changed something
    kept: int  # events for uuids not recorded yet, now in the inbox (repeats of kept ones not counted)


def callback_events_apply(*, installation: Installation, events: list[CallbackEvent]) -> CallbackOutcome:
    """Apply callback events to this installation's messages; keep those whose uuid is not recorded yet.

    i-dgtl may call back before the uuids of its answer to ``POST /message`` are recorded. Such an
    event goes to the inbox (UnmatchedCallbackEvent) and the transaction that records the uuid
    applies it (callback_events_apply_pending), so the order of callback and answer never matters.
    Everything here is one durable transaction: when this returns, every event is applied or stored,
    and only then may the view answer 2xx.

    Set-based: the messages are locked with one query and all the events of the call are written
    with a few bulk statements (:func:`_messages_apply_statuses`), however many it carries.
    """
    if not events:
        return CallbackOutcome(0, 0)
    uuids = {e.message_uuid for e in events}
    try:
        with transaction.atomic(durable=True):
            # The usual call: every uuid is recorded. Its messages are locked at once, no inbox lock.
            messages = {m.idgtl_message_uuid: m for m in _lock_messages(installation_id=installation.pk, uuids=uuids)}
            if len(messages) < len(uuids):
                raise _UuidsNotRecorded  # rolled back: no row stays locked while the inbox lock is awaited
            applied = _messages_apply_statuses(
                [(messages[e.message_uuid], e.status, e.status_time, e.error_code) for e in events],
                source=ChangeSource.CALLBACK,
            )
        return CallbackOutcome(applied, 0)
    except _UuidsNotRecorded:
        pass
    with transaction.atomic(durable=True):
        # Unknown uuids: take the inbox lock, then look again. A send that recorded them meanwhile
        # has committed by now (it holds the lock until then); one that records them later finds
        # what is stored here (it waits for the lock, i.e. for this commit). The lookups take no row
        # lock before the inbox lock: that send holds its messages' rows while it waits for it.
        known = _message_ids_by_uuid(installation.pk, uuids)
        if len(known) < len(uuids):
            _inbox_lock([installation.pk])
            known.update(_message_ids_by_uuid(installation.pk, uuids - known.keys()))
        messages = {m.pk: m for m in _lock_messages(ids=known.values())}
        statuses, unknown = [], []
        for event in events:
            message = messages.get(known.get(event.message_uuid))
            if message is None:
                unknown.append(event)
            else:
                statuses.append((message, event.status, event.status_time, event.error_code))
        applied = _messages_apply_statuses(statuses, source=ChangeSource.CALLBACK)
        kept = _inbox_keep(installation, unknown)
    if unknown:
        logger.info(
            "i-dgtl callback: %d events for message uuids not recorded yet kept in the inbox (%d new)",
            len(unknown),
            kept,
        )
    return CallbackOutcome(applied, kept)


class _UuidsNotRecorded(Exception):
    pass


def _message_ids_by_uuid(installation_id: int, uuids) -> dict[str, int]:
    return dict(
        Message.objects.filter(installation_id=installation_id, idgtl_message_uuid__in=uuids).values_list(
            "idgtl_message_uuid", "pk"
        )
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


def callback_inbox_sweep(*, now=None, limit: int = 1000) -> dict:
    """Beat's sweep of the inbox: apply kept events whose uuid has become known some other way (a
    lookup after an unknown outcome, say), then drop those older than a message lives."""
    now = now or timezone.now()
    known = list(
        Message.objects.filter(
            idgtl_message_uuid__in=UnmatchedCallbackEvent.objects.order_by().values("message_uuid"),
        ).exclude(state__in=(MessageState.RECEIVED, MessageState.SENDING))[:limit]
    )
    applied = 0
    if known:
        with transaction.atomic():
            applied = callback_events_apply_pending(messages=known)
    dropped, _by_model = UnmatchedCallbackEvent.objects.expired(now).delete()
    if dropped:
        logger.warning(
            "i-dgtl callback inbox: %d events dropped, their uuids never recorded within the message lifetime", dropped
        )
        metrics.record_callback_events_dropped(dropped)
    return {"matched": len(known), "applied": applied, "dropped": dropped}


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
