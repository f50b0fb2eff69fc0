"""Tariffs (rules, overlaps) and monthly statements (lines, amounts, CSV with Cyrillic, XLSX read back)."""

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from providers.models import MessageState, Tariff
from providers.services.statements import (
    month_parse,
    statement_as_dict,
    statement_build,
    statements_build,
    statements_csv,
    statements_xlsx,
)
from providers.services.tariffs import tariff_save
from tests.providers_usage.conftest import at, make_message, move, received_on

pytestmark = pytest.mark.django_db


def tariff(price, start, until=None, installation=None, states=None):
    kwargs = {"billable_states": states} if states else {}
    return tariff_save(
        tariff=Tariff(
            installation=installation, price_per_part=Decimal(price), valid_from=start, valid_until=until, **kwargs
        )
    )


@pytest.fixture
def november(installation, provider):
    """Nov 3: 2 delivered (2 + 1 parts), 1 undelivered (1); Nov 20: 1 delivered (3 parts), 1 failed (2)."""

    def sent(n, day, text, final):
        message = received_on(make_message(installation, provider, n, text=text), at(2026, 11, day))
        move([message], MessageState.SENDING)
        move([message], MessageState.SENT if final != MessageState.FAILED else MessageState.FAILED)
        if final not in (MessageState.FAILED, MessageState.SENT):
            move([message], final)
        return message

    return [
        sent(1, 3, "a" * 200, MessageState.DELIVERED),
        sent(2, 3, "b", MessageState.DELIVERED),
        sent(3, 3, "c", MessageState.UNDELIVERED),
        sent(4, 20, "ы" * 150, MessageState.DELIVERED),
        sent(5, 20, "d" * 300, MessageState.FAILED),
    ]


def test_default_tariff_bills_what_idgtl_accepted(november, installation):
    tariff("0.5", date(2026, 1, 1))
    statement = statement_build(installation=installation, month=date(2026, 11, 1))
    lines = [
        (line.messages, line.parts, line.billable_messages, line.billable_parts, line.amount)
        for line in statement.lines
    ]
    assert lines == [(5, 9, 4, 7, Decimal("3.50"))]
    assert (statement.messages, statement.parts, statement.billable_parts, statement.amount) == (
        5,
        9,
        7,
        Decimal("3.50"),
    )
    assert statement.pending_messages == 0 and statement.final  # November 2026 is over in this test's clock


def test_a_tariff_change_mid_month_splits_the_line_and_a_portal_tariff_wins(november, installation):
    tariff("1.00", date(2026, 1, 1), until=date(2026, 11, 10))
    tariff("2.00", date(2026, 11, 11))
    tariff("0.1234", date(2026, 11, 15), installation=installation, states=["delivered"])
    statement = statement_build(installation=installation, month=date(2026, 11, 1))
    lines = [
        (line.first_day.day, line.last_day.day, line.price_per_part, line.billable_parts, line.amount)
        for line in statement.lines
    ]
    assert lines == [
        (3, 3, Decimal("1.0000"), 4, Decimal("4.00")),  # default until Nov 10
        (20, 20, Decimal("0.1234"), 3, Decimal("0.37")),
    ]  # portal's own: delivered only (3 × 0.1234)
    assert statement.amount == Decimal("4.37")


def test_days_without_a_tariff_are_counted_but_not_priced(november, installation):
    tariff("1", date(2026, 11, 15))
    statement = statement_build(installation=installation, month=date(2026, 11, 1))
    assert statement.unpriced_parts == 4
    assert statement_as_dict(statement)["lines"][0]["amount"] is None
    assert statement.amount == Decimal("3.00")


def test_statement_json_is_exact(november, installation):
    tariff("0.3333", date(2026, 1, 1))
    data = statement_as_dict(statement_build(installation=installation, month=date(2026, 11, 1)))
    assert data["month"] == "2026-11" and data["currency"] == "RUB"
    assert data["lines"][0]["price_per_part"] == "0.3333"
    assert data["amount"] == "2.33"  # 7 × 0.3333 = 2.3331, to kopecks half up


