"""Tariffs: a price per SMS part from a day on, the default one or a portal's own; never two at once.

One set of rules for the admin and the API (:func:`tariff_clean` raises a Django ValidationError naming
the field; the API turns it into a 400, the admin into form errors). :func:`tariff_save` checks again
under a lock, so two operators saving overlapping tariffs at the same moment cannot both succeed.
"""

from datetime import date
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from providers.models import USAGE_STATES, Tariff

TARIFF_LOCK_NAMESPACE = 0x62323474  # first key of the PostgreSQL advisory lock on a portal's tariffs
PRICE_MAX = Decimal("99999999.9999")  # the column: 12 digits, 4 after the point


def tariff_clean(*, tariff: Tariff) -> None:
    """ValidationError ({field: [messages]}) unless ``tariff`` may be saved as it is."""
    errors = {}
    price = tariff.price_per_part
    try:
        price = None if price is None or price == "" else Decimal(str(price))
    except (InvalidOperation, ValueError):
        price = None
        errors["price_per_part"] = _("Enter a number.")
    if price is None:
        errors.setdefault("price_per_part", _("Enter the price of one SMS part in roubles."))
    elif not price.is_finite() or price < 0:
        errors["price_per_part"] = _("The price cannot be negative.")
    elif price > PRICE_MAX or price.as_tuple().exponent < -4:
        errors["price_per_part"] = _("At most %(max)s, with at most 4 digits after the point.") % {"max": PRICE_MAX}
    states = tariff.billable_states
    if not isinstance(states, list) or not states or not all(isinstance(s, str) for s in states):
        errors["billable_states"] = _("Choose at least one state.")
    else:
        unknown = [s for s in states if s not in USAGE_STATES]
        if unknown:
            errors["billable_states"] = _("Unknown states: %(states)s. Choose among %(known)s.") % {
                "states": ", ".join(unknown),
                "known": ", ".join(USAGE_STATES),
            }
    if not isinstance(tariff.valid_from, date):
        errors["valid_from"] = _("Enter the first day the tariff applies.")
    elif tariff.valid_until is not None and tariff.valid_until < tariff.valid_from:
        errors["valid_until"] = _("The last day cannot be before the first day.")
    if errors:
        raise ValidationError(errors)
    overlapping = tariff_overlapping(tariff=tariff)
    if overlapping is not None:
        raise ValidationError(
            {
                "valid_from": _(
                    "This period overlaps the tariff %(price)s RUB valid %(period)s of the same portal (or the default "
                    "tariff). End that one first, or choose other dates."
                )
                % {"price": overlapping.price_per_part, "period": tariff_period_label(overlapping)}
            }
        )


def tariff_overlapping(*, tariff: Tariff) -> Tariff | None:
    """Another tariff of the same scope (the same portal, or the default) whose days meet ``tariff``'s."""
    others = Tariff.objects.filter(installation_id=tariff.installation_id)
    if tariff.pk:
        others = others.exclude(pk=tariff.pk)
    others = others.filter(Q(valid_until__isnull=True) | Q(valid_until__gte=tariff.valid_from))
    if tariff.valid_until is not None:
        others = others.filter(valid_from__lte=tariff.valid_until)
    return others.order_by("valid_from").first()


def tariff_period_label(tariff: Tariff) -> str:
    start = date_format(tariff.valid_from, "SHORT_DATE_FORMAT")
    if tariff.valid_until is None:
        return _("from %(start)s") % {"start": start}
    return f"{start} – {date_format(tariff.valid_until, 'SHORT_DATE_FORMAT')}"


def tariff_save(*, tariff: Tariff) -> Tariff:
    """Validate and save, under a lock per scope (PostgreSQL; SQLite serialises writers anyway)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)",
                    [TARIFF_LOCK_NAMESPACE, (tariff.installation_id or 0) % 2**31],
                )
        tariff_clean(tariff=tariff)
        tariff.save()
    return tariff


def tariffs_in_force(*, installation_ids, first: date, last: date) -> list[Tariff]:
    """Tariffs of these portals and the default ones that apply on some day between ``first`` and ``last``."""
    return list(
        Tariff.objects.filter(Q(installation_id__in=list(installation_ids)) | Q(installation__isnull=True))
        .filter(valid_from__lte=last)
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gte=first))
        .order_by("valid_from")
    )


def tariff_for_day(tariffs: list[Tariff], installation_id: int, day: date) -> Tariff | None:
    """The portal's own tariff on ``day``, else the default one, else None."""
    default = None
    for tariff in tariffs:
        if not tariff.covers(day):
            continue
        if tariff.installation_id == installation_id:
            return tariff
        if tariff.installation_id is None:
            default = tariff
    return default
