"""Sending: waiting messages go to i-dgtl in batches, each message at most once.

A claim moves RECEIVED -> SENDING (recorded before any HTTP call), then one ``POST /message`` per
(i-dgtl account, sender name) of up to 1000 messages. An answer that may have been lost
(IdgtlOutcomeUnknown), or a SENDING message left behind by a crashed worker, is resolved by
looking the messages up with ``GET /message`` (by ``externalMessageId`` = our pk) before any resend.

Leases: a claimed message's ``next_check_at`` is its lease, MESSAGES_SEND_LEASE (one attempt's
connect + read timeout and a margin). It is renewed right before every HTTP attempt of the send,
only while it has not lapsed and the message is still at the same ``send_attempts`` (the fencing
token): a worker that lost its lease never sends. When a lease lapses (its worker died), the next
sweep takes the messages over (a conditional UPDATE, so two sweeps never both take one) and looks
them up: a dead worker delays its messages by the lease and one sweep interval, not by minutes.
"""

import functools
import logging
import time
from collections import defaultdict
from datetime import timedelta

import phonenumbers
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from common import metrics
from common.debounce import DebouncedRun
from common.pg import kept_cursor
from common.public_urls import public_url
from common.taskqueue import enqueue_later
from idgtl.client import (
    IdgtlClient,
    IdgtlConfigurationError,
    IdgtlError,
    IdgtlOutcomeUnknown,
    IdgtlTransientError,
    IdgtlValidationError,
)
from idgtl.contract import CALLBACK_EVENTS, GET_MESSAGES_MAX_WINDOW, MESSAGE_CREATED_ITEM_CODE, SEND_BATCH_MAX
from idgtl.services import account_get_default
from providers.models import Installation, Message, MessageState
from providers.services.delivery import callback_events_apply_pending, message_apply_idgtl_status
from providers.services.quotas import quotas_apply
from providers.services.timeline import ChangeSource, messages_change_state
from providers.services.usage import usage_deferred

logger = logging.getLogger(__name__)

SEND_TASK = "providers.tasks.send_waiting_messages"
SEND_SCHEDULED_KEY = "providers:send-scheduled"
LOOKUP_PAGE_SIZE = 100
LOOKUP_MARGIN = timedelta(minutes=5)  # clock skew and the time a send call may take, around the claim time


# --- scheduling --------------------------------------------------------------------------------------
# A burst of HANDLER calls costs each web process about one Redis call per debounce period, and the cluster
# about one task per period, not one per SMS (common/debounce.py). When the workers are behind, due runs
# wait in the queue and each period adds one (each claims what is waiting then; the later ones find little
# or nothing). Should a run start early and miss a message, the beat job messages-send-waiting sends it
# within 15 s.
SEND_RUN = DebouncedRun(task=SEND_TASK, key=SEND_SCHEDULED_KEY, delay_setting="MESSAGES_SEND_DEBOUNCE")


def sending_schedule() -> None:
    """Ask for a send run soon; many calls within a moment cost one task (a burst becomes batches)."""
    SEND_RUN.schedule()


def sending_schedule_later(delay: float) -> None:
    enqueue_later(SEND_TASK, countdown=max(0.0, delay))


def sending_run() -> dict:
    """One sweep: resolve unknown outcomes first, then send everything waiting. Used by the task."""
    SEND_RUN.started()  # anything stored from now on schedules a new run
    resolved = messages_resolve_unknown_outcomes()
    sent = messages_send_waiting()
    return {"resolved": resolved, "sent": sent}


# --- helpers -----------------------------------------------------------------------------------------
def callback_url(installation) -> str:
    """The callbackUrl given to i-dgtl: its own secret, never the HANDLER's (which can send SMS)."""
    return public_url("idgtl-callback", secret=installation.callback_secret)


def _account_for(installation, default_cache: dict):
    if installation.account_id:
        return installation.account
    if "default" not in default_cache:
        default_cache["default"] = account_get_default()
    return default_cache["default"]


def _retry_delay(attempts: int) -> float:
    return min(settings.MESSAGES_SEND_RETRY_BACKOFF * (2 ** max(0, attempts - 1)), 3600.0)


