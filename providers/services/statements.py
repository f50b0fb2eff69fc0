"""Monthly statements: what a portal sent in a month and what it costs, from the usage rollups and tariffs.

A statement line is one provider and sender name under one tariff (two lines when the tariff changed
during the month): its messages and SMS parts in every counted state, the billable ones (the states of
the tariff in force each day, ``Tariff.billable_states``), the price per part and the amount, rounded
to kopecks per line (half up); the total is the sum of the lines. A day with no tariff (no portal tariff,
no default one) is counted as billable by the default states but priced at nothing: ``unpriced_parts``.

Days are USAGE_TIME_ZONE days of receipt, like the rollups. A month's statement is ``final`` once the
month is over and none of its messages is still on its way (sending, or sent without a final status);
until then later delivery reports may still move messages between states (a message i-dgtl reports as
not sent leaves the billable parts).

Files: CSV for Excel (UTF-8 with a BOM so Cyrillic opens right, ``;`` between columns, numbers with
the decimal separator of the active language) and XLSX (openpyxl; numbers as numbers).
"""

import calendar
import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.utils import formats
from django.utils.translation import gettext as _

from providers.models import MessageState, UsageDay, default_billable_states
from providers.services.tariffs import tariff_for_day, tariffs_in_force
from providers.services.usage import usage_today

KOPECK = Decimal("0.01")
PENDING_STATES = (MessageState.SENDING, MessageState.SENT)


@dataclass
class StatementLine:
    provider_id: int
    provider_code: str
    sender_name: str
    tariff_id: int | None
    price_per_part: Decimal | None
    first_day: date
    last_day: date
    messages: int = 0
    parts: int = 0
    billable_messages: int = 0
    billable_parts: int = 0

    @property
    def amount(self) -> Decimal | None:
        if self.price_per_part is None:
            return None
        return (self.price_per_part * self.billable_parts).quantize(KOPECK, rounding=ROUND_HALF_UP)


@dataclass
class Statement:
    installation_id: int
    portal_domain: str
    month: date  # its first day
    lines: list[StatementLine] = field(default_factory=list)
    pending_messages: int = 0

    @property
    def last_day(self) -> date:
        return self.month.replace(day=calendar.monthrange(self.month.year, self.month.month)[1])

    @property
    def final(self) -> bool:
        return self.last_day < usage_today() and self.pending_messages == 0

    def _sum(self, name) -> int:
        return sum(getattr(line, name) for line in self.lines)

    @property
    def messages(self) -> int:
        return self._sum("messages")

    @property
    def parts(self) -> int:
        return self._sum("parts")

    @property
    def billable_messages(self) -> int:
        return self._sum("billable_messages")

    @property
    def billable_parts(self) -> int:
        return self._sum("billable_parts")

    @property
    def unpriced_parts(self) -> int:
        return sum(line.billable_parts for line in self.lines if line.price_per_part is None)

    @property
    def amount(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.amount is not None), Decimal("0.00"))


def month_parse(value: str, *, today: date) -> date:
    """The first day of a YYYY-MM month that has begun; ValueError (its text for the user) otherwise."""
    try:
        year, month = value.split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError(value)
        first = date(int(year), int(month), 1)
    except (ValueError, TypeError, AttributeError):
        raise ValueError(_("A month as YYYY-MM, e.g. 2026-11.")) from None
    if first > today:
        raise ValueError(_("This month has not begun."))
    return first


def month_last_day(month: date) -> date:
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


def statement_build(*, installation, month: date) -> Statement:
    """The statement of one portal for the month starting on ``month`` (empty when it sent nothing)."""
    built = _build(month=month, installations={installation.pk: installation.domain})
    return built[0]


def statements_build(*, month: date) -> list[Statement]:
    """The statements of every portal with usage in that month, by domain."""
    return _build(month=month, installations=None)


