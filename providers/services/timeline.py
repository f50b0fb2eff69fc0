"""Every change of a message's state, in one place: the timeline entry, the report owed to Bitrix24 and
the usage rollups (services/usage.py).

Callers hold the rows (select_for_update, or a state-guarded claim) inside ``transaction.atomic``
and have already set any other fields on the instances; this records the change for all of them
with a few bulk queries, so a batch of 1000 costs the same handful of statements as one message.
"""

import functools

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.expressions import CombinedExpression
from django.utils import timezone

from common.bulk import bulk_update_rows
from providers.models import MESSAGE_FINAL_STATES, Message, MessageStatusChange, StatusReport, StatusReportState
from providers.services.reporting import reports_schedule
from providers.services.usage import usage_record_state_change
from providers.status_mapping import bitrix24_status_for_state


class ChangeSource:
    HANDLER = "handler"
    SEND = "send"
    CALLBACK = "callback"
    RECONCILER = "reconciler"


def messages_change_state(
    *,
    messages: list[Message],
    state: str,
    source: str,
    detail: str | None = None,
    same: dict | None = None,
    update_fields: tuple[str, ...] = (),
) -> None:
    """Move ``messages`` (whose ``.state`` is still the previous state) to ``state``.

    Writes the new state and ``same`` (values equal for every message; F() allowed), ``update_fields``
    (values that differ per message, already set on the instances), a MessageStatusChange per message,
    and a StatusReport per message when Bitrix24 is told about ``state`` (sent after commit): on
    PostgreSQL one statement (below), elsewhere one UPDATE, one bulk update and the INSERTs.
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
    # (id, previous state, i-dgtl status, detail) of each timeline entry, taken before ``values`` are set
    rows = [
        (message.pk, message.state, message.idgtl_status, message.error_message if detail is None else detail)
        for message in messages
    ]
    for message in messages:
        for field, value in values.items():
            if not hasattr(value, "resolve_expression"):
                setattr(message, field, value)
    if not (
        connection.vendor == "postgresql"
        and _write_in_one_statement(
            messages=messages,
            rows=rows,
            values=values,
            update_fields=tuple(update_fields),
            source=source,
            bitrix24_status=bitrix24_status,
            now=now,
        )
    ):
        ids = [message.pk for message in messages]
        for start in range(0, len(ids), 1000):
            Message.objects.filter(pk__in=ids[start : start + 1000]).update(**values)
        if update_fields:
            bulk_update_rows(Message, messages, update_fields)
        MessageStatusChange.objects.bulk_create(
            [
                MessageStatusChange(
                    message=message,
                    previous_state=previous_state,
                    state=state,
                    idgtl_status=idgtl_status,
                    source=source,
                    detail=row_detail,
                )
                for message, (_pk, previous_state, idgtl_status, row_detail) in zip(messages, rows, strict=True)
            ],
            batch_size=1000,
        )
        if bitrix24_status:
            StatusReport.objects.bulk_create(
                [StatusReport(message=message, status=bitrix24_status) for message in messages],
                batch_size=1000,
                ignore_conflicts=True,
            )
    if bitrix24_status:
        installation_ids = {message.installation_id for message in messages}
        transaction.on_commit(lambda: _schedule_reports(installation_ids), robust=True)  # beat sweeps the rest


def _schedule_reports(installation_ids):
    reports_schedule(installation_ids=installation_ids)


# --- PostgreSQL: the whole change as one statement ---------------------------------------------------
# The ORM path above is four statements (UPDATE, UPDATE ... FROM VALUES, two INSERTs), and compiling
# them costs the web and the worker more CPU than PostgreSQL spends running them (issue 13). On
# PostgreSQL the same writes are one statement whose text is built once per shape (which values are
# shared, which differ per message, whether a report is owed) and cached: the per-message values as a
# CTE, the UPDATE joined to it, the timeline INSERT and the report INSERT (ON CONFLICT DO NOTHING, as
# bulk_create's ignore_conflicts) reading it. PostgreSQL runs every data-modifying CTE exactly once.
_CHUNK = 1000


def _increment(field: str, value) -> int | None:
    """n when ``value`` is ``F(field) + n`` (as the claim's ``send_attempts``), else None."""
    if (
        isinstance(value, CombinedExpression)
        and value.connector == "+"
        and isinstance(value.lhs, F)
        and value.lhs.name == field
        and isinstance(value.rhs, Value)
        and type(value.rhs.value) is int
    ):
        return value.rhs.value
    return None


def _write_in_one_statement(*, messages, rows, values, update_fields, source, bitrix24_status, now) -> bool:
    """Write the change (see messages_change_state) as one statement per 1,000 messages. Returns False,
    having written nothing, when ``values`` hold an expression other than ``F(field) + n``."""
    shared, increments = [], []
    for field, value in values.items():
        if not hasattr(value, "resolve_expression"):
            shared.append(field)  # (also set on the instances: a per-message field of that name has it too)
        elif _increment(field, value) is None:
            return False
        elif field not in update_fields:  # as the ORM path, the instance's value wins
            increments.append(field)
    update_fields = tuple(name for name in update_fields if name not in shared)
    sql = _change_sql(
        shared=tuple(shared), increments=tuple(increments), per_message=update_fields, report=bool(bitrix24_status)
    )
    get_field = Message._meta.get_field
    per_message = [get_field(name) for name in update_fields]
    after = [get_field(name).get_db_prep_save(values[name], connection) for name in shared]
    after += [_increment(name, values[name]) for name in increments]
    after += [values["state"], source, now]
    if bitrix24_status:
        after += [bitrix24_status, StatusReportState.PENDING, now]
    with connection.cursor() as cursor:
        for start in range(0, len(messages), _CHUNK):
            # One array per column (unnest): the same short SQL text whatever the number of messages, which
            # psycopg splits once (a VALUES list of N rows is a new text to parse at every call).
            columns = [[] for _ in range(4 + len(per_message))]
            for message, row in zip(messages[start : start + _CHUNK], rows[start : start + _CHUNK], strict=True):
                for column, value in zip(columns[:4], row, strict=True):
                    column.append(value)
                for column, field in zip(columns[4:], per_message, strict=True):
                    column.append(field.get_db_prep_save(getattr(message, field.attname), connection))
            cursor.execute(sql, columns + after)
    return True


@functools.cache
def _change_sql(*, shared: tuple, increments: tuple, per_message: tuple, report: bool) -> str:
    """The statement. Parameters: one array per column of the messages (id, previous state, i-dgtl status,
    detail, *per_message); then the shared values, the increments, the new state, the source, now; with a
    report, its Bitrix24 status, state and now."""
    quote = connection.ops.quote_name
    meta = Message._meta

    def column(model, name):
        return quote(model._meta.get_field(name).column)

    casts = [meta.pk.cast_db_type(connection), "text", "text", "text"]
    casts += [meta.get_field(name).cast_db_type(connection) for name in per_message]
    arrays = ", ".join(f"%s::{cast}[]" for cast in casts)
    names = ["id", "previous_state", "idgtl_status", "detail"] + [f"f{index}" for index in range(len(per_message))]
    assignments = [f"{column(Message, name)} = %s::{meta.get_field(name).cast_db_type(connection)}" for name in shared]
    assignments += [f"{column(Message, name)} = t.{column(Message, name)} + %s" for name in increments]
    assignments += [f"{column(Message, name)} = v.f{index}" for index, name in enumerate(per_message)]
    timeline = (
        f"INSERT INTO {quote(MessageStatusChange._meta.db_table)} ("
        + ", ".join(
            column(MessageStatusChange, name)
            for name in ("message", "previous_state", "idgtl_status", "detail", "state", "source", "created_at")
        )
        + ") SELECT v.id, v.previous_state, v.idgtl_status, v.detail, %s, %s, %s::timestamptz FROM v"
    )
    statement = (
        f"), u AS (UPDATE {quote(meta.db_table)} AS t SET {', '.join(assignments)} "
        f"FROM v WHERE t.{quote(meta.pk.column)} = v.id)"
    )
    if report:
        statement += (
            f", c AS ({timeline}) INSERT INTO {quote(StatusReport._meta.db_table)} ("
            + ", ".join(
                column(StatusReport, name)
                for name in ("message", "status", "state", "attempts", "last_error", "created_at")
            )
            + ") SELECT v.id, %s, %s, 0, '', %s::timestamptz FROM v ON CONFLICT DO NOTHING"
        )
    else:
        statement += " " + timeline
    return f"WITH v ({', '.join(names)}) AS (SELECT * FROM unnest({arrays})" + statement
