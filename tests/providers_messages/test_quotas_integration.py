"""Quotas under concurrency on PostgreSQL: workers claiming messages of the same portal at the same moment
(each its own connection and transaction) never spend more than the monthly limit, nor write one number
more often than the per-recipient limit."""

import pytest

from providers.models import Message, MessageState
from providers.services.sending import messages_claim
from tests.concurrency import run_together
from tests.providers_messages.conftest import make_message

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def no_reports(monkeypatch):
    monkeypatch.setattr("providers.services.timeline._schedule_reports", lambda installation_ids: None)


def test_two_workers_cannot_both_spend_the_last_parts(transactional_db, installation, provider):
    from django.db import connection

    assert connection.vendor == "postgresql", "run with DATABASE_URL=postgres://..."
    installation.quota_monthly_parts = 25
    installation.save()
    for n in range(60):
        make_message(installation, provider, n, text="b" * (100 * (n % 2 + 1)))  # 1 or 2 parts

    def worker():
        claimed = []
        for _ in range(15):
            claimed += messages_claim(limit=2)
        return claimed

    results = run_together(worker, n=4)
    claimed = [m.pk for batch in results for m in batch]
    assert len(claimed) == len(set(claimed))
    spent = sum(Message.objects.filter(state=MessageState.SENDING).values_list("parts", flat=True))
    assert 24 <= spent <= 25  # messages of 1 and 2 parts: never more than the limit, and no part left unused
    assert Message.objects.filter(state=MessageState.FAILED).count() == 60 - len(claimed)
    assert all(
        "monthly SMS parts limit" in e
        for e in Message.objects.filter(state=MessageState.FAILED).values_list("error_message", flat=True)
    )


def test_two_workers_cannot_exceed_the_per_recipient_limit(transactional_db, installation, provider):
    installation.quota_recipient_per_hour = 3
    installation.save()
    for n in range(20):
        make_message(installation, provider, n, destination="79990001111")

    def worker():
        claimed = []
        for _ in range(10):
            claimed += messages_claim(limit=1)
        return claimed

    run_together(worker, n=4)
    assert Message.objects.filter(state=MessageState.SENDING).count() == 3
    assert Message.objects.filter(state=MessageState.FAILED).count() == 17
