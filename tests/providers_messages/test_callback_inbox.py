"""The callback inbox: a callback's events are stored (answered 2xx once stored) and applied by a worker.

i-dgtl may call back before its answer to POST /message is recorded: an event for a uuid not recorded
yet stays in the inbox and is applied in the transaction that records the uuid, so the order of callback
and answer never matters. Beat's sweep applies what a lost run left or what became known another way,
and drops what waited longer than a message lives.
"""

import importlib
import json
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from b24sms.roles import OPERATOR, VIEWER
from common import metrics
from providers.models import Installation, Message, MessageState, UnmatchedCallbackEvent
from providers.services.delivery import callback_events_apply_pending, callback_inbox_apply, callback_inbox_sweep
from providers.services.sending import messages_resolve_unknown_outcomes, messages_send_waiting
from tests.providers_messages.conftest import make_message
from tests.providers_messages.test_delivery import callback, event
from tests.providers_messages.test_reporting import bitrix24_api  # noqa: F401 - a fixture
from tests.waiting import wait_until


@pytest.fixture
def waiting(installation, provider):
    """A message the HANDLER stored and nobody has sent yet."""
    return make_message(installation, provider, 1)


def uuid_of(message) -> str:
    return f"uuid-{message.pk}"  # what the recording i-dgtl (conftest) answers for it


def sent_then_delivered(message) -> list[dict]:
    return [
        event(uuid_of(message), "sent", "sent", status_time="2026-01-01T10:00:01Z"),
        event(uuid_of(message), "delivered", status_time="2026-01-01T10:00:02Z"),
    ]


def timeline(message) -> list[tuple]:
    return list(message.status_changes.order_by("id").values_list("source", "state", "idgtl_status"))


def scrape(client) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if not sample.labels
    }


@pytest.mark.parametrize("order", ["callback first", "answer first"])
def test_the_order_of_callback_and_answer_does_not_matter(client, installation, waiting, idgtl_api, order):
    if order == "callback first":
        response = callback(client, installation, sent_then_delivered(waiting))
        assert (response.status_code, response.json()) == (200, {"result": "ok", "stored": 2})
        assert UnmatchedCallbackEvent.objects.filter(message_uuid=uuid_of(waiting)).count() == 2  # run: not yet
        waiting.refresh_from_db()
        assert waiting.state == MessageState.RECEIVED
        assert messages_send_waiting() == 1
    else:
        assert messages_send_waiting() == 1
        response = callback(client, installation, sent_then_delivered(waiting))
        assert (response.status_code, response.json()) == (200, {"result": "ok", "stored": 2})

    waiting.refresh_from_db()
    assert (waiting.state, waiting.idgtl_status, waiting.idgtl_message_uuid) == (
        MessageState.DELIVERED,
        "delivered",
        uuid_of(waiting),
    )
    assert timeline(waiting) == [
        ("send", "sending", ""),
        ("send", "sent", ""),
        ("callback", "sent", "sent"),
        ("callback", "delivered", "delivered"),
    ]
    assert list(waiting.status_reports.values_list("status", flat=True))[-1:] == ["delivered"]
    assert not UnmatchedCallbackEvent.objects.exists()
    assert len(idgtl_api.sent) == 1


def test_a_final_status_kept_before_the_answer_is_not_overwritten_by_sent(client, installation, waiting, idgtl_api):
    """Only "undelivered" came early (the "sent" callback was lost): the answer's SENT comes first on
    the timeline, then the kept final status, with its error code."""
    callback(client, installation, [event(uuid_of(waiting), "undelivered", error_code=6969)])
    messages_send_waiting()
    waiting.refresh_from_db()
    assert (waiting.state, waiting.error_code) == (MessageState.UNDELIVERED, 6969)
    assert [state for _source, state, _status in timeline(waiting)] == ["sending", "sent", "undelivered"]


