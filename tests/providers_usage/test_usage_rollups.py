"""Usage rollups: kept by messages_change_state in the same transaction, one bucket per current state,
on the Moscow day of receipt, never counted twice (redelivered sends, repeated callbacks)."""

import pytest
from django.db import transaction

from providers.models import MessageState, UsageDay
from providers.services.delivery import message_apply_idgtl_status
from providers.services.sending import messages_send_waiting
from providers.services.timeline import ChangeSource
from providers.services.usage import usage_rows
from tests.providers_usage.conftest import at, make_message, move, nonzero, received_on, usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def two(installation, provider):
    first = received_on(make_message(installation, provider, 1, text="a" * 161), at(2026, 11, 5))  # 2 parts
    second = received_on(make_message(installation, provider, 2, text="hello"), at(2026, 11, 5))  # 1 part
    return first, second


def test_a_day_shows_where_its_messages_are_now(two):
    first, second = two
    assert usage() == {}  # received: not counted yet
    move(two, MessageState.SENDING)
    assert nonzero(usage()) == {("2026-11-05", "sending"): (2, 3)}
    move(two, MessageState.SENT)
    assert nonzero(usage()) == {("2026-11-05", "sent"): (2, 3)}
    move([first], MessageState.DELIVERED)
    move([second], MessageState.UNDELIVERED)
    assert nonzero(usage()) == {("2026-11-05", "delivered"): (1, 2), ("2026-11-05", "undelivered"): (1, 1)}
    assert usage()[("2026-11-05", "sending")] == (0, 0)  # emptied, kept


def test_back_to_waiting_leaves_the_rollups_and_a_new_claim_comes_back(two):
    move(two, MessageState.SENDING)
    move(two, MessageState.RECEIVED)  # a transient i-dgtl error: waiting again
    assert nonzero(usage()) == {}
    move(two, MessageState.SENDING)
    move(two, MessageState.FAILED)
    assert nonzero(usage()) == {("2026-11-05", "failed"): (2, 3)}


def test_the_day_is_the_moscow_day_of_receipt(installation, provider, settings):
    late = received_on(make_message(installation, provider, 1), at(2026, 11, 30, 21, 30))  # 00:30 on Dec 1 in Moscow
    move([late], MessageState.SENDING)
    assert nonzero(usage()) == {("2026-12-01", "sending"): (1, 1)}
    settings.USAGE_TIME_ZONE = "UTC"
    other = received_on(make_message(installation, provider, 2), at(2026, 11, 30, 21, 30))
    move([other], MessageState.SENDING)
    assert nonzero(usage())[("2026-11-30", "sending")] == (1, 1)


def test_a_late_delivery_report_stays_on_the_day_of_receipt(two):
    move(two, MessageState.SENDING)
    move(two, MessageState.SENT)
    # delivered the next day: still counted on Nov 5
    message_apply_idgtl_status(message=two[0], status="delivered", source=ChangeSource.CALLBACK)
    assert nonzero(usage()) == {("2026-11-05", "sent"): (1, 1), ("2026-11-05", "delivered"): (1, 2)}


def test_repeated_and_backward_statuses_count_nothing(two):
    move(two, MessageState.SENDING)
    move(two, MessageState.SENT)
    for status in ("delivered", "delivered", "sent", "undelivered"):
        message_apply_idgtl_status(message=two[0], status=status, source=ChangeSource.CALLBACK)
    assert nonzero(usage()) == {("2026-11-05", "sent"): (1, 1), ("2026-11-05", "delivered"): (1, 2)}


def test_a_redelivered_send_task_counts_once(installation, provider, idgtl_api, no_send):
    messages = [make_message(installation, provider, n, destination="") for n in range(1, 4)]
    for message in messages:
        received_on(message, at(2026, 11, 6))
    assert messages_send_waiting(time_budget=5) == 3
    assert messages_send_waiting(time_budget=5) == 0  # the task again: nothing left to claim
    assert nonzero(usage()) == {("2026-11-06", "sent"): (3, 3)}
    assert len(idgtl_api.sent) == 1


def test_an_invalid_number_is_counted_as_failed(installation, provider, idgtl_api, no_send):
    received_on(make_message(installation, provider, 1, destination="", message_to="12"), at(2026, 11, 6))
    messages_send_waiting(time_budget=5)
    assert nonzero(usage()) == {("2026-11-06", "failed"): (1, 1)}


def test_the_rollup_rolls_back_with_the_state_change(two):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            move(two, MessageState.SENDING)
            raise RuntimeError("the caller fails after the change")
    assert usage() == {}