def _lock_still(messages: list[Message], state: str) -> list[Message]:
    """The messages (locked for this transaction) still in ``state`` at the same send attempt as ours.

    The attempt number fences a worker that fell behind: once its messages were taken over and
    claimed again, what it learns about its own attempt is not applied to the new one.
    """
    attempts = dict(
        Message.objects.select_for_update()
        .filter(pk__in=[m.pk for m in messages], state=state)
        .values_list("pk", "send_attempts")
    )
    return [m for m in messages if attempts.get(m.pk) == m.send_attempts]


def _lease_end(now):
    return now + timedelta(seconds=settings.MESSAGES_SEND_LEASE)


class SendLeaseLost(Exception):
    """Our claim on these messages lapsed or was taken over: this worker must not send them."""


def messages_lease_renew(*, messages: list[Message]) -> None:
    """Extend the send lease of claimed messages, or SendLeaseLost when any of them is no longer ours.

    One UPDATE per send-attempt number (usually one), fenced by the state, the attempt number and a
    lease that has not lapsed yet: after a lapse the messages may be under a lookup, and sending
    them then could send them twice.
    """
    now = timezone.now()
    by_attempts = defaultdict(list)
    for message in messages:
        by_attempts[message.send_attempts].append(message.pk)
    renewed = 0
    for attempts, ids in by_attempts.items():
        renewed += Message.objects.filter(
            pk__in=ids, state=MessageState.SENDING, send_attempts=attempts, next_check_at__gt=now
        ).update(next_check_at=_lease_end(now))
    if renewed != len(messages):
        raise SendLeaseLost(
            f"{len(messages) - renewed} of {len(messages)} messages are no longer claimed by this worker"
        )


def destination_normalise(*, message_to: str, region: str) -> str:
    """i-dgtl's destination form (digits, country code first) or '' when the number is not valid."""
    try:
        number = phonenumbers.parse(message_to, (region or "RU").upper())
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def _waiting_queryset(now):
    queryset = (
        Message.objects.filter(state=MessageState.RECEIVED)
        .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
        .order_by("id")
    )
    if connection.vendor == "postgresql":
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset.select_for_update()


def _with_installations(messages: list[Message]) -> list[Message]:
    """Each message given its installation (and that one's i-dgtl account), read once per claim: a
    batch is mostly a few portals, and a join would build the same objects again for every row."""
    installations = Installation.objects.select_related("account").in_bulk({m.installation_id for m in messages})
    for message in messages:
        message.installation = installations[message.installation_id]
    return messages


# --- sending -----------------------------------------------------------------------------------------
def messages_claim(*, limit: int) -> list[Message]:
    """Claim up to ``limit`` waiting messages: RECEIVED -> SENDING, committed before any call.

    The number as Bitrix24 gave it becomes i-dgtl's destination here, in the portal's phone region
    (not in the HANDLER, which only stores); a number that is not valid fails without calling i-dgtl.
    """
    return _claim(limit=limit)[0]


def _claim(*, limit: int) -> tuple[list[Message], int]:
    """(the messages claimed, how many waiting messages were taken: claimed or failed as invalid)."""
    now = timezone.now()
    with transaction.atomic():
        waiting = _with_installations(list(_waiting_queryset(now)[:limit]))
        normalised = [m for m in waiting if not m.destination]
        for message in normalised:
            message.destination = destination_normalise(
                message_to=message.message_to, region=message.installation.default_region
            )
        invalid = [m for m in waiting if not m.destination]
        claimed = [m for m in waiting if m.destination]
        for message in invalid:
            message.error_message = _("Invalid phone number: %(number)s") % {"number": message.message_to}
        # Quotas, under a per-portal lock held until this transaction commits (services/quotas.py).
        over_quota = quotas_apply(messages=claimed, now=now)
        if over_quota:
            refused_ids = {m.pk for m in over_quota}
            claimed = [m for m in claimed if m.pk not in refused_ids]
        with usage_deferred():  # one rollup statement, in key order (services/usage.py)
            messages_change_state(
                messages=invalid + over_quota,
                state=MessageState.FAILED,
                source=ChangeSource.SEND,
                update_fields=("error_message", "destination") if normalised else ("error_message",),
            )
            for message in claimed:
                message.send_attempts += 1
            messages_change_state(
                messages=claimed,
                state=MessageState.SENDING,
                source=ChangeSource.SEND,
                detail="",
                same={
                    "sending_started_at": now,
                    "send_attempts": F("send_attempts") + 1,
                    "next_check_at": _lease_end(now),
                    "error_message": "",
                },
                update_fields=("destination",) if normalised else (),
            )
    return claimed, len(waiting)


