"""In a real browser: a portal's usage page (chart of SMS parts per day, table per month), the month's
overview, and a statement downloaded as XLSX and read back."""

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from providers.models import Message, MessageState, Tariff
from providers.services.usage import usage_today
from tests.providers_messages.conftest import installation, make_message, provider  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def last_month(installation, provider, monkeypatch):  # noqa: F811
    """A month of traffic on the portal: 1-6 messages a day, of 1-3 parts, most delivered."""
    from django.db import transaction

    from providers.services.timeline import ChangeSource, messages_change_state

    monkeypatch.setattr("providers.services.timeline._schedule_reports", lambda installation_ids: None)
    month = (usage_today().replace(day=1) - timedelta(days=1)).replace(day=1)
    chooser = random.Random(9)
    n = 0
    finals = [MessageState.DELIVERED] * 8 + [MessageState.UNDELIVERED, MessageState.FAILED]
    day = month
    while day.month == month.month:
        for _i in range(chooser.randint(1, 6)):
            n += 1
            message = make_message(installation, provider, n, text="Ваш заказ готов. " * chooser.randint(1, 7))
            Message.objects.filter(pk=message.pk).update(
                created_at=datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
            )
            message.refresh_from_db()
            final = chooser.choice(finals)
            with transaction.atomic():
                messages_change_state(messages=[message], state=MessageState.SENDING, source=ChangeSource.SEND)
                if final != MessageState.FAILED:
                    messages_change_state(messages=[message], state=MessageState.SENT, source=ChangeSource.SEND)
                messages_change_state(messages=[message], state=final, source=ChangeSource.SEND)
        day += timedelta(days=1)
    Tariff.objects.create(price_per_part="0.6500", valid_from=date(2020, 1, 1), comment="Base")
    return month


def test_usage_page_and_statement_download(logged_in, installation, last_month, screenshot, tmp_path):  # noqa: F811
    from openpyxl import load_workbook

    page = logged_in
    month = last_month.strftime("%Y-%m")
    page.goto(f"/admin/providers/usageday/?month={month}")
    assert installation.domain in page.inner_text("#b24-usage-portals")
    screenshot(page, "usage-portals")
    page.click(f"#b24-usage-portals a:text('{installation.domain}')")
    page.wait_for_selector("#b24-usage-chart svg")
    days = (last_month.replace(day=28) + timedelta(days=4)).replace(day=1) - last_month
    assert page.locator("#b24-usage-chart g.bar").count() == days.days
    assert page.locator("#b24-usage-chart rect").count() >= days.days  # every day has traffic
    parts = sum(
        int(value)
        for value in page.locator("#b24-usage-chart g.bar").evaluate_all("bars => bars.map(b => b.dataset.parts)")
    )
    assert f": {parts}" in page.inner_text("#b24-usage-chart h2")
    assert page.locator("#b24-usage-months tbody tr").count() == 12
    screenshot(page, "usage-portal")

    with page.expect_download() as download_info:
        page.click("#b24-download-xlsx")
    download = download_info.value
    assert download.suggested_filename == f"statement-{installation.domain}-{month}.xlsx"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    rows = list(load_workbook(target).active.iter_rows(values_only=True))
    assert rows[0][0] == "Portal"
    total = rows[-1]
    assert total[8] == parts  # SMS parts of the month, as on the chart
    assert abs(total[-1] - round(total[10] * 0.65, 2)) < 0.006  # billable parts × 0.65 RUB