def test_keys_are_portal_provider_and_sender_name(installation, provider):
    from providers.models import Provider

    other_provider = Provider.objects.create(code="second", name="Second", sender_name="Other")
    a = received_on(make_message(installation, provider, 1), at(2026, 11, 7))
    b = received_on(make_message(installation, other_provider, 2, sender_name="Other"), at(2026, 11, 7))
    move([a, b], MessageState.SENDING)
    keys = set(UsageDay.objects.values_list("provider__code", "sender_name", "state"))
    assert keys == {("provider1", "MyShop", "sending"), ("second", "Other", "sending")}


def test_usage_rows_by_day_and_month_leave_out_empty_rows(two, installation):
    third = received_on(make_message(installation, two[0].provider, 3), at(2026, 10, 31))
    move([*two, third], MessageState.SENDING)
    move([*two, third], MessageState.SENT)
    by_day = usage_rows(date_from=at(2026, 10, 1).date(), date_to=at(2026, 11, 30).date())
    assert [(r["period"], r["state"], r["messages"], r["parts"]) for r in by_day] == [
        ("2026-10-31", "sent", 1, 1),
        ("2026-11-05", "sent", 2, 3),
    ]
    by_month = usage_rows(date_from=at(2026, 10, 1).date(), date_to=at(2026, 11, 30).date(), group_by="month")
    assert [(r["period"], r["messages"], r["parts"]) for r in by_month] == [("2026-10", 1, 1), ("2026-11", 2, 3)]
    assert by_month[0]["portal_domain"] == installation.domain and by_month[0]["sender_name"] == "MyShop"


def test_a_batch_costs_one_statement_per_call(two, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):  # the upsert, the UPDATE, timeline and report inserts, savepoints
        move(two, MessageState.SENDING)


def test_the_migration_fills_parts_and_rollups_of_messages_already_stored(installation, provider):
    """0007_message_parts: parts for every stored message, then one GROUP BY into the rollups."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    from providers.models import Message

    migration = importlib.import_module("providers.migrations.0007_message_parts")
    states = [
        MessageState.RECEIVED,
        MessageState.SENT,
        MessageState.DELIVERED,
        MessageState.DELIVERED,
        MessageState.FAILED,
    ]
    for n, state in enumerate(states, start=1):
        received_on(make_message(installation, provider, n, text="я" * (70 * n), state=state), at(2026, 9, 30, 22))
    Message.objects.update(parts=0, encoding="")  # as stored before the migration
    UsageDay.objects.all().delete()
    editor = SimpleNamespace(connection=connection)
    migration.backfill_parts(apps, editor)
    migration.backfill_usage(apps, editor)
    assert sorted(Message.objects.values_list("parts", flat=True)) == [1, 3, 4, 5, 6]
    assert nonzero(usage()) == {
        ("2026-10-01", "sent"): (1, 3),
        ("2026-10-01", "delivered"): (2, 9),
        ("2026-10-01", "failed"): (1, 6),
    }


def test_deferred_changes_are_written_once_at_the_end(two):
    from providers.services.usage import usage_deferred

    move(two, MessageState.SENDING)
    move(two, MessageState.SENT)
    with transaction.atomic():
        with usage_deferred():
            move([two[0]], MessageState.DELIVERED)
            move([two[1]], MessageState.UNDELIVERED)
            assert nonzero(usage()) == {("2026-11-05", "sent"): (2, 3)}  # nothing written yet
    assert nonzero(usage()) == {("2026-11-05", "delivered"): (1, 2), ("2026-11-05", "undelivered"): (1, 1)}


def _usage_upserts(queries) -> int:
    table = UsageDay._meta.db_table
    return sum(1 for q in queries if q["sql"].lstrip().upper().startswith("INSERT") and table in q["sql"])


def test_a_callback_that_moves_messages_to_two_states_takes_its_rollup_rows_in_one_statement(two):
    """Two such callbacks sharing a portal and day would otherwise take the delivered and undelivered
    rows in opposite orders and could deadlock on PostgreSQL (services/usage.py)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from providers.callback_form import CallbackEvent
    from providers.services.delivery import callback_events_receive, callback_inbox_apply

    first, second = two
    move(two, MessageState.SENDING)
    move(two, MessageState.SENT)
    for n, message in enumerate(two):
        message.idgtl_message_uuid = f"uuid-{n}"
        message.save(update_fields=["idgtl_message_uuid"])
    events = [
        CallbackEvent(message_uuid="uuid-1", status="undelivered", status_time=None, error_code=None, raw={}),
        CallbackEvent(message_uuid="uuid-0", status="delivered", status_time=None, error_code=None, raw={}),
    ]
    assert callback_events_receive(installation=first.installation, events=events) == 2
    with CaptureQueriesContext(connection) as queries:
        assert callback_inbox_apply() == 2
    assert _usage_upserts(queries.captured_queries) == 1
    assert nonzero(usage()) == {("2026-11-05", "delivered"): (1, 2), ("2026-11-05", "undelivered"): (1, 1)}
