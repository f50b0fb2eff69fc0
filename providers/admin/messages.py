"""Admin: messages with their timeline and status reports (read-only: messages come from Bitrix24), and the
callback inbox (read-only: i-dgtl events waiting for the uuid of their message)."""

from django.contrib import admin
from django.db.models import Q
from django.utils import formats, timezone, translation
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from bitrix24.contract import MessageStatus as Bitrix24Status
from common.admin_display import datetime_to_second
from idgtl.contract import MessageStatus as IdgtlStatus
from providers.admin.paginator import EstimatedCountPaginator
from providers.models import (
    Installation,
    Message,
    MessageStatusChange,
    StatusReport,
    UnmatchedCallbackEvent,
    state_label,
)
from providers.services.sending import destination_normalise

# Where a change of a message's state came from (providers/services/timeline.py ChangeSource), as operators say it.
SOURCE_LABELS = {
    "handler": _("Bitrix24 (HANDLER)"),
    "send": _("sending to i-dgtl"),
    "callback": _("i-dgtl callback"),
    "reconciler": _("look-up at i-dgtl"),
}
# Where in Bitrix24 an SMS was written (module_id).
ORIGIN_LABELS = {"crm": _("CRM card"), "bizproc": _("workflow or robot")}


def status_only_details(status: str) -> set[str]:
    """The detail providers/services/delivery.py writes for a status from i-dgtl, in each language a worker may
    have written it in: it only repeats the status (as its code)."""
    details = set()
    for language in ("en", "ru"):
        with translation.override(language):
            details.add(gettext("i-dgtl status: %(status)s") % {"status": status})
    return details


def status_label(choices, value: str) -> str:
    """A status code as operators read it: its label (codes are for the API; an unknown code as it is)."""
    if not value:
        return "—"
    try:
        return str(choices(value).label)
    except ValueError:
        return value


def search_numbers(term: str, regions) -> list[str]:
    """The destinations a searched phone number may be stored as: its digits as typed, and the number in
    i-dgtl's form (country code first) as the send step reads it in the portals' regions."""
    digits = "".join(ch for ch in term if ch.isdigit())
    if len(digits) < 5 or any(ch.isalpha() for ch in term):
        return []
    normalised = {destination_normalise(message_to=term, region=region) for region in sorted(set(regions))}
    return sorted(({digits} | normalised) - {""})


def labelled(labels: dict, value: str) -> str:
    return str(labels.get(value, value)) if value else "—"


class LabelledValuesFilter(admin.SimpleListFilter):
    """The known values of a column, by their labels. Listed from the code, not read from the table (a DISTINCT
    over ten million messages would read them all at every page view); another value still filters when it is
    given in the URL."""

    labels: dict = {}

    def lookups(self, request, model_admin):
        return list(self.labels.items())

    def queryset(self, request, queryset):
        return queryset.filter(**{self.parameter_name: self.value()}) if self.value() is not None else queryset


class IdgtlStatusFilter(LabelledValuesFilter):
    title = _("i-dgtl status")
    parameter_name = "idgtl_status"
    labels = dict(IdgtlStatus.choices)


class OriginFilter(LabelledValuesFilter):
    title = _("origin")
    parameter_name = "module_id"
    labels = ORIGIN_LABELS


class CallbackStatusFilter(LabelledValuesFilter):
    title = _("i-dgtl status")
    parameter_name = "status"
    labels = dict(IdgtlStatus.choices)


@admin.display(description=_("i-dgtl status"), ordering="idgtl_status")
def idgtl_status_label(obj):
    return status_label(IdgtlStatus, obj.idgtl_status)


@admin.display(description=_("Bitrix24 status"), ordering="status")
def bitrix24_status_label(obj):
    return status_label(Bitrix24Status, obj.status)


def anonymised_badge(message) -> str:
    """The label of a message whose text and phone numbers retention removed (MESSAGES_RETENTION_DAYS)."""
    when = formats.date_format(timezone.localtime(message.anonymised_at), "SHORT_DATETIME_FORMAT")
    return format_html(
        '<span class="b24-anonymised" title="{}" style="display: inline-block; padding: 0 6px; border-radius: 8px; '
        "background: var(--darkened-bg, #f8f8f8); border: 1px solid var(--border-color, #ccc); "
        'color: var(--body-quiet-color, #666); font-size: 0.85em; white-space: nowrap;">{}</span>',
        gettext("Text and phone numbers removed by retention on %(date)s.") % {"date": when},
        gettext("anonymised"),
    )


@admin.display(description=_("destination"), ordering="destination")
def destination_display(obj):
    return anonymised_badge(obj) if obj.is_anonymised else obj.destination


@admin.display(description=_("recipient as entered"), ordering="message_to")
def message_to_display(obj):
    return anonymised_badge(obj) if obj.is_anonymised else obj.message_to


@admin.display(description=_("anonymised"))
def anonymised_label(obj):
    return anonymised_badge(obj) if obj.is_anonymised else "—"


@admin.display(description=_("SMS parts"))
def sms_parts_label(obj):
    """ "2 (GSM-7)": the parts and encoding stored at intake (providers/sms_parts.py)."""
    if not obj.parts:
        return "—"
    return f"{obj.parts} ({obj.get_encoding_display()})"


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.display(description=_("origin"), ordering="module_id")
def origin_label(obj):
    return labelled(ORIGIN_LABELS, obj.module_id)