def test_repeated_events_are_kept_once(client, installation, waiting, idgtl_api):
    body = [*sent_then_delivered(waiting), sent_then_delivered(waiting)[1]]  # one repeat inside the callback
    assert callback(client, installation, body).json()["stored"] == 2
    assert callback(client, installation, body).json()["stored"] == 0  # i-dgtl sent it again
    no_time = event(uuid_of(waiting), "delivered", status_time=None)  # NULL times are distinct to a constraint
    assert callback(client, installation, [no_time, no_time]).json()["stored"] == 1
    # A repeat in a later call: SQLite's path looks for it first; PostgreSQL's one statement stores it again
    # (its constraint cannot meet NULL times), and it is applied once all the same (below).
    repeat_stored = 1 if connection.vendor == "postgresql" else 0
    assert callback(client, installation, [no_time]).json()["stored"] == repeat_stored
    assert UnmatchedCallbackEvent.objects.count() == 3 + repeat_stored

    messages_send_waiting()
    waiting.refresh_from_db()
    assert waiting.state == MessageState.DELIVERED
    assert [s for s in timeline(waiting) if s[0] == "callback"] == [
        ("callback", "sent", "sent"),
        ("callback", "delivered", "delivered"),
    ]
    assert not UnmatchedCallbackEvent.objects.exists()


def test_events_that_would_change_nothing_are_not_kept(client, installation, waiting):
    response = callback(
        client,
        installation,
        [
            event(uuid_of(waiting), "read", "read"),
            event(uuid_of(waiting), "no-such-status"),
            {"callback_event": "price", "price": 1.5},
        ],
    )
    assert response.json() == {"result": "ok", "stored": 0}
    assert not UnmatchedCallbackEvent.objects.exists()


def test_kept_events_stay_with_their_installation(client, installation, waiting, idgtl_api):
    stranger = Installation.objects.create(
        application=installation.application, member_id="other", domain="o.test", client_endpoint="https://o.test/rest/"
    )
    assert callback(client, stranger, sent_then_delivered(waiting)).json()["stored"] == 2
    messages_send_waiting()
    waiting.refresh_from_db()
    assert waiting.state == MessageState.SENT  # another portal's callback URL cannot finish our message
    assert UnmatchedCallbackEvent.objects.filter(installation=stranger).count() == 2


def test_events_kept_during_an_unknown_outcome_apply_when_the_lookup_finds_the_message(
    client, installation, provider, idgtl_api
):
    now = timezone.now()
    message = make_message(
        installation,
        provider,
        1,
        state=MessageState.SENDING,
        send_attempts=1,
        sending_started_at=now - timedelta(seconds=5),
        next_check_at=now - timedelta(seconds=1),
    )
    assert callback(client, installation, [event("found-later", "delivered")]).json()["stored"] == 1
    idgtl_api.known = [{"externalMessageId": str(message.pk), "messageUuid": "found-later", "status": "sending"}]
    assert messages_resolve_unknown_outcomes() == 1
    message.refresh_from_db()
    assert (message.state, message.idgtl_message_uuid) == (MessageState.DELIVERED, "found-later")
    assert [(source, state) for source, state, _status in timeline(message)] == [
        ("reconciler", "sent"),
        ("callback", "delivered"),
    ]
    assert not UnmatchedCallbackEvent.objects.exists()
    assert idgtl_api.sent == []  # found, not sent again


def test_the_sweep_applies_events_whose_uuid_became_known_another_way(client, installation, waiting):
    callback(client, installation, sent_then_delivered(waiting))
    Message.objects.filter(pk=waiting.pk).update(state=MessageState.SENT, idgtl_message_uuid=uuid_of(waiting))
    assert callback_inbox_sweep() == {"applied": 2, "dropped": 0}
    waiting.refresh_from_db()
    assert waiting.state == MessageState.DELIVERED
    assert not UnmatchedCallbackEvent.objects.exists()
    assert callback_inbox_sweep() == {"applied": 0, "dropped": 0}


def test_the_sweep_applies_what_a_lost_run_left(client, installation, provider):
    """The broker lost the applying run (Redis emptied): the events wait for beat's sweep, not forever."""
    sent = make_message(installation, provider, 1, state=MessageState.SENT, idgtl_message_uuid="u-lost")
    response = callback(client, installation, [event("u-lost", "delivered")], apply=False)  # no run comes
    assert response.json() == {"result": "ok", "stored": 1}
    sent.refresh_from_db()
    assert sent.state == MessageState.SENT
    assert callback_inbox_sweep() == {"applied": 1, "dropped": 0}
    sent.refresh_from_db()
    assert sent.state == MessageState.DELIVERED
    assert not UnmatchedCallbackEvent.objects.exists()


