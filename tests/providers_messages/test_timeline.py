"""timeline.messages_change_state: what one change writes (the message, its timeline entry, the report owed
to Bitrix24), the same on SQLite (the ORM's statements) and on PostgreSQL (one statement, issue 13)."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from providers.models import Message, MessageState, MessageStatusChange, StatusReport, StatusReportState
from providers.services.timeline import ChangeSource, messages_change_state
from tests.providers_messages.conftest import make_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_reports(monkeypatch):
    monkeypatch.setattr("providers.services.timeline._schedule_reports", lambda installation_ids: None)


def change(messages, state, **kwargs):
    with transaction.atomic():
        messages_change_state(messages=messages, state=state, **kwargs)


def test_shared_per_message_and_incremented_values_are_written(installation, provider, no_reports):
    first, second = make_message(installation, provider, 1), make_message(installation, provider, 2)
    Message.objects.filter(pk=second.pk).update(send_attempts=2)
    second.send_attempts = 2
    started = timezone.now() - timedelta(seconds=5)
    first.destination, second.destination = "79990000001", "79990000002"
    change(
        [first, second],
        MessageState.SENDING,
        source=ChangeSource.SEND,
        detail="",
        same={"sending_started_at": started, "send_attempts": F("send_attempts") + 1, "error_message": ""},
        update_fields=("destination",),
    )
    rows = {m.pk: m for m in Message.objects.filter(pk__in=[first.pk, second.pk])}
    assert [
        (rows[m.pk].state, rows[m.pk].send_attempts, rows[m.pk].destination, rows[m.pk].sending_started_at)
        for m in (first, second)
    ] == [(MessageState.SENDING, 1, "79990000001", started), (MessageState.SENDING, 3, "79990000002", started)]
    assert rows[first.pk].updated_at == first.updated_at  # the instance carries what was written
    entries = MessageStatusChange.objects.filter(message__in=[first, second]).order_by("message_id")
    assert [(e.previous_state, e.state, e.source, e.detail) for e in entries] == [
        (MessageState.RECEIVED, MessageState.SENDING, ChangeSource.SEND, "")
    ] * 2
    assert not StatusReport.objects.exists()  # Bitrix24 is not told about "sending"


def test_a_final_state_writes_its_time_detail_per_message_and_one_report(installation, provider, no_reports):
    message = make_message(
        installation, provider, 1, state=MessageState.SENT, idgtl_status="sent", next_check_at=timezone.now()
    )
    message.idgtl_status, message.error_code, message.error_message = "undelivered", 5, "absent subscriber"
    change(
        [message],
        MessageState.UNDELIVERED,
        source=ChangeSource.CALLBACK,
        update_fields=("idgtl_status", "error_code", "error_message"),
    )
    message.refresh_from_db()
    assert (message.state, message.idgtl_status, message.error_code, message.error_message) == (
        MessageState.UNDELIVERED,
        "undelivered",
        5,
        "absent subscriber",
    )
    assert message.final_at is not None and message.next_check_at is None
    entry = MessageStatusChange.objects.get(message=message)
    assert (entry.previous_state, entry.state, entry.idgtl_status, entry.detail) == (
        MessageState.SENT,
        MessageState.UNDELIVERED,
        "undelivered",
        "absent subscriber",
    )  # detail=None: the error
    report = StatusReport.objects.get(message=message)
    assert (report.status, report.state, report.attempts) == ("undelivered", StatusReportState.PENDING, 0)
    # The same report owed again (a repeated final) is not added twice.
    change([message], MessageState.UNDELIVERED, source=ChangeSource.RECONCILER, detail="again")
    assert StatusReport.objects.filter(message=message).count() == 1
    assert MessageStatusChange.objects.filter(message=message).count() == 2


def test_a_set_of_messages_is_one_statement_on_postgresql(installation, provider, no_reports):
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement write is PostgreSQL's; SQLite takes the ORM's")
    messages = [make_message(installation, provider, n, state=MessageState.SENT) for n in range(1, 31)]
    with CaptureQueriesContext(connection) as queries:
        change(messages, MessageState.DELIVERED, source=ChangeSource.CALLBACK, detail="i-dgtl status: delivered")
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if "providers_message" in q["sql"] and "providers_usageday" not in q["sql"]
    ]
    assert len(writes) == 1
    assert Message.objects.filter(state=MessageState.DELIVERED).count() == 30
    assert MessageStatusChange.objects.filter(state=MessageState.DELIVERED).count() == 30
    assert StatusReport.objects.filter(status="delivered").count() == 30
