"""Every change of a message's state, in one place: the timeline entry, the report owed to Bitrix24 and
the usage rollups (services/usage.py).

Callers hold the rows (select_for_update, or a state-guarded claim) inside ``transaction.atomic``
and have already set any other fields on the instances; this records the change for all of them
with a few bulk queries, so a batch of 1000 costs the same handful of statements as one message.
"""
from django.db import transaction
from django.utils import timezone

from b24sms.bulk import bulk_update_rows

from ..models import MESSAGE_FINAL_STATES, Message, MessageStatusChange, StatusReport
from ..status_mapping import bitrix24_status_for_state
from .usage import usage_record_state_change


class ChangeSource:
    HANDLER = "handler"
    SEND = "send"
    CALLBACK = "callback"
    RECONCILER = "reconciler"


def messages_change_state(*, messages: list[Message], state: str, source: str, detail: str | None = None,
                          same: dict | None = None, update_fields: tuple[str, ...] = ()) -> None:
    """Move ``messages`` (whose ``.state`` is still the previous state) to ``state``.

    One UPDATE writes the new state and ``same`` (values equal for every message; F() allowed);
    ``update_fields`` (values that differ per message, already set on the instances) go with
    bulk_update. Then one INSERT of a MessageStatusChange per message, and one of a StatusReport per
    message when Bitrix24 is told about ``state``; the reports are sent after commit.
    ``detail=None`` uses each message's ``error_message``.
    """
    if not messages:
        return
    usage_record_state_change(messages=messages, state=state)  # same transaction; before .state moves on
    now = timezone.now()
    values = {"state": state, "updated_at": now, **(same or {})}
    if state in MESSAGE_FINAL_STATES:
        values.update(final_at=now, next_check_at=None)
    bitrix24_status = bitrix24_status_for_state(state)
    changes, reports = [], []
    for message in messages:
        changes.append(MessageStatusChange(
            message=message, previous_state=message.state, state=state, idgtl_status=message.idgtl_status,
            source=source, detail=message.error_message if detail is None else detail))
        for field, value in values.items():
            if not hasattr(value, "resolve_expression"):
                setattr(message, field, value)
        if bitrix24_status:
            reports.append(StatusReport(message=message, status=bitrix24_status))
    ids = [message.pk for message in messages]
    for start in range(0, len(ids), 1000):
        Message.objects.filter(pk__in=ids[start:start + 1000]).update(**values)
    if update_fields:
        bulk_update_rows(Message, messages, update_fields)
    MessageStatusChange.objects.bulk_create(changes, batch_size=1000)
    if reports:
        StatusReport.objects.bulk_create(reports, batch_size=1000, ignore_conflicts=True)
        installation_ids = {message.installation_id for message in messages}
        transaction.on_commit(lambda: _schedule_reports(installation_ids), robust=True)  # beat sweeps the rest


def _schedule_reports(installation_ids):
    from .reporting import reports_schedule

    reports_schedule(installation_ids=installation_ids)