def test_a_callback_asks_for_the_applying_run_once_committed(
    client, installation, provider, monkeypatch, django_capture_on_commit_callbacks, bitrix24_api
):
    """The callback's commit asks for the debounced run (a task, run inline here), which applies the events."""
    from providers.services import delivery

    monkeypatch.setattr(delivery.CALLBACK_APPLY_RUN, "known_run_at", 0.0)  # no run known from another test
    sent = make_message(installation, provider, 1, state=MessageState.SENT, idgtl_message_uuid="u-run")
    with django_capture_on_commit_callbacks(execute=True) as asked:
        response = callback(client, installation, [event("u-run", "delivered")], apply=False)
    assert response.json() == {"result": "ok", "stored": 1}
    assert asked[0] == delivery.CALLBACK_APPLY_RUN.schedule  # (then the run's own: the status report)
    sent.refresh_from_db()
    assert sent.state == MessageState.DELIVERED
    assert not UnmatchedCallbackEvent.objects.exists()


def test_many_callbacks_within_a_moment_ask_for_one_run(client, installation, provider, monkeypatch, settings):
    from providers.services import delivery
    from providers.tasks.messages import apply_callback_events

    settings.REDIS_URL = ""  # the flag in Django's cache
    monkeypatch.setattr(delivery.CALLBACK_APPLY_RUN, "known_run_at", 0.0)
    delivery.CALLBACK_APPLY_RUN.flag_clear()
    published = []
    monkeypatch.setattr(apply_callback_events, "apply_async", lambda **kw: published.append(kw))
    for _ in range(20):
        delivery.CALLBACK_APPLY_RUN.schedule()
    assert published == [{"countdown": settings.MESSAGES_CALLBACK_APPLY_DEBOUNCE}]
    delivery.CALLBACK_APPLY_RUN.started()  # the run starts: the next callback asks again
    delivery.CALLBACK_APPLY_RUN.schedule()
    assert len(published) == 2
    delivery.CALLBACK_APPLY_RUN.flag_clear()


def test_applying_takes_a_thousand_events_per_transaction_in_arrival_order(client, installation, provider):
    messages = [
        make_message(installation, provider, n, state=MessageState.SENT, idgtl_message_uuid=f"u-{n}") for n in range(5)
    ]
    body = [e for n in range(5) for e in (event(f"u-{n}", "sent", "sent"), event(f"u-{n}", "delivered"))]
    callback(client, installation, body, apply=False)
    assert callback_inbox_apply(batch=3) == 10  # four transactions of up to 3 events
    for message in messages:
        message.refresh_from_db()
        assert message.state == MessageState.DELIVERED
        assert [status for _source, _state, status in timeline(message)] == ["sent", "delivered"]
    assert not UnmatchedCallbackEvent.objects.exists()


def test_the_sweep_leaves_events_of_messages_not_sent_yet(client, installation, waiting):
    callback(client, installation, sent_then_delivered(waiting))
    Message.objects.filter(pk=waiting.pk).update(state=MessageState.SENDING, idgtl_message_uuid=uuid_of(waiting))
    assert callback_inbox_sweep()["applied"] == 0
    assert UnmatchedCallbackEvent.objects.count() == 2


