"""GET /api/portals/{id}/usage/, /api/usage/, /api/portals/{id}/statement/, /api/statements/, /api/tariffs/:
answers, files, permissions, and bad input (a 400 naming the field, nothing stored)."""

import csv
import io
from datetime import date

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from b24sms.roles import VIEWER
from providers.models import MessageState, Tariff
from tests.providers_usage.conftest import at, make_message, move, received_on

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(installation, provider):
    messages = [
        received_on(make_message(installation, provider, n, text="a" * (150 * n)), at(2026, 11, 4 + n)) for n in (1, 2)
    ]
    move(messages, MessageState.SENDING)
    move(messages, MessageState.SENT)
    move(messages[:1], MessageState.DELIVERED)
    return messages


def get(client, url, **params):
    return client.get(url, params, HTTP_ACCEPT_LANGUAGE="en")


def test_portal_usage_by_day_and_month(api_client, installation, sent):
    url = f"/api/portals/{installation.pk}/usage/"
    response = get(api_client, url, date_from="2026-11-01", date_to="2026-11-30")
    assert response.status_code == 200
    body = response.json()
    assert body["time_zone"] == "Europe/Moscow" and body["group_by"] == "day"
    assert [
        (r["period"], r["provider_code"], r["sender_name"], r["state"], r["messages"], r["parts"]) for r in body["rows"]
    ] == [("2026-11-05", "provider1", "MyShop", "delivered", 1, 1), ("2026-11-06", "provider1", "MyShop", "sent", 1, 2)]
    monthly = get(api_client, url, date_from="2026-11-01", date_to="2026-11-30", group_by="month").json()["rows"]
    assert [(r["period"], r["state"], r["messages"], r["parts"]) for r in monthly] == [
        ("2026-11", "sent", 1, 2),
        ("2026-11", "delivered", 1, 1),
    ]  # states in pipeline order


def test_every_portal_with_a_portal_filter(api_client, installation, sent):
    rows = get(api_client, "/api/usage/", date_from="2026-11-01", date_to="2026-11-30").json()["rows"]
    assert {r["portal"] for r in rows} == {installation.pk}
    assert (
        get(
            api_client, "/api/usage/", date_from="2026-11-01", date_to="2026-11-30", portal=installation.pk + 1000
        ).json()["rows"]
        == []
    )


@pytest.mark.parametrize(
    "params, field",
    [
        ({"date_from": "2026-11-30", "date_to": "2026-11-01"}, "date_to"),
        ({"date_from": "2026-02-30"}, "date_from"),
        ({"date_to": "yesterday"}, "date_to"),
        ({"group_by": "week"}, "group_by"),
        ({"date_from": "2020-01-01", "date_to": "2026-11-01"}, "date_to"),
    ],
)
def test_bad_usage_parameters(api_client, installation, params, field):
    for url in (f"/api/portals/{installation.pk}/usage/", "/api/usage/"):
        response = get(api_client, url, **params)
        assert response.status_code == 400, response.content
        assert field in response.json()


def test_bad_portal_filter_and_unknown_portal(api_client, installation):
    assert "portal" in get(api_client, "/api/usage/", portal="x").json()
    assert get(api_client, "/api/portals/999999/usage/").status_code == 404
    assert get(api_client, "/api/portals/999999/statement/").status_code == 404


def test_statement_json_csv_xlsx(api_client, installation, sent):
    Tariff.objects.create(price_per_part="0.75", valid_from=date(2026, 1, 1))
    url = f"/api/portals/{installation.pk}/statement/"
    body = get(api_client, url, month="2026-11").json()
    assert (body["billable_parts"], body["amount"], body["final"]) == (3, "2.25", False)  # one message still "sent"
    assert body["pending_messages"] == 1
    response = api_client.get(url, {"month": "2026-11", "format": "csv"}, HTTP_ACCEPT_LANGUAGE="ru")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert f"statement-{installation.domain}-2026-11.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][0] == "Портал" and rows[-1][-1] == "2,25"
    response = get(api_client, url, month="2026-11", format="xlsx")
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(response.content)).active
    assert list(sheet.iter_rows(values_only=True))[-1][-1] == 2.25