def messages_send_waiting(*, batch_size: int | None = None, time_budget: float | None = None) -> int:
    """Send everything waiting, one call per (account, sender name) and batch. Returns how many were sent.

    Claims again only after a full batch: what arrives while a batch is being sent has asked for a
    run of its own (sending_schedule, debounced), so a steady stream of HANDLER calls becomes one
    batch per MESSAGES_SEND_DEBOUNCE rather than a run that chases it with batches of a few messages.
    """
    batch_size = min(batch_size or settings.MESSAGES_SEND_BATCH_SIZE, SEND_BATCH_MAX)
    deadline = time.monotonic() + (time_budget if time_budget is not None else settings.MESSAGES_SEND_TIME_BUDGET)
    sent = 0
    while time.monotonic() < deadline:
        claimed, taken = _claim(limit=batch_size)
        default_cache: dict = {}
        groups = defaultdict(list)
        for message in claimed:
            account = _account_for(message.installation, default_cache)
            groups[(account.pk if account else None, message.sender_name)].append((account, message))
        for (_account_id, sender_name), pairs in groups.items():
            sent += messages_send_batch(account=pairs[0][0], sender_name=sender_name, messages=[m for _a, m in pairs])
        if taken < batch_size:
            break  # nothing more was waiting
    else:
        sending_schedule_later(0)  # out of time with work left: continue in a fresh task
    return sent


def _payload(message: Message, sender_name: str, callback_urls: dict) -> dict:
    callback = callback_urls.get(message.installation_id)
    if callback is None:  # once per portal and batch (a reverse() costs tens of microseconds)
        callback = callback_urls[message.installation_id] = callback_url(message.installation)
    return {
        "channelType": "SMS",
        "senderName": sender_name,
        "destination": message.destination,
        "content": message.text,
        "externalMessageId": str(message.pk),
        "callbackUrl": callback,
        "callbackEvents": list(CALLBACK_EVENTS),
    }


def messages_send_batch(*, account, sender_name: str, messages: list[Message]) -> int:
    """One ``POST /message`` for claimed (SENDING) messages; records what became of each one."""
    if account is None or not account.messages_key:
        _fail(messages, _("No i-dgtl messages key (TOKEN_1) is configured for this portal's account."))
        return 0
    client = IdgtlClient.for_messages(account)
    callback_urls: dict = {}
    try:
        response = client.send_messages(
            [_payload(m, sender_name, callback_urls) for m in messages],
            before_attempt=lambda: messages_lease_renew(messages=messages),
        )
    except SendLeaseLost as exc:  # nothing sent by this worker; the sweep's lookup decides
        logger.warning("send of %d messages abandoned: %s", len(messages), exc)
        return 0
    except IdgtlOutcomeUnknown as exc:
        logger.warning("i-dgtl send outcome unknown for %d messages: %s", len(messages), exc)
        _mark_outcome_unknown(messages, str(exc))
        return 0
    except IdgtlTransientError as exc:
        logger.warning("i-dgtl send failed temporarily for %d messages: %s", len(messages), exc)
        _return_to_waiting(messages, str(exc), retry_after=exc.retry_after)
        return 0
    except IdgtlConfigurationError as exc:
        logger.error("i-dgtl refused the messages key of account %s: %s", account, exc)
        _fail(
            messages,
            _("i-dgtl configuration error (check the messages key): %(error)s") % {"error": exc.message},
            code=exc.code,
        )
        return 0
    except IdgtlValidationError as exc:
        _fail(messages, exc.message, code=exc.code)
        return 0
    except IdgtlError as exc:
        logger.error("i-dgtl send failed for %d messages: %s", len(messages), exc)
        _fail(messages, str(exc), code=exc.code)
        return 0
    finally:
        client.close()
    return _apply_send_result(messages, response)


