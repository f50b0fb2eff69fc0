"""Rows for the usage, tariff and statement tests: the portal and provider of the message tests, and helpers."""

from datetime import UTC, datetime

import pytest

from providers.models import Message, MessageState
from tests.providers_messages.conftest import (  # noqa: F401  (fixtures)
    account,
    crm_fields,
    encode,
    idgtl_api,
    installation,
    make_message,
    provider,
)


def at(year, month, day, hour=12, minute=0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def received_on(message: Message, moment: datetime) -> Message:
    """Make ``message`` one received at ``moment`` (created_at is auto_now_add)."""
    Message.objects.filter(pk=message.pk).update(created_at=moment)
    message.refresh_from_db()
    return message


def move(messages, state, **kwargs):
    """messages_change_state under a transaction, as the services call it."""
    from django.db import transaction

    from providers.services.timeline import ChangeSource, messages_change_state

    with transaction.atomic():
        messages_change_state(messages=list(messages), state=state, source=ChangeSource.SEND, detail="", **kwargs)


def usage(**filters) -> dict:
    """{(day, state): (messages, parts)} of every rollup row (zero rows included)."""
    from providers.models import UsageDay

    return {(row.day.isoformat(), row.state): (row.messages, row.parts) for row in UsageDay.objects.filter(**filters)}


def nonzero(table: dict) -> dict:
    return {key: value for key, value in table.items() if value != (0, 0)}


@pytest.fixture
def no_send(monkeypatch):
    monkeypatch.setattr("providers.services.sending.sending_schedule", lambda: None)


SENT_PATH = (MessageState.SENDING, MessageState.SENT)
