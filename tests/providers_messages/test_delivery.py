"""i-dgtl delivery callbacks and the reconciler."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from common.errors import error_text
from providers.models import MessageState, StatusReport
from providers.services.delivery import callback_inbox_apply, messages_reconcile
from tests.providers_messages.conftest import make_message


@pytest.fixture
def sent_message(installation, provider):
    return make_message(
        installation,
        provider,
        1,
        state=MessageState.SENT,
        idgtl_message_uuid="063474ec-0001",
        sending_started_at=timezone.now(),
        sent_at=timezone.now(),
    )


def event(uuid="063474ec-0001", status="delivered", callback_event="delivered", **extra):
    return {
        "message_uuid": uuid,
        "channel_type": "SMS",
        "callback_event": callback_event,
        "status": status,
        "status_time": "2026-01-01T10:00:00Z",
        **extra,
    }


def callback(client, installation, body, secret=None, apply=True, **extra):
    """POST a callback, then (``apply``) the worker's run that applies what it stored, as a moment later."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    response = client.post(
        f"/idgtl/callback/{secret or installation.callback_secret}/",
        data=data,
        content_type="application/json",
        **extra,
    )
    if apply and response.status_code == 200:
        callback_inbox_apply()
    return response


def test_delivered_callback_finalises_and_queues_the_report(client, installation, sent_message):
    response = callback(client, installation, [event()])
    assert response.status_code == 200
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.DELIVERED
    assert sent_message.idgtl_status == "delivered"
    assert sent_message.final_at is not None
    assert list(sent_message.status_changes.values_list("state", "source")) == [("delivered", "callback")]
    assert list(StatusReport.objects.values_list("status", flat=True)) == ["delivered"]


def test_repeated_callback_changes_nothing(client, installation, sent_message):
    callback(client, installation, [event()])
    assert callback(client, installation, [event(), event()]).json() == {"result": "ok", "stored": 1}
    assert sent_message.status_changes.count() == 1
    assert StatusReport.objects.count() == 1


def test_a_final_status_never_moves_back(client, installation, sent_message):
    callback(client, installation, [event(status="undelivered", error_code=6969)])
    callback(client, installation, [event(status="sent", callback_event="sent"), event(status="delivered")])
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.UNDELIVERED
    assert sent_message.error_code == 6969
    assert list(StatusReport.objects.values_list("status", flat=True)) == ["undelivered"]


def test_unsent_is_failed(client, installation, sent_message):
    callback(client, installation, [event(status="unsent")])
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.FAILED


def test_sent_event_records_the_status_without_a_new_state(client, installation, sent_message):
    callback(client, installation, [event(status="sent", callback_event="sent")])
    sent_message.refresh_from_db()
    assert (sent_message.state, sent_message.idgtl_status) == (MessageState.SENT, "sent")
    assert list(sent_message.status_changes.values_list("state", "idgtl_status", "source")) == [
        ("sent", "sent", "callback")
    ]  # on the timeline, though the state stays
    assert not StatusReport.objects.exists()  # Bitrix24 already has "sent"


def test_an_earlier_idgtl_status_does_not_overwrite_a_later_one(client, installation, sent_message):
    callback(client, installation, [event(status="sent", callback_event="sent")])
    callback(client, installation, [event(status="sending", callback_event="sent")])
    sent_message.refresh_from_db()
    assert sent_message.idgtl_status == "sent"
    assert sent_message.status_changes.count() == 1


def test_batched_events_and_price_click_are_acknowledged(client, installation, provider, sent_message):
    other = make_message(installation, provider, 2, state=MessageState.SENT, idgtl_message_uuid="063474ec-0002")
    response = callback(
        client,
        installation,
        [
            event(),
            event(uuid="063474ec-0002", status="undelivered"),
            {"callback_event": "price", "price": 1.5},
            {"callback_event": "click", "message_uuid": "063474ec-0001"},
            event(uuid="unknown-uuid"),
        ],
    )
    assert response.status_code == 200
    other.refresh_from_db()
    assert other.state == MessageState.UNDELIVERED