def _apply_send_result(messages: list[Message], response) -> int:
    items = response.get("items") if isinstance(response, dict) else None
    if not isinstance(items, list) or len(items) != len(messages):
        # Items follow the request order [I]; if they do not line up we cannot tell which is which.
        _mark_outcome_unknown(
            messages,
            _("i-dgtl answered with %(n)s items for %(m)s messages.")
            % {"n": len(items) if isinstance(items, list) else "no", "m": len(messages)},
        )
        return 0
    now = timezone.now()
    sent, failed = [], []
    with transaction.atomic():
        still_sending = {m.pk for m in _lock_still(messages, MessageState.SENDING)}
        for message, item in zip(messages, items, strict=False):
            if message.pk not in still_sending:
                continue
            item = item if isinstance(item, dict) else {}
            uuid = item.get("messageUuid")
            if item.get("code") == MESSAGE_CREATED_ITEM_CODE and uuid:
                message.idgtl_message_uuid = str(uuid)
                sent.append(message)
            else:
                code = item.get("code")
                message.error_code = code if isinstance(code, int) else None
                message.error_message = str(item.get("msg") or _("i-dgtl error %(code)s") % {"code": code})
                failed.append(message)
        with usage_deferred():  # one rollup statement, in key order (services/usage.py)
            messages_change_state(
                messages=sent,
                state=MessageState.SENT,
                source=ChangeSource.SEND,
                detail="",
                same={"sent_at": now, "next_check_at": Message.reconcile_due_at(sent_at=now, now=now)},
                update_fields=("idgtl_message_uuid",),
            )
            messages_change_state(
                messages=failed,
                state=MessageState.FAILED,
                source=ChangeSource.SEND,
                update_fields=("error_code", "error_message"),
            )
            callback_events_apply_pending(messages=sent)  # callbacks that came before this answer, in this commit
    metrics.record_send_latency(*[(now - m.created_at).total_seconds() for m in sent])
    for message in failed:
        metrics.record_idgtl_error(message.error_code if message.error_code is not None else "item")
    return len(sent)


def _fail(messages: list[Message], error: str, code: int | None = None) -> None:
    with transaction.atomic():
        messages = _lock_still(messages, MessageState.SENDING)
        for message in messages:
            message.error_message = str(error)
        messages_change_state(
            messages=messages,
            state=MessageState.FAILED,
            source=ChangeSource.SEND,
            same={"error_code": code, "error_message": str(error)},
        )


def _mark_outcome_unknown(messages: list[Message], error: str) -> None:
    """They stay SENDING; a lookup decides later whether i-dgtl has them."""
    now = timezone.now()
    with transaction.atomic():
        messages = _lock_still(messages, MessageState.SENDING)
        for message in messages:
            message.error_message = _("Outcome unknown, to be looked up at i-dgtl: %(error)s") % {"error": error}
            message.next_check_at = now + timedelta(seconds=settings.MESSAGES_OUTCOME_LOOKUP_DELAY)
        Message.objects.bulk_update(messages, ["error_message", "next_check_at"])
    sending_schedule_later(settings.MESSAGES_OUTCOME_LOOKUP_DELAY + 0.5)


def _return_to_waiting(messages: list[Message], error: str, retry_after: float | None = None) -> None:
    """i-dgtl surely did not take them (the client says so): wait and send again, a bounded number of times."""
    now = timezone.now()
    retry, give_up = [], []
    with transaction.atomic():
        for message in _lock_still(messages, MessageState.SENDING):
            message.error_message = str(error)
            if message.send_attempts >= settings.MESSAGES_SEND_MAX_ATTEMPTS:
                give_up.append(message)
            else:
                delay = max(_retry_delay(message.send_attempts), retry_after or 0)
                message.next_check_at = now + timedelta(seconds=delay)
                retry.append(message)
        with usage_deferred():  # one rollup statement, in key order (services/usage.py)
            messages_change_state(
                messages=retry,
                state=MessageState.RECEIVED,
                source=ChangeSource.SEND,
                update_fields=("error_message", "next_check_at"),
            )
            messages_change_state(
                messages=give_up, state=MessageState.FAILED, source=ChangeSource.SEND, update_fields=("error_message",)
            )
    if retry:
        delay = min((m.next_check_at - now).total_seconds() for m in retry)
        transaction.on_commit(lambda: sending_schedule_later(delay + 0.1), robust=True)


