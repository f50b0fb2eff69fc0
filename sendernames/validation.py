"""The rules a sender-name application must meet, as i-dgtl would check them.

One module used by the admin form, the API serializer and the service layer, so a rule is written
once and gives the same message wherever input enters. Every function raises Django's
``ValidationError`` with a message meant for the operator; ``application_validate`` collects them
per field.
"""

import datetime as dt
import re
import warnings
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import filetype
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext_lazy as _
from stdnum.exceptions import InvalidChecksum, InvalidLength
from stdnum.ru import inn as stdnum_inn

from idgtl.contract import (
    BRANDS_WITH_MEGAFON_PATTERN,
    COMMON_TYPES_REQUIRING_DOCUMENTS,
    DOCUMENT_MIME_TYPES,
    MOSCOW_TZ,
    SENDER_NAME_DEAD_STATUSES,
    SENDER_NAME_MAX_LENGTH,
    SENDER_NAME_MIN_LENGTH,
    TIMESTAMP_FORMAT,
    Brand,
    ChannelType,
    CommonType,
    SenderNameStatus,
    sender_name_pattern,
)
from sendernames.models import SenderNameApplication

MOSCOW = ZoneInfo(MOSCOW_TZ)
# Bytes enough for filetype to recognise PDF, PNG and JPEG signatures.
SIGNATURE_BYTES = 261


# --- Single fields ----------------------------------------------------------------------------
def validate_choice(value: str, choices, label) -> str:
    if value not in choices.values:
        raise ValidationError(
            _("Unknown %(label)s “%(value)s”; expected one of: %(choices)s."),
            code="invalid_choice",
            params={"label": label, "value": value, "choices": ", ".join(choices.values)},
        )
    return value


def validate_sender_name_length(value: str) -> str:
    value = value or ""
    if not SENDER_NAME_MIN_LENGTH <= len(value) <= SENDER_NAME_MAX_LENGTH:
        raise ValidationError(
            _("A sender name has %(min)s to %(max)s characters; this one has %(length)s."),
            code="length",
            params={"min": SENDER_NAME_MIN_LENGTH, "max": SENDER_NAME_MAX_LENGTH, "length": len(value)},
        )
    return value


def allowed_characters_text(brand: str):
    if brand in BRANDS_WITH_MEGAFON_PATTERN:
        return _("Latin letters, digits and . * ! -")
    return _("Latin letters, digits, spaces and . * + -")


def brand_label(brand: str) -> str:
    return str(Brand(brand).label) if brand in Brand.values else brand


def validate_sender_name(value: str, brand: str) -> str:
    """3 to 11 characters from the brand's alphabet (MegaFon's differs from the others')."""
    value = validate_sender_name_length(value)
    # ASCII: i-dgtl's \s means space, tab and line breaks, not every Unicode space (U+2003, U+00A0, ...).
    if not re.fullmatch(sender_name_pattern(brand), value, flags=re.ASCII):
        raise ValidationError(
            _("For %(brand)s a sender name may contain only %(allowed)s."),
            code="pattern",
            params={"brand": brand_label(brand), "allowed": allowed_characters_text(brand)},
        )
    return value


def refused_characters(value: str, brand: str) -> list[str]:
    """The characters of a name (3 to 11 long) the brand's pattern does not allow, each once, in order."""
    pattern = sender_name_pattern(brand)
    refused = []
    for character in value:
        # three of one character have an allowed length: the pattern then judges the character alone
        if character not in refused and not re.fullmatch(pattern, character * 3, flags=re.ASCII):
            refused.append(character)
    return refused


def _character_names(characters: list[str]) -> str:
    names = []
    for character in characters:
        if character == " ":
            names.append(str(_("space")))
        elif not character.isprintable() or character.isspace():
            names.append(f"U+{ord(character):04X}")
        else:
            names.append(f"“{character}”")
    return ", ".join(names)


