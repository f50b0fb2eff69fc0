"""What sender-name services send to and read from i-dgtl (through ``idgtl.client`` only).

snake_case model fields become i-dgtl's camelCase here, and i-dgtl records are compared with ours
here, so the services above never touch raw i-dgtl shapes.
"""

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from idgtl.client import IdgtlClient, IdgtlError, IdgtlNotFound, IdgtlTransientError
from idgtl.contract import READ_ROUTE_ABSENT_HTTP_STATUSES
from sendernames.models import SenderNameApplication
from sendernames.validation import date_from_for_idgtl

# [C] "Duplicates with existing name (id = 1161)"
DUPLICATE_MESSAGE = re.compile(r"Duplicates with existing name \(id\s*=\s*(\d+)\)")
LOOKUP_MAX_PAGES = 10
FEE_QUANTUM, FEE_LIMIT = Decimal("0.01"), Decimal(10) ** 10  # SenderNameApplication.fee: 12 digits, 2 decimals
STATUS_MAX_LENGTH = SenderNameApplication._meta.get_field("status").max_length


def client_for(account):
    """The i-dgtl client for an account's sender-names key (TOKEN_2)."""
    return IdgtlClient.for_sender_names(account)


def configuration_message(error: IdgtlError) -> str:
    """What an operator reads when i-dgtl refuses the sender-names key (401/403)."""
    return _(
        "i-dgtl refused the account's sender-names key (%(code)s %(msg)s): this is a configuration problem, "
        "not a mistake in the application. Check the TOKEN_2 key of the i-dgtl account."
    ) % {"code": error.code or error.http_status or "", "msg": error.message}


def application_remote_body(application: SenderNameApplication) -> dict:
    return {
        "channelType": application.channel_type,
        "commonType": application.common_type,
        "brand": application.brand,
        "dateFrom": date_from_for_idgtl(application.date_from),
        "senderName": application.sender_name,
        "counteragentName": application.counteragent_name,
        "counteragentInn": application.counteragent_inn,
    }


class DocumentUnreadable(Exception):
    def __init__(self, document, error: OSError):
        super().__init__(f"{document.original_name}: {error.__class__.__name__}")
        self.document = document


def application_remote_files(application: SenderNameApplication) -> list[tuple[str, bytes, str]]:
    files = []
    for document in application.documents.all():
        try:
            with document.file.open("rb") as handle:
                files.append((document.original_name, handle.read(), document.content_type))
        except OSError as exc:  # the stored file is gone (a lost media volume): nothing can be sent
            raise DocumentUnreadable(document, exc) from exc
    return files


def remote_record_matches(application: SenderNameApplication, record: dict) -> bool:
    """Whether an i-dgtl record is the one this application created."""
    remote_date = parse_datetime(str(record.get("dateFrom") or ""))
    same_date = remote_date is not None and remote_date.astimezone(dt.UTC) == application.date_from.astimezone(dt.UTC)
    return (
        str(record.get("senderName", "")).lower() == application.sender_name.lower()
        and record.get("brand") == application.brand
        and record.get("channelType", application.channel_type) == application.channel_type
        and record.get("commonType") == application.common_type
        and str(record.get("counteragentInn", "")) == application.counteragent_inn
        and same_date
    )


def _unclaimed(application: SenderNameApplication, remote_id) -> bool:
    return (
        not SenderNameApplication.objects.filter(account_id=application.account_id, remote_id=remote_id)
        .exclude(pk=application.pk)
        .exists()
    )


def remote_id_of(record) -> int | None:
    """The record's i-dgtl id when it is a usable one (a positive integer that fits a bigint)."""
    if not isinstance(record, dict) or isinstance(record.get("id"), bool):
        return None
    text = str(record.get("id", ""))
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        return None
    return int(text)


def remote_lookup(client, application: SenderNameApplication) -> dict | None:
    """Find the i-dgtl record an earlier, unanswered submission may have created."""
    page = 1
    while page <= LOOKUP_MAX_PAGES:
        answer = client.list_sender_names(sender_name=application.sender_name, page=page, per_page=100)
        items = answer.get("items") or []
        for record in items:
            if (
                remote_id_of(record) is not None
                and remote_record_matches(application, record)
                and _unclaimed(application, remote_id_of(record))
            ):
                return record
        if not items or page * 100 >= int(answer.get("total") or 0):
            return None
        page += 1
    return None


def duplicate_remote_id(message: str) -> int | None:
    match = DUPLICATE_MESSAGE.search(message or "")
    return int(match.group(1)) if match else None


def remote_fee(record: dict) -> Decimal | None:
    """The fee as a decimal that fits the model (12 digits, 2 after the point); None when absent or absurd."""
    value = record.get("fee")
    if value is None or isinstance(value, bool):
        return None
    try:
        fee = Decimal(str(value)).quantize(FEE_QUANTUM)
    except (InvalidOperation, ValueError):
        return None
    return fee if fee.is_finite() and abs(fee) < FEE_LIMIT else None


def remote_status(record: dict, default: str = "") -> str:
    """i-dgtl's status string as received (cut to what the column holds); ``default`` when absent."""
    value = record.get("status")
    if value is None or value == "":
        return default
    return str(value)[:STATUS_MAX_LENGTH]


# --- Reading one application's record ---------------------------------------------------------------
class ReadRouteAbsent(Exception):
    """i-dgtl has no sender-name read endpoint for this account: 404/405 on the route, not on one id."""

    def __init__(self, http_status: int | None, detail: str):
        super().__init__(f"HTTP {http_status}: {detail}")
        self.http_status = http_status
        self.detail = detail


def _route_absent(error: IdgtlError) -> bool:
    return error.http_status in READ_ROUTE_ABSENT_HTTP_STATUSES and not isinstance(error, IdgtlTransientError)


def _fetch(client, remote_id: int) -> dict:
    record = client.get_sender_name(remote_id)
    if not isinstance(record, dict):
        raise IdgtlTransientError("i-dgtl answered with something other than a sender-name object.")
    return record


def remote_read(client, application: SenderNameApplication) -> dict:
    """i-dgtl's record of a submitted application (GET /sender-names/{id}, an assumption of the contract).

    405 means the route takes no GET: the endpoint is absent. A 404 is ambiguous (the same envelope for an
    unknown route and an unknown id), but the id came from i-dgtl itself, so the list route decides: when it
    is absent too (404/405), so is the read endpoint (:class:`ReadRouteAbsent`); when it answers, the record
    is looked for there (a service with a list but no single read still gets its statuses read), and an id
    it does not list is unknown (:class:`IdgtlNotFound`).
    """
    try:
        return _fetch(client, application.remote_id)
    except IdgtlNotFound as exc:
        not_found = exc
    except IdgtlError as exc:
        if exc.http_status == 405:
            raise ReadRouteAbsent(405, exc.message) from exc
        raise
    page = 1
    while page <= LOOKUP_MAX_PAGES:
        try:
            answer = client.list_sender_names(sender_name=application.sender_name, page=page, per_page=100)
        except IdgtlError as exc:
            if _route_absent(exc):
                raise ReadRouteAbsent(not_found.http_status, not_found.message) from exc
            raise
        items = (answer.get("items") if isinstance(answer, dict) else None) or []
        for record in items:
            if remote_id_of(record) == application.remote_id:
                return record
        if not items or page * 100 >= int(answer.get("total") or 0):
            break
        page += 1
    raise not_found
