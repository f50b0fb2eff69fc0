"""Sending waiting messages to i-dgtl: batching, item failures, outcome unknown, never twice."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from common.debounce import KNOWN_RUN_MARGIN
from idgtl.client import IdgtlConfigurationError, IdgtlOutcomeUnknown, IdgtlTransientError, IdgtlValidationError
from providers.models import Message, MessageState, MessageStatusChange, Provider, ProviderRegistration
from providers.services.sending import messages_resolve_unknown_outcomes, messages_send_waiting, sending_run
from tests.providers_messages.conftest import make_message


def states():
    return dict(Message.objects.values_list("pk", "state"))


def test_waiting_messages_go_in_one_call_with_our_id_and_callback(settings, installation, provider, idgtl_api):
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    messages = [make_message(installation, provider, n) for n in range(1, 6)]
    assert messages_send_waiting() == 5
    assert len(idgtl_api.sent) == 1
    first = idgtl_api.sent[0][0]
    assert first == {
        "channelType": "SMS",
        "senderName": "MyShop",
        "destination": "79990000001",
        "content": "text 1",
        "externalMessageId": str(messages[0].pk),
        "callbackUrl": f"https://sms.example.com/idgtl/callback/{installation.callback_secret}/",
        "callbackEvents": ["delivered", "sent"],
    }
    for message in Message.objects.all():
        assert message.state == MessageState.SENT
        assert message.idgtl_message_uuid == f"uuid-{message.pk}"
        assert message.send_attempts == 1
        assert list(message.status_changes.values_list("state", flat=True)) == ["sending", "sent"]
        assert not message.status_reports.exists()  # Bitrix24 shows it sent already: finals only


def test_one_call_per_sender_name_and_at_most_batch_size(settings, installation, provider, idgtl_api):
    settings.MESSAGES_SEND_BATCH_SIZE = 3
    other = Provider.objects.create(code="p2", name="Two", sender_name="Other")
    ProviderRegistration.objects.create(provider=other, installation=installation, state="registered")
    for n in range(1, 6):
        make_message(installation, provider, n)
    make_message(installation, other, 9, sender_name="Other")
    messages_send_waiting()
    sizes = sorted((batch[0]["senderName"], len(batch)) for batch in idgtl_api.sent)
    assert sum(size for _name, size in sizes) == 6
    assert {name for name, _size in sizes} == {"MyShop", "Other"}
    assert all(len({m["senderName"] for m in batch}) == 1 for batch in idgtl_api.sent)
    assert all(len(batch) <= 3 for batch in idgtl_api.sent)
    assert set(states().values()) == {MessageState.SENT}


def test_failed_item_fails_only_that_message(installation, provider, idgtl_api):
    ok, bad = make_message(installation, provider, 1), make_message(installation, provider, 2)
    idgtl_api.send_answers.append(
        {"errors": True, "items": [{"code": 201, "messageUuid": "u-1"}, {"code": 7401, "msg": "Invalid destination"}]}
    )
    messages_send_waiting()
    ok.refresh_from_db(), bad.refresh_from_db()
    assert ok.state == MessageState.SENT and ok.idgtl_message_uuid == "u-1"
    assert bad.state == MessageState.FAILED
    assert (bad.error_code, bad.error_message) == (7401, "Invalid destination")
    assert list(bad.status_reports.values_list("status", flat=True)) == ["failed"]


def test_invalid_number_fails_without_calling_idgtl(installation, provider, idgtl_api):
    message = make_message(installation, provider, 1, destination="", message_to="12")
    messages_send_waiting()
    message.refresh_from_db()
    assert idgtl_api.sent == []
    assert message.state == MessageState.FAILED
    assert "12" in message.error_message
    assert list(message.status_reports.values_list("status", flat=True)) == ["failed"]


def test_request_level_rejection_fails_the_batch_with_idgtls_text(installation, provider, idgtl_api):
    make_message(installation, provider, 1)
    idgtl_api.send_answers.append(
        IdgtlValidationError("senderName not found or not approved", http_status=422, code=4220)
    )
    messages_send_waiting()
    message = Message.objects.get()
    assert message.state == MessageState.FAILED
    assert message.error_message == "senderName not found or not approved"


def test_configuration_error_fails_clearly(installation, provider, idgtl_api):
    make_message(installation, provider, 1)
    idgtl_api.send_answers.append(IdgtlConfigurationError("Bad credentials", http_status=401, code=4012))
    messages_send_waiting()
    message = Message.objects.get()
    assert message.state == MessageState.FAILED
    assert "configuration" in message.error_message and "Bad credentials" in message.error_message


def test_missing_messages_key_fails_without_calling(installation, provider, idgtl_api, account):
    account.messages_key = ""
    account.save()
    make_message(installation, provider, 1)
    messages_send_waiting()
    assert idgtl_api.sent == []
    assert Message.objects.get().state == MessageState.FAILED


def test_transient_error_returns_messages_to_waiting_with_backoff_then_sends(installation, provider, idgtl_api):
    message = make_message(installation, provider, 1)
    idgtl_api.send_answers.append(IdgtlTransientError("HTTP 503", http_status=503))
    messages_send_waiting()
    message.refresh_from_db()
    assert message.state == MessageState.RECEIVED
    assert message.next_check_at > timezone.now()
    assert messages_send_waiting() == 0  # not before its backoff
    Message.objects.update(next_check_at=timezone.now() - timedelta(seconds=1))
    assert messages_send_waiting() == 1
    assert len(idgtl_api.sent) == 2
    assert list(message.status_changes.values_list("state", flat=True)) == ["sending", "received", "sending", "sent"]


def test_transient_errors_give_up_after_the_bounded_attempts(settings, installation, provider, idgtl_api):
    settings.MESSAGES_SEND_MAX_ATTEMPTS = 2
    make_message(installation, provider, 1)
    for _attempt in range(2):
        idgtl_api.send_answers.append(IdgtlTransientError("HTTP 503", http_status=503))
        Message.objects.update(next_check_at=None)
        messages_send_waiting()
    message = Message.objects.get()
    assert message.state == MessageState.FAILED
    assert len(idgtl_api.sent) == 2


def test_outcome_unknown_keeps_sending_and_is_resolved_by_lookup_not_resent(installation, provider, idgtl_api):
    found, missing = make_message(installation, provider, 1), make_message(installation, provider, 2)
    idgtl_api.send_answers.append(IdgtlOutcomeUnknown("read timeout"))
    messages_send_waiting()
    assert set(states().values()) == {MessageState.SENDING}
    assert messages_send_waiting() == 0  # a SENDING message is never claimed again
    assert len(idgtl_api.sent) == 1

    # i-dgtl did create the first one (and already delivered it); the second never arrived.
    idgtl_api.known = [
        {
            "messageUuid": "u-found",
            "externalMessageId": str(found.pk),
            "status": "delivered",
            "statusTime": "2026-01-01T10:00:00Z",
        }
    ]
    assert messages_resolve_unknown_outcomes() == 0  # not before the lookup delay
    Message.objects.update(next_check_at=timezone.now() - timedelta(seconds=1))
    assert messages_resolve_unknown_outcomes() == 2
    found.refresh_from_db(), missing.refresh_from_db()
    assert found.state == MessageState.DELIVERED and found.idgtl_message_uuid == "u-found"
    assert idgtl_api.lookups[0]["time_from"] <= found.sending_started_at
    # The missing one goes again (a send run is enqueued at once: inline in these eager tests), alone.
    assert missing.state == MessageState.SENT
    assert [m["externalMessageId"] for m in idgtl_api.sent[1]] == [str(missing.pk)]
    assert len(idgtl_api.sent) == 2
    assert list(missing.status_changes.values_list("state", "source")) == [
        ("sending", "send"),
        ("received", "reconciler"),
        ("sending", "send"),
        ("sent", "send"),
    ]
    assert list(found.status_reports.values_list("status", flat=True)) == ["delivered"]


def test_a_lookup_window_too_large_to_read_whole_never_resends(
    settings, monkeypatch, installation, provider, idgtl_api
):
    """i-dgtl lets one lookup read at most 10,000 items of a window: a message not among them may still
    be there, so it is looked up again later (and failed after its lifetime), never sent a second time."""
    monkeypatch.setattr("providers.services.sending.GET_MESSAGES_MAX_WINDOW", 200)
    message = make_message(installation, provider, 1)
    idgtl_api.send_answers.append(IdgtlOutcomeUnknown("read timeout"))
    messages_send_waiting()
    idgtl_api.known = [{"messageUuid": f"other-{n}", "externalMessageId": f"x{n}"} for n in range(250)]
    Message.objects.update(next_check_at=timezone.now() - timedelta(seconds=1))
    messages_resolve_unknown_outcomes()
    message.refresh_from_db()
    assert message.state == MessageState.SENDING and message.next_check_at > timezone.now()
    assert len(idgtl_api.lookups) == 2 and len(idgtl_api.sent) == 1

    later = timezone.now() + timedelta(
        hours=settings.MESSAGES_LIFETIME_HOURS, seconds=settings.MESSAGES_LIFETIME_MARGIN + 60
    )
    messages_resolve_unknown_outcomes(now=later)
    message.refresh_from_db()
    assert message.state == MessageState.FAILED
    assert len(idgtl_api.sent) == 1


def test_the_lookup_window_ends_shortly_after_the_claim(installation, provider, idgtl_api):
    message = make_message(installation, provider, 1)
    idgtl_api.send_answers.append(IdgtlOutcomeUnknown("read timeout"))
    messages_send_waiting()
    message.refresh_from_db()
    later = message.sending_started_at + timedelta(hours=3)
    messages_resolve_unknown_outcomes(now=later)
    lookup = idgtl_api.lookups[0]
    assert lookup["time_from"] < message.sending_started_at < lookup["time_to"]
    assert lookup["time_to"] < message.sending_started_at + timedelta(minutes=10)


def test_items_that_do_not_line_up_make_the_outcome_unknown(installation, provider, idgtl_api):
    make_message(installation, provider, 1), make_message(installation, provider, 2)
    idgtl_api.send_answers.append({"errors": False, "items": [{"code": 201, "messageUuid": "u"}]})
    messages_send_waiting()
    assert set(states().values()) == {MessageState.SENDING}


def test_a_claim_from_before_leases_is_looked_up_after_one_lease(settings, installation, provider, idgtl_api):
    """A message claimed by an older release (no lease in next_check_at): its claim time counts."""
    message = make_message(installation, provider, 1)
    Message.objects.update(state=MessageState.SENDING, sending_started_at=timezone.now() - timedelta(seconds=10))
    assert sending_run() == {"resolved": 0, "sent": 0}
    Message.objects.update(sending_started_at=timezone.now() - timedelta(seconds=settings.MESSAGES_SEND_LEASE + 1))
    idgtl_api.known = [{"messageUuid": "u-1", "externalMessageId": str(message.pk), "status": "sent"}]
    assert sending_run()["resolved"] == 1
    message.refresh_from_db()
    assert message.state == MessageState.SENT and message.idgtl_message_uuid == "u-1"
    assert idgtl_api.sent == []


def test_redelivered_task_sends_nothing_twice(installation, provider, idgtl_api):
    make_message(installation, provider, 1)
    sending_run()
    sending_run()
    assert len(idgtl_api.sent) == 1
    assert MessageStatusChange.objects.filter(state=MessageState.SENT).count() == 1


@pytest.mark.parametrize("burst", [2500])
def test_a_burst_costs_one_call_per_thousand(installation, provider, idgtl_api, burst):
    Message.objects.bulk_create(
        [
            Message(
                installation=installation,
                provider=provider,
                message_id=f"b{n}",
                module_id="crm",
                message_to="+79990000001",
                destination="79990000001",
                text="t",
                sender_name="MyShop",
            )
            for n in range(burst)
        ]
    )
    assert messages_send_waiting() == burst
    assert [len(batch) for batch in idgtl_api.sent] == [1000, 1000, 500]


# --- scheduling: a burst of HANDLER calls asks for one send run ---------------------------------------
class _Clock:
    def __init__(self, clock):
        self._clock = clock

    def time(self):
        return self._clock["now"]

    def __getattr__(self, name):
        import time

        return getattr(time, name)


@pytest.fixture(params=["cache", pytest.param("redis", marks=pytest.mark.integration)])
def schedule(request, db, settings, monkeypatch):
    """sending_schedule with the task's publishing recorded, on the shared flag in the cache (no Redis)
    or in Redis, this process's memory reset."""
    import threading

    from common import debounce
    from providers.services import sending
    from providers.tasks.messages import send_waiting_messages

    settings.REDIS_URL = os.environ["CELERY_BROKER_URL"] if request.param == "redis" else ""
    monkeypatch.setattr(debounce, "_redis", threading.local())
    settings.MESSAGES_SEND_DEBOUNCE = 0.2
    run = sending.SEND_RUN
    run.flag_clear()
    monkeypatch.setattr(run, "known_run_at", 0.0)
    published, clock = [], {"now": 1_000_000.0}
    monkeypatch.setattr(send_waiting_messages, "apply_async", lambda **kw: published.append(kw))
    monkeypatch.setattr(debounce, "time", _Clock(clock))  # the debounce's clock only (the cache keeps real time)
    flag_calls = []
    real_claim = run.flag_claim
    monkeypatch.setattr(run, "flag_claim", lambda run_at, now: flag_calls.append(run_at) or real_claim(run_at, now))
    yield {
        "published": published,
        "clock": clock,
        "flag_calls": flag_calls,
        "sending": sending,
        "backend": request.param,
    }
    sending.SEND_RUN.flag_clear()


