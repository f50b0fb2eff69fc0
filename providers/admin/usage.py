"""Admin: usage per portal (a chart of SMS parts per day, a table per month), monthly statements to
download (one portal, or every portal of a month) and tariffs.

The usage pages read the daily rollups only (providers/services/usage.py), never the messages table.
Who sees what: the usage pages need providers.view_usageday; amounts and the downloads also need
providers.view_tariff (both are Viewer permissions, b24sms/roles.py). Tariffs are changed with the
tariff's own add/change/delete permissions (not given to Operator: prices are for whoever bills).
"""

from datetime import date, timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from providers.models import USAGE_STATES, Installation, MessageState, Tariff, UsageDay
from providers.services import statements as statement_services
from providers.services.tariffs import tariff_clean, tariff_period_label, tariff_save
from providers.services.usage import usage_parts_by_day, usage_today

MONTHS_IN_TABLE = 12
STATE_COLOURS = {  # the chart's stacks, bottom up
    MessageState.DELIVERED: "#3a9c4e",
    MessageState.SENT: "#417690",
    MessageState.SENDING: "#9fb7c6",
    MessageState.UNDELIVERED: "#e09a2b",
    MessageState.FAILED: "#ba2121",
}


def _month_or_current(value: str | None) -> date:
    """The month of ``?month=YYYY-MM`` (a bad or future one: 404), or the current month."""
    today = usage_today()
    if not value:
        return today.replace(day=1)
    try:
        return statement_services.month_parse(value, today=today)
    except ValueError as exc:
        raise Http404(str(exc)) from exc


def _previous_month(month: date) -> date:
    return (month - timedelta(days=1)).replace(day=1)