@admin.display(description=_("time"), ordering="created_at")
def created_to_second(obj):
    return datetime_to_second(obj.created_at)


class MessageStatusChangeInline(ReadOnlyInline):
    """The timeline, to the second: the steps of one send are often within the same minute."""

    model = MessageStatusChange
    fields = readonly_fields = (
        created_to_second,
        "previous_state_label",
        "state",
        idgtl_status_label,
        "source_label",
        "detail_display",
    )
    verbose_name_plural = _("timeline")

    @admin.display(description=_("previous state"))
    def previous_state_label(self, obj):
        return state_label(obj.previous_state) or "—"

    @admin.display(description=_("source"))
    def source_label(self, obj):
        return labelled(SOURCE_LABELS, obj.source)

    @admin.display(description=_("detail"))
    def detail_display(self, obj):
        """The detail, unless it only repeats the i-dgtl status (as its code) that the row shows as a label."""
        if obj.idgtl_status and obj.detail in status_only_details(obj.idgtl_status):
            return "—"
        return obj.detail or "—"


class StatusReportInline(ReadOnlyInline):
    model = StatusReport
    fields = readonly_fields = (
        created_to_second,
        bitrix24_status_label,
        "state",
        "attempts",
        "reported_to_second",
        "next_attempt_to_second",
        "last_error",
    )
    verbose_name_plural = _("reported to Bitrix24")

    @admin.display(description=_("reported"))
    def reported_to_second(self, obj):
        return datetime_to_second(obj.reported_at)

    @admin.display(description=_("next attempt"))
    def next_attempt_to_second(self, obj):
        return datetime_to_second(obj.next_attempt_at)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "state",
        "installation",
        "provider",
        destination_display,
        message_to_display,
        idgtl_status_label,
        "parts",
        "message_id",
    )
    list_filter = ("state", IdgtlStatusFilter, "installation", "provider", OriginFilter, "created_at")
    # Exact matches, each from an index (see get_search_results). No date hierarchy: its year and month links
    # are a DISTINCT over every row; the "received" filter gives the periods.
    search_fields = ("destination", "message_id", "idgtl_message_uuid")
    search_help_text = _(
        "A whole phone number (written in any way: +7 999 123-45-67, 8 999 123 45 67), a Bitrix24 "
        "message_id or an i-dgtl message UUID."
    )
    list_select_related = ("installation", "provider")
    show_full_result_count = False
    paginator = EstimatedCountPaginator  # no COUNT(*) over the whole table (PostgreSQL)
    inlines = [MessageStatusChangeInline, StatusReportInline]
    fieldsets = (
        (None, {"fields": ("installation", "provider", "message_id", "state", "created_at", anonymised_label)}),
        (_("Text and recipient"), {"fields": ("message_to", "destination", "sender_name", "text", sms_parts_label)}),
        (
            _("i-dgtl"),
            {
                "fields": (
                    "idgtl_message_uuid",
                    idgtl_status_label,
                    "idgtl_status_at",
                    "error_code",
                    "error_message",
                    "send_attempts",
                    "sending_started_at",
                    "sent_at",
                    "final_at",
                    "next_check_at",
                )
            },
        ),
        (
            _("Origin in Bitrix24"),
            {
                "fields": (
                    origin_label,
                    "bindings",
                    "workflow_id",
                    "document_id",
                    "document_type",
                    "author_user_id",
                    "bitrix_sent_at",
                )
            },
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Message._meta.fields] + [
            idgtl_status_label,
            anonymised_label,
            sms_parts_label,
            origin_label,
        ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        """Messages whose recipient, Bitrix24 message_id or i-dgtl UUID is the term, each found through an index
        whatever the table's size (a "contains" search reads every row): the number as i-dgtl's digits
        (``destination``, providers_msg_destination_idx) as the send step writes it, the message_id through
        the (portal, message_id) unique index of every portal, the UUID through its own."""
        term = search_term.strip()
        if not term:
            return queryset, False
        portals = dict(Installation.objects.order_by().values_list("pk", "default_region"))
        condition = Q(idgtl_message_uuid=term) | Q(installation_id__in=list(portals), message_id=term)
        numbers = search_numbers(term, {"RU", *portals.values()})
        if numbers:
            condition |= Q(destination__in=numbers)
        return queryset.filter(condition), False


@admin.register(UnmatchedCallbackEvent)
class UnmatchedCallbackEventAdmin(admin.ModelAdmin):
    """Events i-dgtl called back with before the send's answer told us their uuid. Applied (and gone from
    here) when the uuid is recorded; dropped by beat after the message lifetime. Many or old ones here
    mean answers of i-dgtl that were lost: look the messages up at i-dgtl."""

    list_display = (
        "received_at",
        "installation",
        "message_uuid",
        "status_display",
        "status_time",
        "error_code",
        "dropped_after",
    )
    list_filter = (CallbackStatusFilter, "installation", "received_at")
    search_fields = ("message_uuid",)
    list_select_related = ("installation",)
    fields = readonly_fields = (
        "installation",
        "message_uuid",
        "status_display",
        "status_time",
        "error_code",
        "received_at",
        "dropped_after",
        "raw_event",
    )

    @admin.display(description=_("i-dgtl status"), ordering="status")
    def status_display(self, obj):
        return status_label(IdgtlStatus, obj.status)

    @admin.display(description=_("dropped after"))
    def dropped_after(self, obj):
        return obj.expires_at

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