def _build(*, month: date, installations: dict[int, str] | None) -> list[Statement]:
    first, last = month, month_last_day(month)
    rows = UsageDay.objects.filter(day__gte=first, day__lte=last).order_by()
    if installations is not None:
        rows = rows.filter(installation_id__in=list(installations))
    rows = list(
        rows.values_list(
            "installation_id",
            "installation__domain",
            "day",
            "provider_id",
            "provider__code",
            "sender_name",
            "state",
            "messages",
            "parts",
        )
    )
    domains = dict(installations or {})
    for row in rows:
        domains.setdefault(row[0], row[1])
    tariffs = tariffs_in_force(installation_ids=domains, first=first, last=last)
    statements = {
        pk: Statement(installation_id=pk, portal_domain=domain, month=first) for pk, domain in domains.items()
    }
    lines: dict[tuple, StatementLine] = {}
    default_states = set(default_billable_states())
    tariff_cache = {}
    for installation_id, _domain, day, provider_id, provider_code, sender_name, state, messages, parts in rows:
        if not messages and not parts:
            continue
        key = (installation_id, day)
        if key not in tariff_cache:
            tariff_cache[key] = tariff_for_day(tariffs, installation_id, day)
        tariff = tariff_cache[key]
        line_key = (installation_id, provider_code, provider_id, sender_name, tariff.pk if tariff else None)
        line = lines.get(line_key)
        if line is None:
            line = lines[line_key] = StatementLine(
                provider_id=provider_id,
                provider_code=provider_code,
                sender_name=sender_name,
                tariff_id=tariff.pk if tariff else None,
                price_per_part=tariff.price_per_part if tariff else None,
                first_day=day,
                last_day=day,
            )
            statements[installation_id].lines.append(line)
        line.first_day, line.last_day = min(line.first_day, day), max(line.last_day, day)
        line.messages += messages
        line.parts += parts
        if state in (set(tariff.billable_states) if tariff else default_states):
            line.billable_messages += messages
            line.billable_parts += parts
        if state in PENDING_STATES:
            statements[installation_id].pending_messages += messages
    for statement in statements.values():
        statement.lines.sort(key=lambda line: (line.provider_code, line.sender_name, line.first_day))
    return sorted(statements.values(), key=lambda s: (s.portal_domain, s.installation_id))