def test_a_burst_publishes_one_run_and_asks_the_shared_flag_once(schedule):
    for _ in range(500):
        schedule["sending"].sending_schedule()
        schedule["clock"]["now"] += 0.0002  # 500 messages in 0.1 s
    assert schedule["published"] == [{"countdown": 0.2}]
    assert len(schedule["flag_calls"]) == 1


def test_a_message_after_the_run_is_due_asks_for_a_new_run(schedule):
    """The flag lasts until its run is due: later messages are not left to a run that has started
    (or that is still waiting in the queue behind a busy worker)."""
    import time

    sending = schedule["sending"]
    sending.sending_schedule()
    sending.sending_schedule()
    if schedule["backend"] == "redis":
        time.sleep(0.25)  # the flag expires when the run is due (real time)
    else:
        sending.SEND_RUN.flag_clear()  # the database cache keeps whole seconds: the run clears it
    schedule["clock"]["now"] += 0.25
    sending.sending_schedule()
    assert schedule["published"] == [{"countdown": 0.2}, {"countdown": 0.2}]


def test_a_run_that_starts_early_lets_the_next_message_ask_again(schedule):
    sending = schedule["sending"]
    sending.sending_schedule()
    schedule["clock"]["now"] += 0.19
    sending.SEND_RUN.flag_clear()  # the run starts (a worker clock slightly ahead): it clears the flag
    sending.sending_schedule()
    assert len(schedule["published"]) == 2


