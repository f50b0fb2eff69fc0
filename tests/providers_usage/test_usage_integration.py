"""End to end (real worker, PostgreSQL, Redis, fake Bitrix24 and fake i-dgtl over HTTP): SMS posted to the
HANDLER are sent and delivered, then their usage and the month's statement are read back through the API."""

import csv
import io

import pytest
from django.db.models import Count, Sum
from rest_framework.test import APIClient

from providers.models import Message, MessageState
from providers.services.usage import usage_today
from tests.providers_messages.test_integration import portal_setup  # noqa: F401
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def api(django_user_model):
    user = django_user_model.objects.create_superuser(
        username="accountant", email="a@example.com", password="accountant-pass-1"
    )
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_handler_to_usage_and_statement(portal_setup, bitrix24, idgtl, api):  # noqa: F811
    portal, installation = portal_setup
    texts = {
        "+79990002001": "Your code: 1234",  # GSM-7, 1 part
        "+79990002002": "Заказ №1 готов. " * 5,  # UCS-2, 80 characters: 2 parts
        "+79990002003": "{x} " * 50,  # GSM-7, the braces count two: 300 septets, 2 parts
        "+79990000000": "never arrives",  # undelivered (the fake's ...0000 numbers)
    }
    for number, text in texts.items():
        _message_id, response = bitrix24.send_sms(portal, "sms1", number, text)
        assert response.status_code == 200, response.text
    _mid, too_long = bitrix24.send_sms(portal, "sms1", "+79990002004", "я" * 671)
    assert too_long.status_code == 400 and "message_body" in too_long.json()

    wait_until(
        lambda: Message.objects.filter(state=MessageState.SENT).count() == 4,
        timeout=60,
        message="the four messages to be sent",
    )
    assert Message.objects.count() == 4  # the long one was never stored
    stored = {m.message_to: (m.encoding, m.parts) for m in Message.objects.all()}
    assert stored == {
        "+79990002001": ("gsm7", 1),
        "+79990002002": ("ucs2", 2),
        "+79990002003": ("gsm7", 2),
        "+79990000000": ("gsm7", 1),
    }
    for number in ("+79990002001", "+79990002002", "+79990002003"):
        idgtl.set_message_status(Message.objects.get(message_to=number).idgtl_message_uuid, "delivered")
    idgtl.set_message_status(Message.objects.get(message_to="+79990000000").idgtl_message_uuid, "undelivered")
    wait_until(
        lambda: not Message.objects.exclude(state__in=(MessageState.DELIVERED, MessageState.UNDELIVERED)).exists(),
        timeout=60,
        message="every message to reach its final state",
    )

    created = api.post("/api/tariffs/", {"price_per_part": "0.55", "valid_from": "2020-01-01"}, format="json")
    assert created.status_code == 201, created.content
    today = usage_today()
    usage = api.get(
        f"/api/portals/{installation.pk}/usage/", {"date_from": today.isoformat(), "date_to": today.isoformat()}
    ).json()
    assert {(r["state"], r["messages"], r["parts"]) for r in usage["rows"]} == {
        ("delivered", 3, 5),
        ("undelivered", 1, 1),
    }
    assert all(r["period"] == today.isoformat() and r["sender_name"] == "MyShop" for r in usage["rows"])
    truth = dict(Message.objects.values_list("state").annotate(n=Count("id"), p=Sum("parts")).values_list("state", "p"))
    assert truth == {"delivered": 5, "undelivered": 1}

    statement = api.get(f"/api/portals/{installation.pk}/statement/", {"month": today.strftime("%Y-%m")}).json()
    assert (statement["messages"], statement["parts"], statement["billable_parts"]) == (4, 6, 6)
    assert statement["amount"] == "3.30" and statement["pending_messages"] == 0
    response = api.get(
        f"/api/portals/{installation.pk}/statement/",
        {"month": today.strftime("%Y-%m"), "format": "csv"},
        HTTP_ACCEPT_LANGUAGE="ru",
    )
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][0] == "Портал" and rows[-1][-1] == "3,30"
    from openpyxl import load_workbook

    xlsx = api.get(f"/api/portals/{installation.pk}/statement/", {"month": today.strftime("%Y-%m"), "format": "xlsx"})
    assert list(load_workbook(io.BytesIO(xlsx.content)).active.iter_rows(values_only=True))[-1][-1] == 3.3