def validate_brands_accept(value: str, brands: Iterable[str]) -> None:
    """Every chosen brand's pattern (MegaFon's is stricter): one message per reason, naming the brands it is
    refused by and the characters they refuse."""
    reasons: dict[tuple, list[str]] = {}
    for brand in brands:
        refused = refused_characters(value, brand)
        if refused:
            reasons.setdefault((tuple(refused), str(allowed_characters_text(brand))), []).append(brand)
    if not reasons:
        return
    raise ValidationError(
        [
            ValidationError(
                _(
                    "“%(name)s” is refused by %(brands)s: characters not allowed: %(characters)s "
                    "(allowed: %(allowed)s)."
                ),
                code="pattern",
                params={
                    "name": value,
                    "brands": ", ".join(brand_label(b) for b in refused_by),
                    "characters": _character_names(list(refused)),
                    "allowed": allowed,
                },
            )
            for (refused, allowed), refused_by in reasons.items()
        ]
    )


def earliest_date_from(now: dt.datetime | None = None) -> dt.datetime:
    """The start of the next Moscow day: the earliest dateFrom i-dgtl accepts."""
    today = timezone.localtime(now or timezone.now(), MOSCOW).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time.min, tzinfo=MOSCOW)


def normalise_date_from(value, *, now: dt.datetime | None = None) -> dt.datetime:
    """Parse a date or datetime and return the start of that Moscow day (tz-aware).

    Accepts a ``date``, a ``datetime`` (naive ones are read as Moscow time) or an ISO string
    (``2030-01-31`` or ``2030-01-30T21:00:00Z``). It must be no earlier than the next Moscow day.
    """
    if isinstance(value, str):
        text = value.strip()
        parsed = None
        try:
            parsed = parse_datetime(text) or parse_date(text)
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValidationError(
                _("Enter a date such as 2030-01-31 or a time such as 2030-01-30T21:00:00Z."), code="invalid"
            )
        value = parsed
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            value = value.replace(tzinfo=MOSCOW)
        try:
            day = value.astimezone(MOSCOW).date()
        except (OverflowError, ValueError):  # e.g. 9999-12-31T23:00:00-05:00: past the calendar's end
            raise ValidationError(_("This date is out of range."), code="invalid") from None
    elif isinstance(value, dt.date):
        day = value
    else:
        raise ValidationError(_("Enter a date."), code="required")
    start = dt.datetime.combine(day, dt.time.min, tzinfo=MOSCOW)
    earliest = earliest_date_from(now)
    if start < earliest:
        raise ValidationError(
            _("The start date must be no earlier than the next day (Moscow time): %(earliest)s or later."),
            code="too_early",
            params={"earliest": earliest.date().isoformat()},
        )
    return start


def date_from_for_idgtl(value: dt.datetime) -> str:
    """dateFrom as i-dgtl wants it: ``yyyy-MM-ddTHH:mm:ssZ`` in UTC."""
    return value.astimezone(dt.UTC).strftime(TIMESTAMP_FORMAT)


def validate_inn(value: str) -> str:
    """10 digits (legal entity) or 12 (individual entrepreneur) with valid check digits."""
    value = (value or "").strip()
    if not value.isdigit():
        raise ValidationError(_("An INN consists of digits only."), code="format")
    try:
        return stdnum_inn.validate(value)
    except InvalidLength:
        raise ValidationError(
            _("An INN has 10 digits (legal entity) or 12 (individual entrepreneur); this one has %(length)s."),
            code="length",
            params={"length": len(value)},
        ) from None
    except InvalidChecksum:
        raise ValidationError(_("This INN's check digits are wrong: check it for a typo."), code="checksum") from None
    except Exception:
        raise ValidationError(_("This is not a valid INN."), code="invalid") from None


# --- Documents ---------------------------------------------------------------------------------
def _read_head(file) -> bytes:
    position = file.tell() if hasattr(file, "tell") else None
    if hasattr(file, "seek"):
        file.seek(0)
    head = file.read(SIGNATURE_BYTES)
    if hasattr(file, "seek"):
        file.seek(position or 0)
    return head