def _next_month(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


def parts_chart(*, installation_id: int, month: date) -> dict:
    """Bars of SMS parts per day of ``month``, stacked by state, as plain SVG geometry (no JavaScript, no CDN)."""
    last = statement_services.month_last_day(month)
    by_day = usage_parts_by_day(installation_id=installation_id, date_from=month, date_to=last)
    labels = dict(MessageState.choices)
    states = list(STATE_COLOURS)
    days = [month + timedelta(days=i) for i in range((last - month).days + 1)]
    totals = [sum(max(0, by_day.get(day, {}).get(state, 0)) for state in states) for day in days]
    peak = max(totals + [1])
    height, bar, gap, top, left = 180, 16, 6, 12, 44
    bars = []
    for index, day in enumerate(days):
        x = left + index * (bar + gap)
        y = top + height
        stack = []
        for state in states:
            value = max(0, by_day.get(day, {}).get(state, 0))
            h = round(height * value / peak, 1)
            if value:
                y -= h
                stack.append(
                    {"y": round(y, 1), "h": h, "colour": STATE_COLOURS[state], "state": labels[state], "value": value}
                )
        bars.append(
            {
                "day": day,
                "x": x,
                "w": bar,
                "stack": stack,
                "total": totals[index],
                "label_x": x + bar / 2,
                "show_label": index % 2 == 0 or len(days) <= 16,
            }
        )
    ticks = [{"value": round(peak * f), "y": round(top + height - height * f, 1)} for f in (0, 0.5, 1)]
    return {
        "bars": bars,
        "peak": peak,
        "width": left + len(days) * (bar + gap),
        "height": top + height + 30,
        "plot_bottom": top + height,
        "left": left,
        "label_y": top + height + 14,
        "ticks": ticks,
        "legend": [{"label": labels[s], "colour": STATE_COLOURS[s]} for s in states],
        "total": sum(totals),
    }


@admin.register(UsageDay)
class UsageAdmin(admin.ModelAdmin):
    """ "Usage" in the admin: the portals of a month (and the downloads for all of them), one page per portal."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def may_see_amounts(self, request) -> bool:
        return request.user.has_perm("providers.view_tariff")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("portal/<int:installation_id>/", wrap(self.portal_view), name="providers_usageday_portal"),
            path("statement/", wrap(self.statement_view), name="providers_usageday_statement"),
            *super().get_urls(),
        ]

    def _context(self, request, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "has_view_permission": True,
            "may_see_amounts": self.may_see_amounts(request),
            **extra,
        }

    def changelist_view(self, request, extra_context=None):
        """Every portal with usage in the month: messages, parts, billable parts, amount; the month's downloads."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        month = _month_or_current(request.GET.get("month"))
        statements = statement_services.statements_build(month=month)
        for statement in statements:
            statement.url = (
                reverse("admin:providers_usageday_portal", args=[statement.installation_id]) + f"?month={month:%Y-%m}"
            )
        today = usage_today()
        return TemplateResponse(
            request,
            "providers/admin/usage_index.html",
            self._context(
                request,
                title=gettext("Usage by portal"),
                month=month,
                statements=statements,
                total_parts=sum(s.parts for s in statements),
                total_amount=sum(s.amount for s in statements),
                total_billable=sum(s.billable_parts for s in statements),
                total_messages=sum(s.messages for s in statements),
                previous_month=_previous_month(month),
                next_month=_next_month(month) if _next_month(month) <= today else None,
                portals=Installation.objects.order_by("domain").values_list("pk", "domain"),
            ),
        )

    def portal_view(self, request, installation_id: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        installation = get_object_or_404(Installation, pk=installation_id)
        month = _month_or_current(request.GET.get("month"))
        today = usage_today()
        months = []
        cursor = today.replace(day=1)
        for _i in range(MONTHS_IN_TABLE):
            statement = statement_services.statement_build(installation=installation, month=cursor)
            statement.url = f"?month={cursor:%Y-%m}"
            months.append(statement)
            cursor = _previous_month(cursor)
        current = statement_services.statement_build(installation=installation, month=month)
        states = dict(MessageState.choices)
        return TemplateResponse(
            request,
            "providers/admin/usage_portal.html",
            self._context(
                request,
                title=gettext("Usage of %(portal)s") % {"portal": installation.domain},
                installation=installation,
                month=month,
                chart=parts_chart(installation_id=installation.pk, month=month),
                months=months,
                statement=current,
                state_labels=[states[s] for s in USAGE_STATES],
                previous_month=_previous_month(month),
                next_month=_next_month(month) if _next_month(month) <= today else None,
            ),
        )

    def statement_view(self, request):
        """GET ?month=YYYY-MM&format=csv|xlsx[&portal=id]: the statement file of one portal or of all."""
        if not (self.has_view_permission(request) and self.may_see_amounts(request)):
            raise PermissionDenied
        month = _month_or_current(request.GET.get("month"))
        file_format = request.GET.get("format", "xlsx")
        if file_format not in ("csv", "xlsx"):
            raise Http404(gettext("Unknown format."))
        portal, domain = request.GET.get("portal"), None
        if portal:
            if not portal.isdigit():
                raise Http404(gettext("Unknown portal."))
            installation = get_object_or_404(Installation, pk=int(portal))
            statements = [statement_services.statement_build(installation=installation, month=month)]
            domain = installation.domain
        else:
            statements = statement_services.statements_build(month=month)
        content, content_type = statement_services.statements_file(statements, month=month, file_format=file_format)
        response = HttpResponse(content, content_type=content_type)
        name = statement_services.statement_file_name(month, domain, file_format=file_format)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


# --- tariffs ----------------------------------------------------------------------------------------------
class TariffForm(forms.ModelForm):
    billable_states = forms.MultipleChoiceField(
        label=_("billable states"),
        widget=forms.CheckboxSelectMultiple,
        choices=[(state.value, state.label) for state in USAGE_STATES],
        help_text=_(
            "Messages in these states are billed. Default: every message i-dgtl accepted (sent, delivered, "
            "undelivered)."
        ),
    )

    class Meta:
        model = Tariff
        fields = ["installation", "price_per_part", "billable_states", "valid_from", "valid_until", "comment"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        candidate = Tariff(pk=self.instance.pk, **{f: data.get(f) for f in self.Meta.fields})
        try:
            tariff_clean(tariff=candidate)
        except ValidationError as exc:
            for field, errors in exc.error_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return data


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    form = TariffForm
    list_display = ["scope", "price_per_part", "period", "states", "comment", "updated_at"]
    list_filter = [("installation", admin.EmptyFieldListFilter), "installation"]
    list_select_related = ["installation"]
    search_fields = ["installation__domain", "comment"]

    @admin.display(description=_("portal"), ordering="installation__domain")
    def scope(self, obj):
        return obj.installation.domain if obj.installation_id else gettext("Default tariff")

    @admin.display(description=_("valid"), ordering="valid_from")
    def period(self, obj):
        return tariff_period_label(obj)

    @admin.display(description=_("billable states"))
    def states(self, obj):
        labels = dict(MessageState.choices)
        return ", ".join(str(labels.get(state, state)) for state in obj.billable_states)

    def save_model(self, request, obj, form, change):
        tariff_save(tariff=obj)