def test_a_run_scheduled_by_another_process_is_relied_on_until_it_is_due(schedule):
    sending = schedule["sending"]
    now = schedule["clock"]["now"]
    assert sending.SEND_RUN.flag_claim(now + 0.2, now) is None  # another web process
    for _ in range(10):
        sending.sending_schedule()
        schedule["clock"]["now"] += 0.01
    assert schedule["published"] == []
    assert len(schedule["flag_calls"]) == 2  # the other process's call, then one look at its flag


def test_a_failed_publish_leaves_no_flag_behind(schedule, monkeypatch):
    from providers.tasks.messages import send_waiting_messages

    def broker_down(**kw):
        raise ConnectionError("broker down")

    monkeypatch.setattr(send_waiting_messages, "apply_async", broker_down)
    with pytest.raises(ConnectionError):
        schedule["sending"].sending_schedule()
    monkeypatch.setattr(send_waiting_messages, "apply_async", lambda **kw: schedule["published"].append(kw))
    schedule["sending"].sending_schedule()  # the next message is not stuck behind a run that never came
    assert schedule["published"] == [{"countdown": 0.2}]


def test_every_message_of_a_steady_stream_has_a_run_due_after_it(schedule):
    """One message a millisecond for two seconds: each has a run due at least the margin after it, and
    the runs asked for are about one per debounce period, not one per message."""
    sending = schedule["sending"]
    for _ in range(2000):
        now = schedule["clock"]["now"]
        published_before = len(schedule["published"])
        sending.sending_schedule()
        if len(schedule["published"]) > published_before:
            due = now + 0.2
            schedule.setdefault("due", []).append(due)
        assert schedule["due"][-1] >= now + KNOWN_RUN_MARGIN
        schedule["clock"]["now"] += 0.001
    assert 2 / 0.2 <= len(schedule["published"]) <= 2 / (0.2 - KNOWN_RUN_MARGIN) + 1
    assert len(schedule["flag_calls"]) <= 2 * len(schedule["published"])