def test_events_past_the_message_lifetime_are_dropped_and_counted(client, settings, installation, waiting):
    settings.REDIS_URL = ""  # the metrics store of the embedded setup (the Django cache)
    metrics.store().clear()
    now = timezone.now()
    lifetime = timedelta(hours=settings.MESSAGES_LIFETIME_HOURS, seconds=settings.MESSAGES_LIFETIME_MARGIN)
    callback(
        client,
        installation,
        [event("never-recorded-1", "delivered"), event("never-recorded-2", "delivered"), event("recent", "delivered")],
    )
    UnmatchedCallbackEvent.objects.exclude(message_uuid="recent").update(
        received_at=now - lifetime - timedelta(seconds=1)
    )
    UnmatchedCallbackEvent.objects.filter(message_uuid="recent").update(received_at=now - timedelta(minutes=10))

    samples = scrape(client)
    assert samples["b24sms_callback_inbox_waiting_events"] == 3
    assert samples["b24sms_callback_inbox_oldest_waiting_seconds"] >= lifetime.total_seconds()
    assert samples.get("b24sms_callback_inbox_dropped_events_total", 0) == 0

    assert callback_inbox_sweep(now=now) == {"applied": 0, "dropped": 2}
    assert list(UnmatchedCallbackEvent.objects.values_list("message_uuid", flat=True)) == ["recent"]
    samples = scrape(client)
    assert samples["b24sms_callback_inbox_waiting_events"] == 1
    assert 590 < samples["b24sms_callback_inbox_oldest_waiting_seconds"] < 700
    assert samples["b24sms_callback_inbox_dropped_events_total"] == 2
    metrics.store().clear()


def test_the_model_knows_when_an_event_expires(settings, installation):
    received = timezone.now()
    kept = UnmatchedCallbackEvent(installation=installation, message_uuid="u", status="delivered", received_at=received)
    lifetime = timedelta(hours=settings.MESSAGES_LIFETIME_HOURS, seconds=settings.MESSAGES_LIFETIME_MARGIN)
    assert kept.expires_at == received + lifetime
    assert not kept.is_expired(received + lifetime - timedelta(seconds=1)) and kept.is_expired(received + lifetime)


def test_the_raw_event_is_kept_bounded_and_hostile_text_is_harmless(client, installation):
    body = json.dumps(
        [event("hostile", "delivered", nul="a\u0000b", lone="\ud800", cyrillic="доставлено", zz_padding="x" * 50_000)]
    )
    response = callback(client, installation, body)
    assert response.status_code == 200 and response.json()["stored"] == 1
    kept = UnmatchedCallbackEvent.objects.get()
    assert len(kept.raw_event) <= UnmatchedCallbackEvent.RAW_EVENT_MAX_CHARS
    assert kept.raw_event.startswith('{"callback_event": "delivered"') and kept.raw_event.endswith("\u2026")
    assert "\x00" not in kept.raw_event and "\\u0000" in kept.raw_event and "\\u0434" in kept.raw_event
    small = [event("small", "sent", "sent")]
    callback(client, installation, small)
    assert json.loads(UnmatchedCallbackEvent.objects.get(message_uuid="small").raw_event) == small[0]


@pytest.mark.parametrize(
    "bad", [{"message_uuid": "u" * 65}, {"message_uuid": "a\u0000b"}, {"status": "s" * 33}, {"status": ""}]
)
def test_bad_events_are_400_and_nothing_is_kept(client, installation, bad):
    response = callback(client, installation, [event("good", "delivered"), {**event(), **bad}])
    assert response.status_code == 400
    assert not UnmatchedCallbackEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_applying_kept_events_outside_the_recording_transaction_is_refused(installation, provider):
    message = make_message(installation, provider, 1, state=MessageState.SENT, idgtl_message_uuid="u-1")
    with pytest.raises(RuntimeError):
        callback_events_apply_pending(messages=[message])


def test_beat_sweeps_the_inbox_every_15_seconds():
    from b24sms.celery import BEAT_SCHEDULE, app

    entry = BEAT_SCHEDULE["messages-callback-inbox-sweep"]
    assert entry["task"] in app.tasks and entry["schedule"].run_every == timedelta(seconds=15)


def test_the_task_runs_the_sweep(installation):
    from providers.tasks.messages import sweep_callback_inbox

    UnmatchedCallbackEvent.objects.create(
        installation=installation,
        message_uuid="old",
        status="delivered",
        received_at=timezone.now() - timedelta(days=3),
    )
    assert sweep_callback_inbox.delay().get()["dropped"] == 1


