"""Rollups under concurrency on PostgreSQL: workers finalising messages of the same portal and day at the
same moment (each its own connection and transactions) all count, once, with no lost update."""

import threading

import pytest
from django.db import transaction
from django.db.models import Count, Sum

from providers.models import Message, MessageState, UsageDay
from providers.services.delivery import message_apply_idgtl_status, messages_fail_expired
from providers.services.timeline import ChangeSource
from tests.concurrency import run_together
from tests.providers_usage.conftest import at, make_message, move

pytestmark = pytest.mark.integration

N = 120


@pytest.fixture(autouse=True)
def no_reports(monkeypatch):
    """Status reports to Bitrix24 are not what is tested here (there is no portal to take them)."""
    monkeypatch.setattr("providers.services.timeline._schedule_reports", lambda installation_ids: None)


@pytest.fixture
def sent_messages(transactional_db, installation, provider):
    messages = [make_message(installation, provider, n, text="b" * (60 * (n % 4 + 1))) for n in range(N)]
    Message.objects.update(created_at=at(2026, 11, 12, 9))
    for message in messages:
        message.refresh_from_db()
    move(messages, MessageState.SENDING)
    for message in messages:
        message.idgtl_message_uuid = f"uuid-{message.pk}"
    move(messages, MessageState.SENT, update_fields=("idgtl_message_uuid",))
    return messages


def truth() -> dict:
    """What the messages table says, per state (the ground truth the rollups must equal)."""
    return {
        row["state"]: (row["n"], row["p"])
        for row in Message.objects.exclude(state=MessageState.RECEIVED)
        .values("state")
        .annotate(n=Count("id"), p=Sum("parts"))
    }


def rollups() -> dict:
    return {
        state: (n, p)
        for state, n, p in UsageDay.objects.filter(messages__gt=0)
        .values_list("state")
        .annotate(n=Sum("messages"), p=Sum("parts"))
        .values_list("state", "n", "p")
    }


def test_two_workers_finalising_the_same_portal_and_day(sent_messages):
    """Each worker delivers its half one message per transaction, and both also try the same 20 messages
    (as a redelivered task would): every message is counted once, where it ended."""
    halves = [sent_messages[: N // 2], sent_messages[N // 2 :]]
    shared = sent_messages[:20]
    status = {0: "delivered", 1: "undelivered"}
    turn = iter(range(2))
    lock = threading.Lock()

    def worker():
        with lock:
            index = next(turn)
        changed = 0
        for message in halves[index] + shared:
            changed += message_apply_idgtl_status(message=message, status=status[index], source=ChangeSource.CALLBACK)
        return changed

    changed = run_together(worker, 2, timeout=120)
    assert sum(changed) == N  # the 20 shared ones changed once, by whichever worker came first
    assert rollups() == truth()
    assert not UsageDay.objects.filter(messages__lt=0).exists()
    assert sum(n for n, _p in rollups().values()) == N


def test_batches_and_single_changes_racing(sent_messages):
    """A worker failing expired messages in a batch while another delivers some of the same messages one by one."""
    Message.objects.update(sending_started_at=at(2026, 11, 12, 9))
    targets = sent_messages[::2]

    def expire():
        with transaction.atomic():
            return messages_fail_expired(before=at(2030, 1, 1))

    def deliver():
        return sum(
            message_apply_idgtl_status(message=m, status="delivered", source=ChangeSource.CALLBACK) for m in targets
        )

    calls = iter([expire, deliver])
    lock = threading.Lock()

    def worker():
        with lock:
            work = next(calls)
        return work()

    run_together(worker, 2, timeout=120)
    assert rollups() == truth()
    assert sum(n for n, _p in rollups().values()) == N
    assert set(rollups()) <= {"failed", "delivered", "sent"}