# --- JSON ----------------------------------------------------------------------------------------------
def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _price(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def statement_as_dict(statement: Statement) -> dict:
    """The JSON of the API: decimals as strings (exact), days as ISO dates."""
    return {
        "portal": statement.installation_id,
        "portal_domain": statement.portal_domain,
        "month": statement.month.strftime("%Y-%m"),
        "currency": "RUB",
        "final": statement.final,
        "pending_messages": statement.pending_messages,
        "lines": [
            {
                "provider": line.provider_id,
                "provider_code": line.provider_code,
                "sender_name": line.sender_name,
                "tariff": line.tariff_id,
                "price_per_part": _price(line.price_per_part),
                "first_day": line.first_day.isoformat(),
                "last_day": line.last_day.isoformat(),
                "messages": line.messages,
                "parts": line.parts,
                "billable_messages": line.billable_messages,
                "billable_parts": line.billable_parts,
                "amount": _money(line.amount),
            }
            for line in statement.lines
        ],
        "messages": statement.messages,
        "parts": statement.parts,
        "billable_messages": statement.billable_messages,
        "billable_parts": statement.billable_parts,
        "unpriced_parts": statement.unpriced_parts,
        "amount": _money(statement.amount),
    }


# --- files ---------------------------------------------------------------------------------------------
def _headers() -> list[str]:
    return [
        _("Portal"),
        _("Month"),
        _("Provider"),
        _("Sender name"),
        _("First day"),
        _("Last day"),
        _("Price per part, RUB"),
        _("Messages"),
        _("SMS parts"),
        _("Billable messages"),
        _("Billable parts"),
        _("Amount, RUB"),
    ]


def _table(statements: list[Statement]):
    """Rows of typed values (str, date, int, Decimal or None): lines, then a total row per portal."""
    for statement in statements:
        month = statement.month.strftime("%Y-%m")
        for line in statement.lines:
            yield (
                "line",
                [
                    statement.portal_domain,
                    month,
                    line.provider_code,
                    line.sender_name,
                    line.first_day,
                    line.last_day,
                    line.price_per_part,
                    line.messages,
                    line.parts,
                    line.billable_messages,
                    line.billable_parts,
                    line.amount,
                ],
            )
        yield (
            "total",
            [
                statement.portal_domain,
                month,
                _("Total:"),
                "",
                None,
                None,
                None,
                statement.messages,
                statement.parts,
                statement.billable_messages,
                statement.billable_parts,
                statement.amount,
            ],
        )


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        places = 4 if value.as_tuple().exponent < -2 else 2
        return formats.number_format(value, decimal_pos=places, use_l10n=True, force_grouping=False)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def statements_csv(statements: list[Statement]) -> bytes:
    """UTF-8 with a BOM (Excel then reads Cyrillic right), ';' between columns (Excel's list separator
    in the Russian locale), decimals with the active language's separator."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(_headers())
    for _kind, row in _table(statements):
        writer.writerow([_csv_cell(value) for value in row])
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


def _sheet_title(name: str, taken: set) -> str:
    base = _SHEET_FORBIDDEN.sub("_", name)[:31] or "-"
    title, n = base, 2
    while title.lower() in taken:
        suffix = f" ({n})"
        title, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(title.lower())
    return title


def statements_xlsx(statements: list[Statement], *, month: date) -> bytes:
    """One sheet with every line (and a total per portal); with several portals, also a summary sheet first."""
    # Here, not at the top: openpyxl takes 0.1 s to import and only an XLSX download needs it.
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    taken: set = set()
    bold = Font(bold=True)
    line_formats = {5: "yyyy-mm-dd", 6: "yyyy-mm-dd", 7: "#,##0.0000", 12: "#,##0.00"}

    def fill(sheet, headers, rows, widths, number_formats):
        sheet.append(headers)
        for cell in sheet[1]:
            cell.font = bold
        for kind, row in rows:
            sheet.append(row)  # Decimal, int, date: typed cells
            if kind == "total":
                for cell in sheet[sheet.max_row]:
                    cell.font = bold
        for column, number_format in number_formats.items():
            if column <= len(headers):
                for (cell,) in sheet.iter_rows(min_row=2, min_col=column, max_col=column):
                    cell.number_format = number_format
        for index, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"

    widths = [28, 9, 18, 13, 12, 12, 14, 11, 11, 13, 13, 14]
    sheet = workbook.active
    if len(statements) > 1:
        sheet.title = _sheet_title(_("Summary"), taken)
        summary_headers = [
            _("Portal"),
            _("Month"),
            _("Messages"),
            _("SMS parts"),
            _("Billable messages"),
            _("Billable parts"),
            _("Amount, RUB"),
        ]
        summary_rows = [
            (
                "line",
                [
                    s.portal_domain,
                    s.month.strftime("%Y-%m"),
                    s.messages,
                    s.parts,
                    s.billable_messages,
                    s.billable_parts,
                    s.amount,
                ],
            )
            for s in statements
        ]
        summary_rows.append(
            (
                "total",
                [
                    _("Total:"),
                    month.strftime("%Y-%m"),
                    sum(s.messages for s in statements),
                    sum(s.parts for s in statements),
                    sum(s.billable_messages for s in statements),
                    sum(s.billable_parts for s in statements),
                    sum((s.amount for s in statements), Decimal("0.00")),
                ],
            )
        )
        fill(sheet, summary_headers, summary_rows, [28, 9, 11, 11, 13, 13, 14], {7: "#,##0.00"})
        for statement in statements:
            fill(
                workbook.create_sheet(_sheet_title(statement.portal_domain, taken)),
                _headers(),
                list(_table([statement])),
                widths,
                line_formats,
            )
    else:
        sheet.title = _sheet_title(month.strftime("%Y-%m"), taken)
        fill(sheet, _headers(), list(_table(statements)), widths, line_formats)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


FILE_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def statements_file(statements: list[Statement], *, month: date, file_format: str) -> tuple[bytes, str]:
    """(content, content type) of a CSV or XLSX download of ``statements``."""
    if file_format == "csv":
        return statements_csv(statements), FILE_CONTENT_TYPES["csv"]
    return statements_xlsx(statements, month=month), FILE_CONTENT_TYPES["xlsx"]


def statement_file_name(month: date, domain: str | None = None, *, file_format: str) -> str:
    """statement-acme.bitrix24.ru-2026-11.xlsx, or statement-all-portals-2026-11.csv."""
    safe = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in domain) if domain else "all-portals"
    return f"statement-{safe}-{month:%Y-%m}.{file_format}"