# --- admin and permissions ---------------------------------------------------------------------------
def test_the_admin_lists_kept_events_read_only(admin_client, client, installation):
    callback(client, installation, [event("waiting-uuid", "undelivered", error_code=6969)])
    kept = UnmatchedCallbackEvent.objects.get()
    page = admin_client.get("/admin/providers/unmatchedcallbackevent/", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    text = page.content.decode()
    assert "waiting-uuid" in text and "Undelivered" in text and "(undelivered)" not in text and "6969" in text
    detail = admin_client.get(f"/admin/providers/unmatchedcallbackevent/{kept.pk}/change/", HTTP_ACCEPT_LANGUAGE="en")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert "callback_event" in detail.content.decode()  # the raw event
    assert admin_client.get("/admin/providers/unmatchedcallbackevent/add/").status_code == 403
    assert admin_client.get(f"/admin/providers/unmatchedcallbackevent/{kept.pk}/delete/").status_code == 403


def test_the_admin_list_in_russian(admin_client, installation):
    page = admin_client.get("/admin/providers/unmatchedcallbackevent/", HTTP_ACCEPT_LANGUAGE="ru")
    assert page.status_code == 200
    assert "Несопоставленные события i-dgtl" in page.content.decode()


def test_viewers_and_operators_see_the_inbox(django_user_model, client, installation):
    for role in (VIEWER, OPERATOR):
        assert Group.objects.get(name=role).permissions.filter(codename="view_unmatchedcallbackevent").exists()
    user = django_user_model.objects.create_user(username="viewer", password="viewer-pass-123456", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWER))
    client.force_login(user)
    assert client.get("/admin/providers/unmatchedcallbackevent/").status_code == 200


@pytest.mark.django_db
def test_the_migration_gives_existing_groups_the_view_permission():
    """Groups created before the inbox existed (an administrator's edits are kept) get to see it."""
    view = Permission.objects.get(codename="view_unmatchedcallbackevent")
    viewer = Group.objects.get(name=VIEWER)
    viewer.permissions.remove(view)
    migration = importlib.import_module("providers.migrations.0005_callback_inbox")
    state_apps = MigrationExecutor(connection).loader.project_state(("providers", "0005_callback_inbox")).apps

    class SchemaEditor:
        connection = connection

    migration.grant_view_to_default_groups(state_apps, SchemaEditor())
    assert viewer.permissions.filter(pk=view.pk).exists()