def test_bulk_update_rows_writes_each_rows_own_values(installation, provider):
    from common.bulk import bulk_update_rows

    messages = [make_message(installation, provider, n) for n in range(1, 4)]
    values = ["it's 1", "", None]
    for message, text in zip(messages, values, strict=False):
        message.error_message = text or ""
        message.next_check_at = timezone.now() + timedelta(hours=1) if text is None else None
    bulk_update_rows(Message, messages, ["error_message", "next_check_at"], batch_size=2)
    stored = {m.pk: (m.error_message, m.next_check_at is not None) for m in Message.objects.all()}
    assert stored == {messages[0].pk: ("it's 1", False), messages[1].pk: ("", False), messages[2].pk: ("", True)}


def test_the_unknown_outcome_probe_agrees_with_the_lookup_query(settings, installation, provider):
    """Every send run first asks whether any message has an unknown outcome: on PostgreSQL with one prepared
    SQL text, which must say what the ORM query that takes them over finds."""
    from providers.services import sending

    now = timezone.now()
    stale = timedelta(seconds=settings.MESSAGES_SEND_LEASE + 1)
    cases = [
        ({"state": MessageState.SENDING, "next_check_at": now - timedelta(seconds=1)}, True),  # lease lapsed
        ({"state": MessageState.SENDING, "next_check_at": now + timedelta(seconds=60)}, False),  # still leased
        ({"state": MessageState.SENDING, "next_check_at": None, "sending_started_at": now - stale}, True),
        ({"state": MessageState.SENDING, "next_check_at": None, "sending_started_at": now}, False),
        ({"state": MessageState.SENT, "next_check_at": now - timedelta(seconds=1)}, False),
    ]
    for number, (fields, expected) in enumerate(cases):
        Message.objects.all().delete()
        make_message(installation, provider, number, **fields)
        assert sending._unknown_outcome_exists(now) is expected, fields
        assert sending._unknown_outcome_queryset(now).exists() is expected, fields