def test_callbacks_only_touch_messages_of_their_installation(client, installation, provider, sent_message):
    from providers.models import Installation

    stranger = Installation.objects.create(
        application=installation.application, member_id="other", domain="o.test", client_endpoint="https://o.test/rest/"
    )
    callback(client, stranger, [event()])
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT


@pytest.mark.parametrize(
    "body", [b"not json", b"{}", b'"x"', b"[1]", json.dumps([event(uuid=None)]), json.dumps([event(status=5)]), b"\xff"]
)
def test_malformed_callback_is_400_and_changes_nothing(client, installation, sent_message, body):
    response = callback(client, installation, body)
    assert response.status_code == 400
    assert error_text(response.json())
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT


def test_wrong_secret_is_403(client, installation, sent_message):
    assert callback(client, installation, [event()], secret="forged-secret").status_code == 403
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT


def test_ip_allowlist(client, settings, installation, sent_message):
    settings.IDGTL_CALLBACK_ALLOWED_IPS = ["185.203.96.7", "10.0.0.0/8"]
    assert callback(client, installation, [event()], REMOTE_ADDR="127.0.0.1").status_code == 403
    assert callback(client, installation, [event()], REMOTE_ADDR="10.1.2.3").status_code == 200


def test_reconciler_looks_up_due_messages_and_applies_final_status(installation, provider, idgtl_api):
    due = make_message(
        installation,
        provider,
        1,
        state=MessageState.SENT,
        idgtl_message_uuid="u-1",
        sending_started_at=timezone.now(),
        next_check_at=timezone.now() - timedelta(seconds=1),
    )
    still = make_message(
        installation,
        provider,
        2,
        state=MessageState.SENT,
        idgtl_message_uuid="u-2",
        sending_started_at=timezone.now(),
        next_check_at=timezone.now() - timedelta(seconds=1),
    )
    not_yet = make_message(
        installation,
        provider,
        3,
        state=MessageState.SENT,
        idgtl_message_uuid="u-3",
        sending_started_at=timezone.now(),
        next_check_at=timezone.now() + timedelta(hours=1),
    )
    idgtl_api.known = [{"messageUuid": "u-1", "status": "delivered"}, {"messageUuid": "u-2", "status": "sent"}]
    assert messages_reconcile()["checked"] == 2
    assert idgtl_api.lookups[0]["message_uuids"] == ["u-1", "u-2"]
    due.refresh_from_db(), still.refresh_from_db(), not_yet.refresh_from_db()
    assert due.state == MessageState.DELIVERED
    assert list(due.status_changes.values_list("source", flat=True)) == ["reconciler"]
    assert still.state == MessageState.SENT and still.next_check_at > timezone.now()
    assert not_yet.idgtl_status == ""


def test_reconciler_fails_messages_past_the_lifetime(settings, installation, provider, idgtl_api):
    old = timezone.now() - timedelta(
        hours=settings.MESSAGES_LIFETIME_HOURS, seconds=settings.MESSAGES_LIFETIME_MARGIN + 5
    )
    expired = make_message(
        installation, provider, 1, state=MessageState.SENT, idgtl_message_uuid="u-1", sending_started_at=old
    )
    young = make_message(
        installation,
        provider,
        2,
        state=MessageState.SENT,
        idgtl_message_uuid="u-2",
        sending_started_at=timezone.now() - timedelta(hours=settings.MESSAGES_LIFETIME_HOURS),
    )
    assert messages_reconcile()["expired"] == 1
    expired.refresh_from_db(), young.refresh_from_db()
    assert expired.state == MessageState.FAILED and "lifetime" in expired.error_message
    assert young.state == MessageState.SENT
    assert list(expired.status_reports.values_list("status", flat=True)) == ["failed"]
