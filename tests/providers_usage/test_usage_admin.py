"""Admin: the usage pages (chart, month table), statement downloads (one portal, every portal), tariff forms."""

import io
from datetime import date

import pytest
from django.contrib.auth.models import Group, Permission

from b24sms.roles import VIEWER
from providers.models import MessageState, Tariff
from tests.providers_usage.conftest import at, make_message, move, received_on

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_en(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="boss", email="b@example.com", password="boss-pass-1234")
    client.force_login(user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def delivered(installation, provider):
    messages = [
        received_on(make_message(installation, provider, n, text="x" * (100 * n)), at(2026, 11, n + 1))
        for n in (1, 2, 3)
    ]
    move(messages, MessageState.SENDING)
    move(messages, MessageState.SENT)
    move(messages, MessageState.DELIVERED)
    Tariff.objects.create(price_per_part="0.50", valid_from=date(2026, 1, 1))
    return messages


def test_usage_index_lists_the_portals_of_the_month(admin_client_en, installation, delivered):
    response = admin_client_en.get("/admin/providers/usageday/", {"month": "2026-11"})
    assert response.status_code == 200
    page = response.content.decode()
    assert installation.domain in page and "November 2026" in page
    assert "2.50" in page  # 5 parts (1 + 2 + 2) × 0.50


def test_portal_page_has_a_chart_and_a_table_per_month(
    admin_client_en, installation, delivered, django_assert_max_num_queries
):
    with django_assert_max_num_queries(45):  # 12 months + the chosen one, each two small queries: no per-row query
        response = admin_client_en.get(f"/admin/providers/usageday/portal/{installation.pk}/", {"month": "2026-11"})
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<g class="bar"') == 30
    assert 'data-day="2026-11-04" data-parts="2"' in page
    assert "By month" in page and "provider1" in page


def test_unknown_month_or_portal_is_a_404(admin_client_en, installation):
    assert admin_client_en.get("/admin/providers/usageday/", {"month": "2026-13"}).status_code == 404
    assert admin_client_en.get("/admin/providers/usageday/portal/999999/").status_code == 404
    assert admin_client_en.get("/admin/providers/usageday/statement/", {"format": "pdf"}).status_code == 404


def test_statement_downloads_for_one_portal_and_for_all(admin_client_en, installation, delivered):
    from openpyxl import load_workbook

    url = "/admin/providers/usageday/statement/"
    one = admin_client_en.get(url, {"month": "2026-11", "format": "xlsx", "portal": installation.pk})
    assert one.status_code == 200
    assert f"statement-{installation.domain}-2026-11.xlsx" in one["Content-Disposition"]
    rows = list(load_workbook(io.BytesIO(one.content)).active.iter_rows(values_only=True))
    assert rows[-1][-1] == 2.5
    every = admin_client_en.get(url, {"month": "2026-11", "format": "csv"})
    assert every.status_code == 200 and every.content.startswith(b"\xef\xbb\xbf")
    assert "statement-all-portals-2026-11.csv" in every["Content-Disposition"]


def test_tariff_form_errors_store_nothing(admin_client_en, installation):
    url = "/admin/providers/tariff/add/"
    base = {
        "price_per_part": "0.5",
        "billable_states": ["sent", "delivered", "undelivered"],
        "valid_from": "2026-01-01",
        "valid_until": "",
        "installation": "",
        "comment": "",
    }
    assert admin_client_en.post(url, base).status_code == 302
    negative = admin_client_en.post(url, {**base, "price_per_part": "-1", "valid_from": "2027-01-01"})
    assert negative.status_code == 200 and "negative" in negative.content.decode()
    overlap = admin_client_en.post(url, {**base, "valid_from": "2026-05-01"})
    assert overlap.status_code == 200 and "overlaps" in overlap.content.decode()
    no_states = admin_client_en.post(url, {**base, "valid_from": "2027-01-01", "billable_states": []})
    assert no_states.status_code == 200
    assert Tariff.objects.count() == 1
    assert admin_client_en.get("/admin/providers/tariff/").status_code == 200


def test_viewer_sees_usage_and_downloads_but_cannot_change_tariffs(client, django_user_model, installation, delivered):
    viewer = django_user_model.objects.create_user(username="v", password="viewer-pass-1234", is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWER))
    client.force_login(viewer)
    assert client.get(f"/admin/providers/usageday/portal/{installation.pk}/").status_code == 200
    assert client.get("/admin/providers/usageday/statement/", {"month": "2026-11", "format": "csv"}).status_code == 200
    assert client.get("/admin/providers/tariff/add/").status_code == 403
    blind = django_user_model.objects.create_user(username="u", password="usage-pass-1234", is_staff=True)
    blind.user_permissions.add(Permission.objects.get(codename="view_usageday"))
    client.force_login(blind)
    page = client.get("/admin/providers/usageday/", {"month": "2026-11"})
    assert page.status_code == 200 and "b24-statements-all" not in page.content.decode()  # no amounts, no downloads
    assert client.get("/admin/providers/usageday/statement/", {"month": "2026-11"}).status_code == 403


def test_message_admin_shows_parts(admin_client_en, installation, provider):
    message = make_message(installation, provider, 1, text="€" * 81)
    page = admin_client_en.get(f"/admin/providers/message/{message.pk}/change/").content.decode()
    assert "2 (GSM-7)" in page
