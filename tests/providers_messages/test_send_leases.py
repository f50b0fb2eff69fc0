"""Send leases: a claim lapses shortly after its i-dgtl call could still be in flight, and is fenced.

A worker that lost its lease never sends; a lapsed lease is taken over by exactly one sweep, which
looks the messages up before any resend; the lookup schedule of sent messages grows from minutes.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from providers.models import Message, MessageState
from providers.services.sending import (
    SendLeaseLost,
    messages_claim,
    messages_lease_renew,
    messages_send_batch,
    sending_run,
)
from tests.providers_messages.conftest import make_message

pytestmark = pytest.mark.django_db


def test_a_claim_holds_a_lease_of_one_attempt_and_a_margin(settings, installation, provider, idgtl_api):
    settings.MESSAGES_SEND_LEASE = 85
    make_message(installation, provider, 1)
    before = timezone.now()

    [claimed] = messages_claim(limit=10)

    stored = Message.objects.get(pk=claimed.pk)
    assert stored.state == MessageState.SENDING
    assert before + timedelta(seconds=84) <= stored.next_check_at <= timezone.now() + timedelta(seconds=85)


def test_the_default_lease_is_the_call_timeouts_and_a_margin(settings):
    from b24sms.settings import base

    assert base.MESSAGES_SEND_LEASE == base.IDGTL_CONNECT_TIMEOUT + base.IDGTL_TIMEOUT + base.MESSAGES_SEND_LEASE_MARGIN
    assert base.MESSAGES_SEND_LEASE < 120  # not the 7 minutes it used to be


def test_a_lease_is_renewed_before_each_attempt(installation, provider, idgtl_api):
    make_message(installation, provider, 1)
    [claimed] = messages_claim(limit=10)
    Message.objects.update(next_check_at=timezone.now() + timedelta(seconds=1))

    messages_lease_renew(messages=[claimed])

    assert Message.objects.get().next_check_at > timezone.now() + timedelta(seconds=30)


def test_a_worker_whose_lease_lapsed_sends_nothing(installation, provider, idgtl_api, account):
    make_message(installation, provider, 1)
    claimed = messages_claim(limit=10)
    Message.objects.update(next_check_at=timezone.now() - timedelta(seconds=1))  # it stalled past its lease

    assert messages_send_batch(account=account, sender_name="MyShop", messages=claimed) == 0

    assert idgtl_api.sent == []  # the lease check runs before the HTTP attempt
    assert Message.objects.get().state == MessageState.SENDING  # left to the sweep's lookup


def test_a_worker_whose_messages_were_taken_over_and_claimed_again_sends_nothing(
    installation, provider, idgtl_api, account
):
    make_message(installation, provider, 1)
    stale_claim = messages_claim(limit=10)
    # Meanwhile: its lease lapsed, a sweep found i-dgtl without it, it was claimed again by another worker.
    Message.objects.update(
        state=MessageState.SENDING, send_attempts=2, next_check_at=timezone.now() + timedelta(seconds=60)
    )

    with pytest.raises(SendLeaseLost):
        messages_lease_renew(messages=stale_claim)
    assert messages_send_batch(account=account, sender_name="MyShop", messages=stale_claim) == 0
    assert idgtl_api.sent == []


def test_a_lapsed_lease_is_looked_up_not_resent(installation, provider, idgtl_api):
    message = make_message(installation, provider, 1)
    messages_claim(limit=10)  # ... and the worker died inside POST /message
    assert sending_run() == {"resolved": 0, "sent": 0}  # the lease still runs: nobody touches it

    Message.objects.update(next_check_at=timezone.now() - timedelta(seconds=1))
    idgtl_api.known = [
        {
            "messageUuid": "u-1",
            "externalMessageId": str(message.pk),
            "status": "delivered",
            "statusTime": "2026-01-01T10:00:00Z",
        }
    ]
    assert sending_run()["resolved"] == 1

    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED and message.idgtl_message_uuid == "u-1"
    assert idgtl_api.sent == []


def test_two_sweeps_never_take_the_same_lapsed_messages(installation, provider, idgtl_api):
    from providers.services import sending

    make_message(installation, provider, 1)
    messages_claim(limit=10)
    Message.objects.update(next_check_at=timezone.now() - timedelta(seconds=1))
    seen_by_first = list(sending._unknown_outcome_queryset(timezone.now()))

    second = sending._take_over(list(sending._unknown_outcome_queryset(timezone.now())), timezone.now())
    first = sending._take_over(seen_by_first, timezone.now())  # read before the second took them

    assert len(second) == 1 and first == []


@pytest.mark.parametrize(
    "sent_ago, due_in",
    [(0, 120), (119, 1), (121, 179), (299, 1), (301, 599), (899, 1), (901, 2699), (3601, 3600), (86000, 3600)],
)
def test_sent_messages_are_looked_up_on_a_growing_schedule(settings, sent_ago, due_in):
    settings.MESSAGES_RECONCILE_SCHEDULE = [120, 300, 900, 3600]
    settings.MESSAGES_RECONCILE_INTERVAL = 3600
    now = timezone.now()

    due = Message.reconcile_due_at(sent_at=now - timedelta(seconds=sent_ago), now=now)

    assert due == now + timedelta(seconds=due_in)


def test_a_sent_message_is_first_looked_up_two_minutes_after_sending(installation, provider, idgtl_api):
    make_message(installation, provider, 1)
    sending_run()
    message = Message.objects.get()
    assert message.state == MessageState.SENT
    assert message.next_check_at == message.sent_at + timedelta(seconds=120)