def _pdf_parses(file) -> bool:
    """pypdf reads the trailer (startxref, %%EOF), the cross-reference table and the page tree."""
    from pypdf import PdfReader  # here: 0.1 s to import, needed only when a document is uploaded

    try:
        return len(PdfReader(file, strict=False).pages) >= 1
    except Exception:  # pypdf raises many kinds for many kinds of damage (and for a password-protected file)
        return False


def _image_parses(file, mime: str) -> bool:
    """Pillow opens the image as the type its signature claims: PNG chunks and their checksums are
    verified; a JPEG's scans are decoded at 1/8 scale (every byte of the compressed data is read,
    little memory is used). A decompression bomb is refused."""
    from PIL import Image  # here: needed only when a document is uploaded (not by every worker and web process)

    expected = {"image/png": "PNG", "image/jpeg": "JPEG"}[mime]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file, formats=[expected]) as image:
                if expected == "PNG":
                    image.verify()
                else:
                    image.draft("RGB", (image.width // 8 or 1, image.height // 8 or 1))
                    image.load()
        return True
    except Exception:  # Pillow's UnidentifiedImageError, OSError (truncated), SyntaxError, bombs, ...
        return False


def _content_parses(file, mime: str) -> bool:
    position = file.tell() if hasattr(file, "tell") else 0
    try:
        file.seek(0)
        return _pdf_parses(file) if mime == "application/pdf" else _image_parses(file, mime)
    finally:
        file.seek(position or 0)


def detect_document_type(file) -> str:
    """The MIME type of a PDF, PNG or JPEG judged by the file's content (its name is ignored).

    The signature in the first bytes names the type; then the whole file must parse as that type
    (a PDF header in front of anything else is refused). The size is checked before any byte is read."""
    size = getattr(file, "size", None)
    name = getattr(file, "name", "") or ""
    limit = settings.SENDER_NAME_MAX_DOCUMENT_SIZE
    if size == 0:
        raise ValidationError(_("%(name)s is empty."), code="empty", params={"name": name})
    if size is not None and size > limit:
        raise ValidationError(
            _("%(name)s is %(size)s bytes; a document may be at most %(limit)s bytes."),
            code="too_large",
            params={"name": name, "size": size, "limit": limit},
        )
    kind = filetype.guess(_read_head(file))
    if kind is None or kind.mime not in DOCUMENT_MIME_TYPES:
        raise ValidationError(
            _("%(name)s is not a PDF, PNG or JPEG file (judged by its content, not its name)."),
            code="file_type",
            params={"name": name},
        )
    if not _content_parses(file, kind.mime):
        raise ValidationError(
            _("%(name)s starts like a %(type)s file but is damaged or not one: its content does not read as %(type)s."),
            code="file_damaged",
            params={"name": name, "type": DOCUMENT_MIME_TYPES[kind.mime]},
        )
    return kind.mime


def validate_document_count(count: int) -> None:
    limit = settings.SENDER_NAME_MAX_DOCUMENTS
    if count > limit:
        raise ValidationError(
            _("At most %(limit)s documents may be attached; got %(count)s."),
            code="too_many",
            params={"limit": limit, "count": count},
        )


def validate_documents(files: Iterable) -> list[str]:
    """Check every file and their number; return the detected MIME types in order."""
    files = list(files)
    errors, types = [], []
    try:
        validate_document_count(len(files))
    except ValidationError as exc:
        errors.extend(exc.error_list)
    for file in files:
        try:
            types.append(detect_document_type(file))
        except ValidationError as exc:
            errors.extend(exc.error_list)
    if errors:
        raise ValidationError(errors)
    return types


def validate_documents_required(common_type: str, document_count: int) -> None:
    if common_type in COMMON_TYPES_REQUIRING_DOCUMENTS and document_count < 1:
        raise ValidationError(
            _("A %(type)s sender name needs at least one document (PDF, PNG or JPEG)."),
            code="required",
            params={"type": common_type},
        )


# --- Duplicates --------------------------------------------------------------------------------
def find_live_duplicate(*, account_id, sender_name: str, brand: str, channel_type: str, exclude_id=None):
    """A live application (not rejected or canceled) for the same name, operator and channel."""
    qs = SenderNameApplication.objects.filter(
        account_id=account_id,
        sender_name__iexact=sender_name,
        brand=brand,
        channel_type=channel_type,
    ).exclude(status__in=SENDER_NAME_DEAD_STATUSES)
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return qs.order_by("pk").first()


def validate_not_duplicate(*, account_id, sender_name, brand, channel_type, exclude_id=None) -> None:
    existing = find_live_duplicate(
        account_id=account_id, sender_name=sender_name, brand=brand, channel_type=channel_type, exclude_id=exclude_id
    )
    if existing is not None:
        raise ValidationError(
            _(
                "“%(name)s” for %(brand)s is already filed in application #%(id)s (%(state)s); "
                "file a new one only after that one is rejected or canceled."
            ),
            code="duplicate",
            params={
                "name": existing.sender_name,
                "brand": existing.get_brand_display(),
                "id": existing.pk,
                "state": existing.status_label or existing.get_submission_state_display(),
            },
        )


# --- The whole application ----------------------------------------------------------------------
def _collector(errors: dict):
    def check(field, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ValidationError as exc:
            errors.setdefault(field, []).extend(exc.error_list)
            return None

    return check


def _validate_common(
    check,
    errors,
    *,
    channel_type,
    common_type,
    date_from,
    sender_name,
    counteragent_name,
    counteragent_inn,
    document_count,
    now,
) -> dict:
    """The rules every operator shares (all but the name's alphabet and duplicates)."""
    cleaned = {
        "channel_type": channel_type,
        "common_type": common_type,
        "sender_name": (sender_name or "").strip(),
        "counteragent_name": (counteragent_name or "").strip(),
    }
    check("channel_type", validate_choice, channel_type, ChannelType, _("channel"))
    check("common_type", validate_choice, common_type, CommonType, _("type"))
    cleaned["date_from"] = check("date_from", normalise_date_from, date_from, now=now)
    cleaned["counteragent_inn"] = check("counteragent_inn", validate_inn, counteragent_inn)
    if not cleaned["counteragent_name"]:
        errors.setdefault("counteragent_name", []).append(
            ValidationError(_("Enter the legal entity's name."), code="required")
        )
    check("documents", validate_documents_required, common_type, document_count)
    return cleaned


def application_validate(
    *,
    account_id,
    channel_type,
    common_type,
    brand,
    date_from,
    sender_name,
    counteragent_name,
    counteragent_inn,
    document_count: int,
    exclude_id=None,
    now=None,
) -> dict:
    """Check every field; return the cleaned values or raise one ValidationError keyed by field."""
    errors: dict[str, list] = {}
    check = _collector(errors)
    brand_ok = check("brand", validate_choice, brand, Brand, _("operator")) is not None
    cleaned = _validate_common(
        check,
        errors,
        channel_type=channel_type,
        common_type=common_type,
        date_from=date_from,
        sender_name=sender_name,
        counteragent_name=counteragent_name,
        counteragent_inn=counteragent_inn,
        document_count=document_count,
        now=now,
    )
    cleaned["brand"] = brand
    if brand_ok:
        check("sender_name", validate_sender_name, cleaned["sender_name"], brand)
    if "sender_name" not in errors and brand_ok and "channel_type" not in errors:
        check(
            "sender_name",
            validate_not_duplicate,
            account_id=account_id,
            sender_name=cleaned["sender_name"],
            brand=brand,
            channel_type=channel_type,
            exclude_id=exclude_id,
        )
    if errors:
        raise ValidationError(errors)
    return cleaned


# --- One name, several operators ----------------------------------------------------------------
def validate_brands(values) -> list[str]:
    """The chosen operators: at least one, each known; each once, in the contract's order."""
    if isinstance(values, str):
        values = [values]
    values = [part.strip() for value in (values or []) for part in str(value).split(",") if part.strip()]
    if not values:
        raise ValidationError(_("Choose at least one operator."), code="required")
    unknown = [value for value in values if value not in Brand.values]
    if unknown:
        raise ValidationError(
            _("Unknown operator “%(value)s”; expected some of: %(choices)s."),
            code="invalid_choice",
            params={"value": "”, “".join(unknown), "choices": ", ".join(Brand.values)},
        )
    return [brand for brand in Brand.values if brand in values]


def group_validate(
    *,
    account_id,
    brands,
    channel_type,
    common_type,
    date_from,
    sender_name,
    counteragent_name,
    counteragent_inn,
    document_count: int,
    now=None,
) -> tuple[dict, list[str]]:
    """Every field against every chosen operator's rules at once: the cleaned values and the brands, or one
    ValidationError keyed by field whose messages name the operator that refuses."""
    errors: dict[str, list] = {}
    check = _collector(errors)
    chosen = check("brands", validate_brands, brands) or []
    cleaned = _validate_common(
        check,
        errors,
        channel_type=channel_type,
        common_type=common_type,
        date_from=date_from,
        sender_name=sender_name,
        counteragent_name=counteragent_name,
        counteragent_inn=counteragent_inn,
        document_count=document_count,
        now=now,
    )
    if check("sender_name", validate_sender_name_length, cleaned["sender_name"]) is not None and chosen:
        check("sender_name", validate_brands_accept, cleaned["sender_name"], chosen)
    if "sender_name" not in errors and "channel_type" not in errors:
        for brand in chosen:
            check(
                "sender_name",
                validate_not_duplicate,
                account_id=account_id,
                sender_name=cleaned["sender_name"],
                brand=brand,
                channel_type=channel_type,
            )
    if errors:
        raise ValidationError(errors)
    return cleaned, chosen


# --- A status set by hand -----------------------------------------------------------------------
def validate_manual_status(value) -> str:
    """One of the statuses b24sms knows (an unknown string is only ever stored as i-dgtl sent it)."""
    value = str(value or "").strip()
    if value not in SenderNameStatus.values:
        raise ValidationError(
            _("Unknown status “%(value)s”; expected one of: %(choices)s."),
            code="invalid_choice",
            params={"value": value, "choices": ", ".join(SenderNameStatus.values)},
        )
    return value


def moscow_today(now: dt.datetime | None = None) -> dt.date:
    return timezone.localtime(now or timezone.now(), MOSCOW).date()


def parse_status_date(value, *, not_before: dt.date | None = None, now: dt.datetime | None = None) -> dt.date:
    """The date a status took effect (as i-dgtl's cabinet shows it): a date or an ISO time (its Moscow date);
    not in the future (Moscow time) and not before ``not_before`` (the day the application was submitted)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = parse_datetime(text) or parse_date(text)
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValidationError(_("Enter a date such as 2030-01-31."), code="invalid")
        value = parsed
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            value = value.replace(tzinfo=MOSCOW)
        try:
            value = value.astimezone(MOSCOW).date()
        except (OverflowError, ValueError):
            raise ValidationError(_("This date is out of range."), code="invalid") from None
    if not isinstance(value, dt.date):
        raise ValidationError(_("Enter a date."), code="required")
    today = moscow_today(now)
    if value > today:
        raise ValidationError(
            _("The status date cannot be in the future: today is %(today)s (Moscow time)."),
            code="future",
            params={"today": today.isoformat()},
        )
    if not_before is not None and value < not_before:
        raise ValidationError(
            _("The application was submitted to i-dgtl on %(date)s; its status cannot be older."),
            code="too_early",
            params={"date": not_before.isoformat()},
        )
    return value