# --- the lock that orders a callback and the recording of its uuid (PostgreSQL) -------------------------
class Step(threading.Thread):
    """One party of an interleaving, on a connection of its own; its failure fails the test."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work, self.result, self.error = work, None, None
        self.start()

    def run(self):
        from django.db import connection as thread_connection

        try:
            with thread_connection.cursor() as cursor:
                cursor.execute("SET lock_timeout TO '20s'")  # a deadlock fails the test instead of hanging it
            self.result = self.work()
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            thread_connection.close()

    def finish(self):
        self.join(30)
        assert not self.is_alive(), "a party of the interleaving did not finish"
        if self.error:
            raise self.error
        return self.result


def inbox_lock_waiters() -> int:
    from providers.services.delivery import INBOX_LOCK_NAMESPACE

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid::bigint = %s AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())",
            [INBOX_LOCK_NAMESPACE],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def in_flight(transactional_db, installation, provider):
    """A claimed message whose answer from i-dgtl (uuid "raced") is being recorded."""
    return make_message(
        installation, provider, 1, state=MessageState.SENDING, send_attempts=1, sending_started_at=timezone.now()
    )


def record_uuid_and_apply_pending(message, *, before_pending=None, after_pending=None):
    """What _apply_send_result does: record the uuid, then apply kept events, in one transaction."""

    def work():
        with transaction.atomic():
            Message.objects.filter(pk=message.pk).update(state=MessageState.SENT, idgtl_message_uuid="raced")
            if before_pending:
                before_pending()
            applied = callback_events_apply_pending(messages=[Message.objects.get(pk=message.pk)])
            if after_pending:
                after_pending()
            return applied

    return work


def delivered_callback(installation, *, before_commit=None):
    """A callback storing a "delivered" event for uuid "raced"; ``before_commit`` holds its commit back."""
    from providers.callback_form import CallbackEvent
    from providers.services.delivery import callback_events_receive

    events = [CallbackEvent(message_uuid="raced", status="delivered", status_time=timezone.now())]
    if before_commit is None:
        return lambda: callback_events_receive(installation=installation, events=events)  # one statement

    def work():
        with transaction.atomic():
            stored = callback_events_receive(installation=installation, events=events)
            before_commit()
        return stored

    return work


@pytest.mark.integration
def test_a_callback_holding_the_inbox_lock_is_seen_by_the_recording_transaction(installation, in_flight):
    """The callback stored its event (not committed yet) under the lock; the transaction that records
    the uuid waits for it, then finds the stored event and applies it before it commits."""
    recorded, callback_locked, send_waits = threading.Event(), threading.Event(), threading.Event()
    send = Step(
        record_uuid_and_apply_pending(in_flight, before_pending=lambda: (recorded.set(), callback_locked.wait(30)))
    )
    assert recorded.wait(30)
    callback = Step(
        delivered_callback(installation, before_commit=lambda: (callback_locked.set(), send_waits.wait(30)))
    )
    wait_until(lambda: inbox_lock_waiters() == 1, timeout=20, message="the send to wait for the inbox lock")
    send_waits.set()
    assert callback.finish() == 1
    assert send.finish() == 1
    in_flight.refresh_from_db()
    assert in_flight.state == MessageState.DELIVERED
    assert not UnmatchedCallbackEvent.objects.exists()


@pytest.mark.integration
def test_a_callback_waiting_for_the_inbox_lock_finds_the_recorded_uuid(installation, in_flight):
    """The recording transaction holds the lock (it found nothing stored); the callback waits for the
    lock, so it commits after the uuid is recorded, and the applying run it asks for applies it."""
    send_locked, callback_waits = threading.Event(), threading.Event()
    send = Step(
        record_uuid_and_apply_pending(in_flight, after_pending=lambda: (send_locked.set(), callback_waits.wait(30)))
    )
    assert send_locked.wait(30)
    callback = Step(delivered_callback(installation))
    wait_until(lambda: inbox_lock_waiters() == 1, timeout=20, message="the callback to wait for the inbox lock")
    callback_waits.set()
    assert send.finish() == 0
    assert callback.finish() == 1
    callback_inbox_apply()  # the run the callback asked for (tasks run inline here: it may have run already)
    in_flight.refresh_from_db()
    assert in_flight.state == MessageState.DELIVERED
    assert not UnmatchedCallbackEvent.objects.exists()


def test_an_event_that_cannot_be_applied_holds_no_other_back(client, installation, provider, monkeypatch, caplog):
    """A poison event (here: its message's write fails) is logged and stays in the inbox; the events before
    and after it are applied in the same run, and the next run tries it again."""
    from providers.services import delivery

    messages = [
        make_message(installation, provider, n, state=MessageState.SENT, idgtl_message_uuid=f"u-{n}") for n in range(4)
    ]
    poison = messages[1]
    real = delivery._messages_apply_statuses

    def failing_for_the_poison(statuses, *, source):
        if any(message.pk == poison.pk for message, *_rest in statuses):
            raise ValueError("cannot write this one")
        return real(statuses, source=source)

    monkeypatch.setattr(delivery, "_messages_apply_statuses", failing_for_the_poison)
    callback(client, installation, [event(f"u-{n}", "delivered") for n in range(4)], apply=False)
    assert callback_inbox_apply(batch=2) == 3
    states = dict(Message.objects.values_list("pk", "state"))
    assert [states[m.pk] for m in messages] == [MessageState.DELIVERED, MessageState.SENT] + [
        MessageState.DELIVERED
    ] * 2
    assert list(UnmatchedCallbackEvent.objects.values_list("message_uuid", flat=True)) == ["u-1"]
    assert "u-1" in caplog.text and "stays in the inbox" in caplog.text
    assert callback_inbox_apply() == 0  # tried again, still failing: still kept
    monkeypatch.setattr(delivery, "_messages_apply_statuses", real)  # (mended)
    assert callback_inbox_apply() == 1
    assert not UnmatchedCallbackEvent.objects.exists()