def test_csv_opens_with_cyrillic_intact(november, installation):
    installation.domain = "портал.bitrix24.ru"
    installation.save()
    tariff("1.5", date(2026, 1, 1))
    with translation.override("ru"):
        content = statements_csv(statements_build(month=date(2026, 11, 1)))
    assert content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the file as UTF-8
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][0] == "Портал" and "Сумма, руб." in rows[0]
    assert rows[1][0] == "портал.bitrix24.ru"
    assert rows[1][-1] == "10,50"  # 7 × 1.5, decimal comma for Excel in Russian
    assert rows[-1][2] == "Итого:"


def test_xlsx_reads_back(november, installation, provider):
    from openpyxl import load_workbook

    tariff("1.25", date(2026, 1, 1))
    with translation.override("ru"):
        content = statements_xlsx(
            [statement_build(installation=installation, month=date(2026, 11, 1))], month=date(2026, 11, 1)
        )
    sheet = load_workbook(io.BytesIO(content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "Портал"
    assert rows[1][:4] == (installation.domain, "2026-11", provider.code, "MyShop")
    assert rows[1][7:] == (5, 9, 4, 7, 8.75)
    assert rows[2][2] == "Итого:" and rows[2][-1] == 8.75


def test_xlsx_of_every_portal_has_a_summary(november, installation):
    from openpyxl import load_workbook

    tariff("1", date(2026, 1, 1))
    with translation.override("en"):
        content = statements_xlsx(statements_build(month=date(2026, 11, 1)), month=date(2026, 11, 1))
    workbook = load_workbook(io.BytesIO(content))
    assert workbook.sheetnames == ["2026-11"]  # one portal: one sheet


@pytest.mark.parametrize("value", ["2026-13", "2026-1", "26-11", "november", "", "2026-11-01"])
def test_bad_months(value):
    with pytest.raises(ValueError):
        month_parse(value, today=date(2026, 12, 2))


def test_a_month_that_has_not_begun():
    with pytest.raises(ValueError):
        month_parse("2027-01", today=date(2026, 12, 2))
    assert month_parse("2026-12", today=date(2026, 12, 2)) == date(2026, 12, 1)


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"price_per_part": Decimal("-0.01")}, "price_per_part"),
        ({"price_per_part": None}, "price_per_part"),
        ({"price_per_part": Decimal("0.00001")}, "price_per_part"),
        ({"billable_states": []}, "billable_states"),
        ({"billable_states": ["received"]}, "billable_states"),
        ({"billable_states": ["delivered", "paid"]}, "billable_states"),
        ({"valid_until": date(2026, 1, 1)}, "valid_until"),
    ],
)
def test_tariff_rules(fields, field):
    values = {"price_per_part": Decimal("1"), "valid_from": date(2026, 2, 1), **fields}
    with pytest.raises(ValidationError) as refused:
        tariff_save(tariff=Tariff(**values))
    assert field in refused.value.error_dict
    assert not Tariff.objects.exists()


def test_overlapping_tariffs_are_refused_per_scope(installation):
    tariff("1", date(2026, 1, 1), until=date(2026, 6, 30))
    for start, until in [
        (date(2026, 6, 30), None),
        (date(2025, 1, 1), date(2026, 1, 1)),
        (date(2026, 3, 1), date(2026, 3, 2)),
    ]:
        with pytest.raises(ValidationError) as refused:
            tariff("2", start, until=until)
        assert "valid_from" in refused.value.error_dict
    tariff("2", date(2026, 7, 1))  # right after: fine
    tariff("3", date(2026, 3, 1), installation=installation)  # another scope: fine
    with pytest.raises(ValidationError):
        tariff("4", date(2026, 2, 1), installation=installation)  # open-ended, meets the portal's own
    assert Tariff.objects.count() == 3


def test_changing_a_tariff_is_checked_against_the_others():
    first = tariff("1", date(2026, 1, 1), until=date(2026, 1, 31))
    tariff("2", date(2026, 2, 1))
    first.valid_until = date(2026, 2, 5)
    with pytest.raises(ValidationError):
        tariff_save(tariff=first)
    first.refresh_from_db()
    assert first.valid_until == date(2026, 1, 31)