def test_statements_of_every_portal(api_client, installation, sent):
    body = get(api_client, "/api/statements/", month="2026-11").json()
    assert [s["portal_domain"] for s in body] == [installation.domain]
    assert body[0]["unpriced_parts"] == 3  # no tariff at all
    response = get(api_client, "/api/statements/", month="2026-11", format="csv")
    assert "statement-all-portals-2026-11.csv" in response["Content-Disposition"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"month": "2026-13"}, "month"),
        ({"month": "11-2026"}, "month"),
        ({"month": "2999-01"}, "month"),
        ({"month": "2026-11", "format": "pdf"}, "format"),
    ],
)
def test_bad_statement_parameters(api_client, installation, params, field):
    for url in (f"/api/portals/{installation.pk}/statement/", "/api/statements/"):
        response = get(api_client, url, **params)
        assert response.status_code == 400, response.content
        assert list(response.json()) == [field]


def test_tariffs_api_and_its_bad_input(api_client, installation):
    created = api_client.post("/api/tariffs/", {"price_per_part": "0.45", "valid_from": "2026-01-01"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["billable_states"] == ["sent", "delivered", "undelivered"]
    assert created.json()["installation"] is None
    for payload, field in [
        ({"price_per_part": "-1", "valid_from": "2027-01-01"}, "price_per_part"),
        ({"price_per_part": "abc", "valid_from": "2027-01-01"}, "price_per_part"),
        ({"price_per_part": "1", "valid_from": "2026-06-01"}, "valid_from"),  # overlaps the open-ended one
        ({"price_per_part": "1", "valid_from": "2027-01-01", "valid_until": "2026-12-31"}, "valid_until"),
        ({"price_per_part": "1", "valid_from": "2027-01-01", "billable_states": ["paid"]}, "billable_states"),
        ({"price_per_part": "1", "valid_from": "2027-01-01", "installation": 999999}, "installation"),
    ]:
        response = api_client.post("/api/tariffs/", payload, format="json")
        assert response.status_code == 400, (payload, response.content)
        assert field in response.json(), (payload, response.json())
    assert Tariff.objects.count() == 1
    own = api_client.post(
        "/api/tariffs/",
        {"price_per_part": "0.40", "valid_from": "2026-06-01", "installation": installation.pk},
        format="json",
    )
    assert own.status_code == 201 and own.json()["portal_domain"] == installation.domain
    patched = api_client.patch(f"/api/tariffs/{created.json()['id']}/", {"price_per_part": "-0.1"}, format="json")
    assert patched.status_code == 400 and "price_per_part" in patched.json()
    assert str(Tariff.objects.get(pk=created.json()["id"]).price_per_part) == "0.4500"


def test_a_viewer_reads_usage_and_statements_but_cannot_set_prices(django_user_model, installation, sent):
    user = django_user_model.objects.create_user(username="viewer", password="viewer-pass-1234", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWER))
    client = APIClient()
    client.force_authenticate(user)
    assert client.get(f"/api/portals/{installation.pk}/usage/").status_code == 200
    assert client.get(f"/api/portals/{installation.pk}/statement/", {"month": "2026-11"}).status_code == 200
    assert client.get("/api/tariffs/").status_code == 200
    assert (
        client.post("/api/tariffs/", {"price_per_part": "1", "valid_from": "2026-01-01"}, format="json").status_code
        == 403
    )
    plain = django_user_model.objects.create_user(username="plain", password="plain-pass-1234", is_staff=True)
    client.force_authenticate(plain)
    assert client.get(f"/api/portals/{installation.pk}/usage/").status_code == 403
    assert client.get("/api/usage/").status_code == 403
    assert client.get("/api/statements/").status_code == 403


def test_schema_documents_usage_and_statements(api_client):
    paths = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path in (
        "/api/portals/{id}/usage/",
        "/api/usage/",
        "/api/portals/{id}/statement/",
        "/api/statements/",
        "/api/tariffs/",
    ):
        assert path in paths, sorted(paths)