# --- outcome unknown ---------------------------------------------------------------------------------
def _unknown_outcome_queryset(now):
    return (
        Message.objects.filter(state=MessageState.SENDING)
        .filter(Q(next_check_at__lte=now) | Q(next_check_at__isnull=True, sending_started_at__lte=_stale_before(now)))
        .select_related("installation__account")
    )


def _unknown_outcome_exists(now) -> bool:
    """Whether :func:`_unknown_outcome_queryset` finds anything: on PostgreSQL one prepared SQL text (every
    send run asks, and almost always the answer is no; the ORM's query cost a run more CPU than its send)."""
    if connection.vendor != "postgresql":
        return _unknown_outcome_queryset(now).exists()
    cursor = kept_cursor()
    with connection.wrap_database_errors:
        cursor.execute(_unknown_outcome_exists_sql(), [MessageState.SENDING, now, _stale_before(now)], prepare=True)
        return cursor.fetchone() is not None


@functools.cache
def _unknown_outcome_exists_sql() -> str:
    quote = connection.ops.quote_name
    meta = Message._meta

    def column(name):
        return quote(meta.get_field(name).column)

    return (
        f"SELECT 1 FROM {quote(meta.db_table)} WHERE {column('state')} = %s AND ({column('next_check_at')} <= %s "
        f"OR ({column('next_check_at')} IS NULL AND {column('sending_started_at')} <= %s)) LIMIT 1"
    )


def _stale_before(now):
    return now - timedelta(seconds=settings.MESSAGES_SEND_LEASE)  # a claim from before leases existed


def _take_over(candidates: list[Message], now) -> list[Message]:
    """The candidates this sweep now holds: each one's lapsed lease replaced by ours in one conditional
    UPDATE (fenced by the lease value read and the attempt number), so a concurrent sweep or a late
    renewal never leaves two parties with the same message."""
    taken = []
    lease = _lease_end(now)
    for message in candidates:
        if Message.objects.filter(
            pk=message.pk,
            state=MessageState.SENDING,
            send_attempts=message.send_attempts,
            next_check_at=message.next_check_at,
        ).update(next_check_at=lease):
            message.next_check_at = lease
            taken.append(message)
    return taken


def messages_resolve_unknown_outcomes(*, now=None) -> int:
    """Look SENDING messages with an unknown outcome up at i-dgtl; resend only those it does not have."""
    now = now or timezone.now()
    if not _unknown_outcome_exists(now):
        return 0  # the usual run: nothing to resolve, and no ORM query built for it
    candidates = _take_over(list(_unknown_outcome_queryset(now)[:GET_MESSAGES_MAX_WINDOW]), now)
    if not candidates:
        return 0
    default_cache: dict = {}
    by_account = defaultdict(list)
    for message in candidates:
        account = _account_for(message.installation, default_cache)
        by_account[account.pk if account else None].append((account, message))
    resolved = 0
    for pairs in by_account.values():
        resolved += _resolve_for_account(pairs[0][0], [m for _a, m in pairs], now)
    return resolved


def _lookup_by_external_id(client: IdgtlClient, messages: list[Message], now) -> tuple[dict[str, dict], bool]:
    """i-dgtl's items for our messages, keyed by externalMessageId, from the time window they were sent
    in, and whether that window was read to its end (only then does "not found" mean "not there")."""
    wanted = {str(m.pk) for m in messages}
    started = [m.sending_started_at or m.created_at for m in messages]
    time_from = min(started) - LOOKUP_MARGIN
    time_to = min(now, max(started) + LOOKUP_MARGIN) + timedelta(minutes=1)
    found: dict[str, dict] = {}
    page = 1
    while page * LOOKUP_PAGE_SIZE <= GET_MESSAGES_MAX_WINDOW:
        answer = client.get_messages(time_from=time_from, time_to=time_to, page=page, per_page=LOOKUP_PAGE_SIZE)
        items = (answer.get("items") or []) if isinstance(answer, dict) else []
        for item in items:
            if not isinstance(item, dict):
                continue
            external_id = str(item.get("externalMessageId") or "")
            if external_id in wanted and item.get("messageUuid"):
                found[external_id] = item
        total = answer.get("total") if isinstance(answer, dict) else None
        if len(found) == len(wanted):
            return found, True
        if len(items) < LOOKUP_PAGE_SIZE or (isinstance(total, int) and page * LOOKUP_PAGE_SIZE >= total):
            return found, True
        page += 1
    return found, False  # more sent in that window than one lookup may read: absent is not proven


