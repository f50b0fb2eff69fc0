"""Reads of sender names for the admin, the API, the start page and the providers' form."""

import dataclasses
import datetime as dt

from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from idgtl.contract import SENDER_NAME_DEAD_STATUSES, SENDER_NAME_FINAL_STATUSES, Brand, SenderNameStatus
from sendernames.models import SenderNameApplication, SenderNameGroup, StatusReadability, SubmissionState
from sendernames.validation import MOSCOW, brand_label


def with_status_readability(queryset):
    """Applications annotated with whether their account's statuses cannot be read (one query in all)."""
    return queryset.annotate(
        account_status_unreadable=Exists(
            StatusReadability.objects.filter(account_id=OuterRef("account_id"), readable=False)
        )
    )


# --- Usable for sending -----------------------------------------------------------------------------
def usable_from(application: SenderNameApplication) -> dt.datetime:
    """i-dgtl lets a name send from its dateFrom, the start (00:00) of a Moscow day."""
    return timezone.localtime(application.date_from, MOSCOW)


def usable_from_text(application: SenderNameApplication) -> str:
    return _("%(date)s 00:00 Moscow time") % {"date": date_format(usable_from(application).date(), "DATE_FORMAT")}


def is_usable(application: SenderNameApplication, now: dt.datetime | None = None) -> bool:
    return application.status == SenderNameStatus.APPROVED and application.date_from <= (now or timezone.now())


def application_unusable_reason(application: SenderNameApplication, now: dt.datetime | None = None) -> str:
    """Why a provider cannot send with this application yet ('' when it can)."""
    if is_usable(application, now):
        return ""
    if application.status == SenderNameStatus.APPROVED:
        return _(
            "“%(name)s” is approved but usable for sending only from %(start)s; choose it from then "
            "(i-dgtl refuses messages with it before)."
        ) % {"name": application.sender_name, "start": usable_from_text(application)}
    return _("“%(name)s” for %(brand)s is not approved (%(status)s).") % {
        "name": application.sender_name,
        "brand": application.get_brand_display(),
        "status": application.status_label or application.get_submission_state_display(),
    }


@dataclasses.dataclass
class SenderNameChoice:
    """One approved name (whatever the number of its applications), as a provider chooses it."""

    application: SenderNameApplication  # the one the provider links to: usable now if any is
    sender_name: str
    usable_brands: list[str]  # approved and started
    later: list[tuple[str, dt.datetime]]  # approved, usable from that time

    @property
    def usable(self) -> bool:
        return bool(self.usable_brands)

    @property
    def label(self) -> str:
        parts = []
        if self.usable_brands:
            parts.append(", ".join(brand_label(brand) for brand in self.usable_brands))
        for brand, start in self.later:
            parts.append(
                _("%(brand)s from %(start)s")
                % {
                    "brand": brand_label(brand),
                    "start": _("%(date)s 00:00 Moscow time") % {"date": date_format(start.date(), "DATE_FORMAT")},
                }
            )
        if not self.usable_brands:
            return _("%(name)s — approved, not usable yet: %(brands)s") % {
                "name": self.sender_name,
                "brands": "; ".join(parts),
            }
        return _("%(name)s — approved for %(brands)s") % {"name": self.sender_name, "brands": "; ".join(parts)}


def sender_name_choices(*, now: dt.datetime | None = None, include_id: int | None = None) -> list[SenderNameChoice]:
    """Approved names, each once (per account, case-insensitive), with the operators it is approved for;
    one approved but not started yet is listed too, with the time it becomes usable. ``include_id``: an
    application a provider already links to stays choosable whatever its status."""
    now = now or timezone.now()
    approved = Q(status=SenderNameStatus.APPROVED)
    if include_id is not None:
        approved |= Q(pk=include_id)
    applications = SenderNameApplication.objects.filter(approved).order_by("date_from", "pk")
    by_name: dict[tuple, list[SenderNameApplication]] = {}
    for application in applications:
        by_name.setdefault((application.account_id, application.sender_name.casefold()), []).append(application)
    order = {brand: position for position, brand in enumerate(Brand.values)}
    choices = []
    for members in by_name.values():
        usable = [a for a in members if is_usable(a, now)]
        later = [a for a in members if a.status == SenderNameStatus.APPROVED and a not in usable]
        linked = next((a for a in members if a.pk == include_id), None)
        representative = linked or (usable or later or members)[0]
        choices.append(
            SenderNameChoice(
                application=representative,
                sender_name=representative.sender_name,
                usable_brands=sorted({a.brand for a in usable}, key=lambda b: order.get(b, 99)),
                later=sorted(
                    {(a.brand, usable_from(a)) for a in later}, key=lambda item: (item[1], order.get(item[0], 99))
                ),
            )
        )
    return sorted(choices, key=lambda choice: choice.sender_name.casefold())


# --- Groups -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class MatrixRow:
    """One operator of a group: its latest application (an earlier one rejected or canceled is in the list)."""

    brand: str
    brand_label: str
    application: SenderNameApplication | None

    @property
    def last_change(self):
        application = self.application
        return (application.status_changed_at or application.updated_at) if application else None


def group_queryset():
    return SenderNameGroup.objects.select_related("account", "created_by")


def group_applications(group: SenderNameGroup):
    return with_status_readability(group.applications.select_related("account")).order_by("pk")


def group_matrix(group: SenderNameGroup, applications=None) -> list[MatrixRow]:
    """Brand × status: a row per operator of the group, in the contract's order."""
    applications = list(applications if applications is not None else group_applications(group))
    latest = {}
    for application in applications:  # by pk: the last one of a brand wins
        latest[application.brand] = application
    return [MatrixRow(brand, brand_label(brand), latest[brand]) for brand in Brand.values if brand in latest]


def group_brands_missing(group: SenderNameGroup, applications=None) -> list[str]:
    """Operators that can still be added: not in the group, or only rejected or canceled there."""
    applications = list(applications if applications is not None else group.applications.all())
    live = {a.brand for a in applications if a.status not in SENDER_NAME_DEAD_STATUSES}
    return [brand for brand in Brand.values if brand not in live]


# --- The start page -----------------------------------------------------------------------------------
def unreadable_accounts() -> list[dict]:
    """Accounts whose statuses cannot be read from i-dgtl, with how many open applications they hold."""
    states = list(StatusReadability.objects.filter(readable=False).select_related("account").order_by("account__name"))
    if not states:
        return []
    counts = dict(
        SenderNameApplication.objects.filter(
            account_id__in=[state.account_id for state in states],
            submission_state=SubmissionState.SUBMITTED,
            remote_id__isnull=False,
        )
        .exclude(status__in=SENDER_NAME_FINAL_STATUSES)
        .order_by()
        .values_list("account_id")
        .annotate(n=Count("id"))
    )
    return [
        {
            "account": state.account.name,
            "account_id": state.account_id,
            "since": state.unreadable_since,
            "next_check": state.next_check_at,
            "http_status": state.http_status,
            "applications": counts.get(state.account_id, 0),
        }
        for state in states
    ]
