"""Retention (issue 9, item 6): final messages older than MESSAGES_RETENTION_DAYS lose their text and phone
numbers, in bounded batches that resume where a stopped run left off; nothing else is touched."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.urls import reverse
from django.utils import timezone

from common import metrics
from providers.models import Message, MessageStatusChange, StatusReport
from providers.services import retention
from providers.services.retention import NumberScrubber, messages_anonymise_old, messages_due
from providers.tasks import anonymise_old_messages
from tests.ops.factories import make_message
from tests.ops.test_metrics import scrape, value

NUMBER = "+7 (900) 123-45-67"
DESTINATION = "79001234567"


@pytest.fixture(autouse=True)
def retention_settings(settings):
    settings.MESSAGES_RETENTION_DAYS = 180
    settings.MESSAGES_RETENTION_BATCH_SIZE = 1000
    settings.MESSAGES_RETENTION_TIME_BUDGET = 60
    return settings


@pytest.fixture
def metric_store(settings):
    settings.REDIS_URL = ""
    metrics.store().clear()
    yield
    metrics.store().clear()


def final_message(*, days_ago, state="delivered", final=True, error="", **fields):
    """A message that reached ``state`` ``days_ago`` days ago (final_at; received a day before)."""
    now = timezone.now()
    message = make_message(state=state, created_at=now - timedelta(days=days_ago + 1), **fields)
    Message.objects.filter(pk=message.pk).update(
        message_to=NUMBER,
        destination=DESTINATION,
        text="Your code is 4242",
        error_message=error,
        bindings=[{"OWNER_TYPE_ID": 3, "OWNER_ID": 77}],
        document_id=["crm", "CCrmDocumentContact", "CONTACT_77"],
        author_user_id="5",
        document_type=["crm", "CCrmDocumentContact", "CONTACT"],
        final_at=now - timedelta(days=days_ago) if final else None,
    )
    MessageStatusChange.objects.create(message=message, previous_state="", state="received", source="handler")
    MessageStatusChange.objects.create(
        message=message, previous_state="received", state=state, source="send", idgtl_status="delivered", detail=error
    )
    StatusReport.objects.create(
        message=message,
        status="delivered",
        state="accepted",
        last_error=f"Bitrix24 refused {DESTINATION} once" if error else "",
    )
    message.refresh_from_db()
    return message


def snapshot(message):
    message = Message.objects.get(pk=message.pk)
    return (model_to_dict(message), list(message.status_changes.values()), list(message.status_reports.values()))


@pytest.mark.django_db
def test_only_old_final_messages_are_anonymised():
    old = final_message(days_ago=200)
    old_failed = final_message(days_ago=181, state="failed", error=f"Invalid phone number: {NUMBER}")
    old_without_final_at = final_message(days_ago=200, state="undelivered", final=False)  # received 201 days ago
    young = final_message(days_ago=179)
    old_but_sent = final_message(days_ago=300, state="sent", final=False)  # no final status: never touched
    old_but_sending = final_message(days_ago=300, state="sending", final=False)
    untouched = {m.pk: snapshot(m) for m in (young, old_but_sent, old_but_sending)}

    assert messages_anonymise_old() == 3

    for message in (old, old_failed, old_without_final_at):
        before = message
        message = Message.objects.get(pk=message.pk)
        assert message.is_anonymised and message.anonymised_at is not None
        assert (message.text, message.message_to, message.destination) == ("", "", "")
        assert message.bindings == [] and message.document_id == []
        # What stays: who sent what, when, how it ended, what it cost.
        for field in (
            "installation_id",
            "provider_id",
            "message_id",
            "module_id",
            "sender_name",
            "state",
            "parts",
            "encoding",
            "idgtl_message_uuid",
            "idgtl_status",
            "error_code",
            "created_at",
            "final_at",
            "sent_at",
            "author_user_id",
            "document_type",
        ):
            assert getattr(message, field) == getattr(before, field), field
    for pk, before in untouched.items():
        assert snapshot(Message.objects.get(pk=pk)) == before


@pytest.mark.django_db
def test_the_timeline_and_reports_stay_with_the_number_taken_out_of_their_texts():
    message = final_message(days_ago=200, state="failed", error=f"Invalid phone number: {NUMBER}")
    timeline = list(
        message.status_changes.values_list("id", "previous_state", "state", "idgtl_status", "source", "created_at")
    )
    reports = list(message.status_reports.values_list("id", "status", "state", "attempts", "reported_at"))
    messages_anonymise_old()
    message.refresh_from_db()
    assert (
        list(
            message.status_changes.values_list("id", "previous_state", "state", "idgtl_status", "source", "created_at")
        )
        == timeline
    )
    assert list(message.status_reports.values_list("id", "status", "state", "attempts", "reported_at")) == reports
    assert message.error_message == "Invalid phone number: ***"
    assert list(message.status_changes.values_list("detail", flat=True)) == ["", "Invalid phone number: ***"]
    assert list(message.status_reports.values_list("last_error", flat=True)) == ["Bitrix24 refused *** once"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Invalid phone number: +7 (900) 123-45-67", "Invalid phone number: ***"),
        ("destination 79001234567 is invalid", "destination *** is invalid"),
        ("bad +79001234567, retry", "bad ***, retry"),
        ("as 8 900 123 45 67 written", "as *** written"),
        ("i-dgtl error 7401 for 79001234568", "i-dgtl error 7401 for 79001234568"),  # another number stays
        ("uuid 063464ec-a34f-4558-90c5-984395000003", "uuid 063464ec-a34f-4558-90c5-984395000003"),
        ("", ""),
    ],
)
def test_the_number_is_found_however_it_was_written(text, expected):
    assert NumberScrubber(NUMBER, DESTINATION)(text) == expected


def test_a_recipient_that_is_no_number_is_taken_out_as_entered():
    assert NumberScrubber("call me", "")("Invalid phone number: call me") == "Invalid phone number: ***"


@pytest.mark.django_db
def test_batches_are_bounded_and_a_stopped_run_is_resumed(monkeypatch):
    messages = [final_message(days_ago=200 + i) for i in range(5)]
    oldest_first = [m.pk for m in reversed(messages)]
    real_update = retention.Message.objects.filter
    batches = []

    def fail_in_the_second_batch(*args, **kwargs):
        queryset = real_update(*args, **kwargs)
        if "pk__in" in kwargs:
            batches.append(kwargs["pk__in"])
            if len(batches) == 2:
                raise ConnectionError("worker killed mid-batch")
        return queryset

    monkeypatch.setattr(retention.Message.objects, "filter", fail_in_the_second_batch)
    with pytest.raises(ConnectionError):
        messages_anonymise_old(batch_size=2)
    monkeypatch.undo()
    done = list(Message.objects.filter(anonymised_at__isnull=False).values_list("pk", flat=True))
    assert sorted(done) == sorted(oldest_first[:2])  # the first batch committed, the second rolled back
    assert Message.objects.filter(anonymised_at__isnull=True, text="Your code is 4242").count() == 3
    assert batches[0] == oldest_first[:2]

    assert messages_anonymise_old(batch_size=2) == 3  # the rerun goes on from there
    assert not Message.objects.filter(anonymised_at__isnull=True).exists()
    assert messages_anonymise_old(batch_size=2) == 0


@pytest.mark.django_db
def test_a_run_ends_at_its_time_budget_and_the_next_goes_on_oldest_first():
    messages = [final_message(days_ago=200 + i) for i in range(5)]
    oldest_first = [m.pk for m in reversed(messages)]
    assert messages_anonymise_old(batch_size=2, time_budget=0) == 2  # one batch, then the budget is spent
    assert set(Message.objects.filter(anonymised_at__isnull=False).values_list("pk", flat=True)) == set(
        oldest_first[:2]
    )
    assert messages_anonymise_old(batch_size=2, time_budget=0) == 2
    assert messages_anonymise_old(batch_size=2, time_budget=0) == 1
    assert messages_anonymise_old(batch_size=2, time_budget=0) == 0


@pytest.mark.django_db
def test_a_run_pauses_between_batches_in_proportion_to_them(settings, monkeypatch):
    """MESSAGES_RETENTION_PAUSE_FACTOR: the HANDLER keeps the database while a backlog is worked off."""
    for i in range(5):
        final_message(days_ago=200 + i)
    clock = {"now": 1000.0}
    pauses = []

    def batch(**kwargs):  # each batch takes 0.5 s of the clock
        clock["now"] += 0.5
        return real_batch(**kwargs)

    def sleep(seconds):
        pauses.append(seconds)
        clock["now"] += seconds

    from providers.services import retention

    real_batch = retention.messages_anonymise_batch
    monkeypatch.setattr(retention, "messages_anonymise_batch", batch)
    monkeypatch.setattr(retention.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(retention.time, "sleep", sleep)
    settings.MESSAGES_RETENTION_PAUSE_FACTOR = 4
    assert messages_anonymise_old(batch_size=2) == 5
    assert pauses == [2.0, 2.0]  # after each full batch; the short last one ends the run

    for i in range(5):
        final_message(days_ago=200 + i)
    pauses.clear()
    assert messages_anonymise_old(batch_size=2, time_budget=2) == 2  # the pause would pass the budget: it stops
    assert pauses == []
    assert messages_anonymise_old(batch_size=2, pause_factor=0) == 3 and pauses == []  # back to back


@pytest.mark.django_db
def test_a_batch_costs_the_same_few_queries_whatever_its_size():
    from django.test.utils import CaptureQueriesContext

    counts = []
    for n in (3, 40):
        for i in range(n):
            final_message(days_ago=200 + i, state="failed", error=f"Invalid phone number: {NUMBER}")
        with CaptureQueriesContext(connection) as queries:
            assert messages_anonymise_old(batch_size=1000) == n
        counts.append(len(queries))
    assert counts[0] == counts[1] and counts[0] <= 20, counts


@pytest.mark.django_db
def test_zero_days_keeps_everything(settings, django_assert_num_queries):
    settings.MESSAGES_RETENTION_DAYS = 0
    message = final_message(days_ago=3000)
    before = snapshot(message)
    with django_assert_num_queries(0):
        assert messages_anonymise_old() == 0
    assert snapshot(message) == before


@pytest.mark.django_db
def test_the_days_setting_is_the_age_of_the_final_status(settings):
    settings.MESSAGES_RETENTION_DAYS = 30
    month_old, week_old = final_message(days_ago=31), final_message(days_ago=7)
    assert messages_anonymise_old() == 1
    assert Message.objects.get(pk=month_old.pk).is_anonymised and not Message.objects.get(pk=week_old.pk).is_anonymised


@pytest.mark.django_db
def test_an_anonymised_message_is_not_taken_again():
    message = final_message(days_ago=200)
    assert messages_anonymise_old() == 1
    first = Message.objects.get(pk=message.pk).anonymised_at
    assert messages_anonymise_old() == 0 and Message.objects.get(pk=message.pk).anonymised_at == first
    assert not messages_due(cutoff=timezone.now()).exists()


@pytest.mark.django_db
def test_usage_and_parts_are_unaffected():
    from providers.models import UsageDay

    messages = [final_message(days_ago=200 + i) for i in range(3)]
    parts = {m.pk: (m.parts, m.encoding) for m in messages}
    usage = list(UsageDay.objects.order_by("pk").values())
    messages_anonymise_old()
    assert {m.pk: (m.parts, m.encoding) for m in Message.objects.filter(pk__in=parts)} == parts
    assert list(UsageDay.objects.order_by("pk").values()) == usage


@pytest.mark.django_db
def test_the_task_and_its_schedule():
    from b24sms.celery import BEAT_SCHEDULE, app

    final_message(days_ago=200)
    assert anonymise_old_messages.apply().get() == 1
    entry = BEAT_SCHEDULE["messages-retention"]
    assert entry["task"] in app.tasks and entry["task"] == anonymise_old_messages.name


@pytest.mark.django_db
def test_the_anonymised_count_is_in_metrics(client, metric_store):
    for i in range(3):
        final_message(days_ago=200 + i)
    messages_anonymise_old(batch_size=2)
    samples = scrape(client, REMOTE_ADDR="127.0.0.1")
    assert value(samples, "b24sms_messages_anonymised_total") == 3


# --- The admin and the API -------------------------------------------------------------------------
@pytest.fixture
def admin_en(admin_client):
    admin_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return admin_client


@pytest.mark.django_db
def test_the_admin_labels_an_anonymised_message(admin_en):
    old, young = final_message(days_ago=200), final_message(days_ago=1)
    messages_anonymise_old()
    listing = admin_en.get(reverse("admin:providers_message_changelist")).content.decode()
    assert listing.count('class="b24-anonymised"') == 2  # destination and recipient of the old one
    assert DESTINATION in listing  # the young one's
    page = admin_en.get(reverse("admin:providers_message_change", args=[old.pk])).content.decode()
    assert 'class="b24-anonymised"' in page and ">anonymised</span>" in page
    assert "Text and phone numbers removed by retention on" in page
    assert "Your code is 4242" not in page and DESTINATION not in page
    page = admin_en.get(reverse("admin:providers_message_change", args=[young.pk])).content.decode()
    assert 'class="b24-anonymised"' not in page and "Your code is 4242" in page


@pytest.mark.django_db
def test_the_admin_label_in_russian(admin_client):
    old = final_message(days_ago=200)
    messages_anonymise_old()
    page = admin_client.get(
        reverse("admin:providers_message_change", args=[old.pk]), HTTP_ACCEPT_LANGUAGE="ru"
    ).content.decode()
    assert ">обезличено</span>" in page and "Текст и номера телефонов удалены" in page


@pytest.mark.django_db
def test_the_api_says_when_a_message_was_anonymised(api_client):
    old = final_message(days_ago=200)
    messages_anonymise_old()
    body = api_client.get(f"/api/messages/{old.pk}/").json()
    assert body["anonymised_at"] and body["text"] == "" and body["destination"] == "" and len(body["timeline"]) == 2


# --- PostgreSQL: the index, SKIP LOCKED, concurrent runs --------------------------------------------
@pytest.mark.integration
@pytest.mark.django_db
def test_postgresql_reads_the_queue_from_the_partial_index():
    final_message(days_ago=200)
    due = messages_due(cutoff=timezone.now()).values_list("id", "message_to", "destination", "error_message")[:1000]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: ask whether the index can serve
        sql, params = due.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "providers_msg_retention_idx" in plan and "Sort" not in plan, plan


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_postgresql_skips_rows_another_transaction_holds():
    held, free = final_message(days_ago=300), final_message(days_ago=200)
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                list(Message.objects.select_for_update().filter(pk=held.pk))
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(10)
        assert messages_anonymise_old(time_budget=5) == 1  # did not wait for the held row
        assert Message.objects.get(pk=free.pk).is_anonymised and not Message.objects.get(pk=held.pk).is_anonymised
    finally:
        release.set()
        thread.join(30)
    assert messages_anonymise_old() == 1  # the held row, next time


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_postgresql_concurrent_runs_share_the_work():
    from tests.concurrency import run_together

    for i in range(60):
        final_message(days_ago=200 + i % 30)
    counts = run_together(lambda: messages_anonymise_old(batch_size=7), 3)
    assert sum(counts) == 60 and not Message.objects.filter(anonymised_at__isnull=True).exists()