def _resolve_for_account(account, messages: list[Message], now) -> int:
    lifetime_end = timedelta(hours=settings.MESSAGES_LIFETIME_HOURS) + timedelta(
        seconds=settings.MESSAGES_LIFETIME_MARGIN
    )
    if account is None or not account.messages_key:
        _fail(messages, _("No i-dgtl messages key (TOKEN_1) is configured for this portal's account."))
        return len(messages)
    client = IdgtlClient.for_messages(account)
    try:
        found, complete = _lookup_by_external_id(client, messages, now)
    except IdgtlError as exc:
        logger.warning("i-dgtl lookup of %d messages with an unknown outcome failed: %s", len(messages), exc)
        expired = [m for m in messages if (m.sending_started_at or m.created_at) + lifetime_end < now]
        _fail(expired, _("No answer from i-dgtl within the message lifetime."))
        with transaction.atomic():
            waiting = [m for m in _lock_still(messages, MessageState.SENDING) if m not in expired]
            for message in waiting:
                message.next_check_at = now + timedelta(seconds=_retry_delay(message.send_attempts + 1))
            Message.objects.bulk_update(waiting, ["next_check_at"])
        return 0
    finally:
        client.close()

    has_it, lacks_it, unproven = [], [], []
    with transaction.atomic(), usage_deferred():  # one rollup statement, in key order (services/usage.py)
        for message in _lock_still(messages, MessageState.SENDING):
            item = found.get(str(message.pk))
            if item:
                message.idgtl_message_uuid = str(item["messageUuid"])
                message.sent_at = message.sent_at or now
                message.error_message = ""
                message.next_check_at = Message.reconcile_due_at(sent_at=message.sent_at, now=now)
                has_it.append((message, item))
            elif complete:
                message.error_message = _("i-dgtl does not have it; sending again.")
                message.next_check_at = None
                lacks_it.append(message)
            else:  # not seen in a window too large to read whole: look again later, never resend blindly
                unproven.append(message)
        if unproven:
            logger.warning(
                "%d messages with an unknown outcome not found in a lookup that could not read the "
                "whole window; looked up again later",
                len(unproven),
            )
            expired = [m for m in unproven if (m.sending_started_at or m.created_at) + lifetime_end < now]
            for message in unproven:
                message.next_check_at = now + timedelta(seconds=_retry_delay(message.send_attempts + 1))
            Message.objects.bulk_update([m for m in unproven if m not in expired], ["next_check_at"])
            for message in expired:
                message.error_message = _("No answer from i-dgtl within the message lifetime.")
            messages_change_state(
                messages=expired,
                state=MessageState.FAILED,
                source=ChangeSource.RECONCILER,
                update_fields=("error_message",),
            )
        messages_change_state(
            messages=[m for m, _i in has_it],
            state=MessageState.SENT,
            source=ChangeSource.RECONCILER,
            detail=_("Found at i-dgtl after an unknown outcome."),
            update_fields=("idgtl_message_uuid", "sent_at", "error_message", "next_check_at"),
        )
        callback_events_apply_pending(messages=[m for m, _i in has_it])
        messages_change_state(
            messages=lacks_it,
            state=MessageState.RECEIVED,
            source=ChangeSource.RECONCILER,
            update_fields=("error_message", "next_check_at"),
        )
    for message, item in has_it:
        if item.get("status"):
            message_apply_idgtl_status(
                message=message,
                status=item["status"],
                status_time=item.get("statusTime"),
                error_code=item.get("errorCode"),
                source=ChangeSource.RECONCILER,
            )
    if lacks_it:
        sending_schedule_later(0)
    return len(has_it) + len(lacks_it)
