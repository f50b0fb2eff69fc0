"""The admin start page: the numbers an operator checks first.

Every figure is one aggregate query (no per-row queries); `dashboard_data()` is what the
`{% b24sms_dashboard %}` tag renders above the app list (templates/admin/index.html). A user sees
only the figures of the models they may view (providers.view_message, view_installation, ...): a
section they may not see is None and is neither computed nor shown.

The page costs the same with ten million messages as with none: messages are counted from the usage
rollups (UsageDay, providers/services/usage.py: today by portal and state, the chart, the quotas), and
the messages table is read only for the messages still waiting (received, sending), which the rollups
leave out, through the ``(state, created_at)`` index: a range as long as the queue, never the table
(bench/scale.py measures it; tests/ops/test_dashboard.py checks the queries).
"""

from datetime import datetime, time, timedelta

from django.db.models import Count, Min, Q, Sum
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from b24sms.health import beat_heartbeat_age
from idgtl.contract import SenderNameStatus
from idgtl.models import IdgtlAccount
from providers.models import (
    Installation,
    InstallationState,
    Message,
    MessageState,
    ProviderRegistration,
    RegistrationState,
    StatusReport,
    StatusReportState,
    UsageDay,
)
from providers.services.quotas import months_parts_used, quota_refusals_recent
from providers.services.usage import usage_day_of, usage_zone
from sendernames.models import SenderNameApplication, SubmissionState
from sendernames.selectors import unreadable_accounts

CHART_DAYS = 14
ATTENTION_LIMIT = 20


def admin_url(name: str, query: str = "") -> str:
    """A changelist URL, or '' when that admin page is not registered."""
    try:
        return reverse(f"admin:{name}") + (f"?{query}" if query else "")
    except NoReverseMatch:
        return ""


def change_url(name: str, pk) -> str:
    try:
        return reverse(f"admin:{name}", args=[pk])
    except NoReverseMatch:
        return ""


def messages_today(now):
    """Messages received today (a USAGE_TIME_ZONE day) by portal and state: rows per portal, a total row.

    From the usage rollups (UsageDay: one aggregate over today's rows), never over the messages table, except
    the messages still waiting (received), which the rollups leave out: those are read from the
    ``(state, created_at)`` index, a range as long as the queue, not the table.
    """
    today = usage_day_of(now)
    start = datetime.combine(today, time.min, tzinfo=usage_zone())
    counted = (
        UsageDay.objects.filter(day=today)
        .order_by()
        .values_list("installation_id", "installation__domain", "state")
        .annotate(n=Sum("messages"))
    )
    waiting = (
        Message.objects.filter(state=MessageState.RECEIVED, created_at__gte=start)
        .order_by()
        .values_list("installation_id", "installation__domain")
        .annotate(n=Count("id"))
    )
    counts = [
        *counted,
        *((installation_id, domain, MessageState.RECEIVED, n) for installation_id, domain, n in waiting),
    ]
    states = list(MessageState.choices)
    portals = {}
    totals = {value: 0 for value, _label in states}
    for installation_id, domain, state, n in counts:
        if not n:
            continue  # a rollup row whose messages all moved on
        row = portals.setdefault(
            installation_id, {"portal": domain, "counts": {value: 0 for value, _label in states}, "total": 0}
        )
        row["counts"][state] = row["counts"].get(state, 0) + n
        row["total"] += n
        totals[state] = totals.get(state, 0) + n
    rows = sorted(portals.values(), key=lambda r: (-r["total"], r["portal"]))
    for row in rows:
        row["cells"] = [row["counts"][value] for value, _label in states]
    date_query = f"created_at__gte={today.isoformat()}"
    return {
        "states": [
            {"value": v, "label": label, "url": admin_url("providers_message_changelist", f"state={v}&{date_query}")}
            for v, label in states
        ],
        "rows": rows,
        "totals": [totals[v] for v, _label in states],
        "total": sum(totals.values()),
        "since": start,
    }


def daily_chart(now, days=CHART_DAYS):
    """Per day of receipt (USAGE_TIME_ZONE): how many were sent (accepted by i-dgtl and not reported unsent:
    now sent, delivered or undelivered), delivered, failed or undelivered. From the usage rollups (one aggregate
    query over the days' rows), never over the messages table.

    Returned with the geometry of an inline SVG grouped bar chart (no JavaScript, no CDN).
    """
    today = usage_day_of(now)
    first = today - timedelta(days=days - 1)
    accepted = [MessageState.SENT, MessageState.DELIVERED, MessageState.UNDELIVERED]
    rows = (
        UsageDay.objects.filter(day__gte=first, day__lte=today)
        .order_by()
        .values("day")
        .annotate(
            sent=Sum("messages", filter=Q(state__in=accepted)),
            delivered=Sum("messages", filter=Q(state=MessageState.DELIVERED)),
            failed=Sum("messages", filter=Q(state__in=[MessageState.FAILED, MessageState.UNDELIVERED])),
        )
    )
    rows = [{key: (value or 0) if key != "day" else value for key, value in row.items()} for row in rows]
    by_day = {row["day"]: row for row in rows}
    series = [
        ("sent", _("Sent"), "#417690"),
        ("delivered", _("Delivered"), "#3a9c4e"),
        ("failed", _("Failed or undelivered"), "#ba2121"),
    ]
    height, bar, gap, group_gap, top, left = 160, 9, 1, 10, 10, 34
    data = []
    for i in range(days):
        day = first + timedelta(days=i)
        row = by_day.get(day, {})
        data.append({"day": day, "values": [row.get(key, 0) for key, _label, _colour in series]})
    peak = max([max(d["values"]) for d in data] + [1])
    group_width = len(series) * (bar + gap) + group_gap
    for i, d in enumerate(data):
        x0 = left + i * group_width
        d["x_label"] = x0 + (len(series) * (bar + gap)) / 2
        d["bars"] = []
        for j, (_key, label, colour) in enumerate(series):
            value = d["values"][j]
            h = round(height * value / peak, 1)
            d["bars"].append(
                {
                    "x": x0 + j * (bar + gap),
                    "y": round(top + height - h, 1),
                    "h": h,
                    "w": bar,
                    "colour": colour,
                    "label": label,
                    "value": value,
                }
            )
    return {
        "days": data,
        "series": [{"label": label, "colour": colour} for _key, label, colour in series],
        "peak": peak,
        "width": left + days * group_width,
        "height": top + height + 34,
        "plot_bottom": top + height,
        "plot_top": top,
        "left": left,
        "label_y": top + height + 14,
    }


def sender_names_by_status():
    """Applications by i-dgtl status; those not submitted yet by our submission state."""
    rows = SenderNameApplication.objects.order_by().values_list("submission_state", "status").annotate(n=Count("id"))
    grouped = {}
    for submission_state, status, n in rows:
        if status:
            key, query = ("status", status), f"status={status}"
            try:
                label = SenderNameStatus(status).label
            except ValueError:
                label = status  # an unknown status string is shown as it is
        else:
            key, query = ("submission", submission_state), f"submission_state={submission_state}"
            try:
                label = SubmissionState(submission_state).label
            except ValueError:
                label = submission_state
        entry = grouped.setdefault(
            key,
            {
                "label": label,
                "code": key[1],
                "n": 0,
                "url": admin_url("sendernames_sendernameapplication_changelist", query),
            },
        )
        entry["n"] += n
    return sorted(grouped.values(), key=lambda e: -e["n"])


def sender_name_reads():
    """i-dgtl accounts whose sender-name statuses cannot be read (no read endpoint): not polled, set by hand."""
    return unreadable_accounts()


def installations_needing_attention(installations=True, registrations=True):
    """Portals that need reinstalling or report an error, and providers that failed to register
    (each part only when asked for: the user may view it)."""
    installations_allowed = installations
    installations = (
        list(
            Installation.objects.filter(
                Q(state=InstallationState.NEEDS_REINSTALL) | (Q(state=InstallationState.ACTIVE) & ~Q(last_error=""))
            )
            .select_related("application")
            .order_by("-updated_at")[:ATTENTION_LIMIT]
        )
        if installations
        else []
    )
    registrations = (
        list(
            ProviderRegistration.objects.filter(state=RegistrationState.FAILED)
            .select_related("provider", "installation")
            .order_by("-updated_at")[:ATTENTION_LIMIT]
        )
        if registrations
        else []
    )
    return {
        "installations": [
            {
                "domain": i.domain,
                "state": i.get_state_display(),
                "error": i.last_error,
                "url": change_url("providers_installation_change", i.pk),
            }
            for i in installations
        ],
        "quotas": quotas_needing_attention() if installations_allowed else [],
        "registrations": [
            {
                "provider": r.provider.code,
                "domain": r.installation.domain,
                "error": r.last_error,
                "url": change_url("providers_provider_change", r.provider_id),
            }
            for r in registrations
        ],
    }


def quotas_needing_attention():
    """Active portals with a quota whose month's parts reached the warning threshold (from the rollups, one
    aggregate query), or that had a message refused by a quota within the last day."""
    portals = list(
        Installation.objects.filter(state=InstallationState.ACTIVE)
        .filter(Q(quota_monthly_parts__isnull=False) | Q(quota_recipient_per_hour__isnull=False))
        .order_by("domain", "id")
    )
    if not portals:
        return []
    used = months_parts_used([p.pk for p in portals if p.quota_monthly_parts is not None])
    refused = quota_refusals_recent([p.pk for p in portals])
    rows = []
    for portal in portals:
        limit, parts = portal.quota_monthly_parts, used.get(portal.pk, 0)
        percent = (100 if parts else 0) if limit == 0 else (parts * 100 // limit if limit else None)
        warning = percent is not None and percent >= portal.quota_warning_percent
        refusal = refused.get(portal.pk)
        if warning or refusal:
            rows.append(
                {
                    "domain": portal.domain,
                    "parts": parts,
                    "limit": limit,
                    "percent": percent,
                    "warning": warning,
                    "refused": (refusal or {}).get("error", ""),
                    "url": change_url("providers_installation_change", portal.pk),
                }
            )
    return rows[:ATTENTION_LIMIT]


def idgtl_balances(now):
    """Each i-dgtl account's last balance read, how old it is, whether it is below the threshold or failed to read."""
    accounts = IdgtlAccount.objects.order_by("name").only(
        "name", "balance", "balance_currency", "balance_at", "low_balance_threshold", "balance_error"
    )
    return [
        {
            "account": a.name,
            "balance": a.balance,
            "currency": a.balance_currency,
            "age": (now - a.balance_at) if a.balance_at else None,
            "threshold": a.low_balance_threshold,
            "low": a.is_balance_low,
            "error": a.balance_error,
            "url": change_url("idgtl_idgtlaccount_change", a.pk),
        }
        for a in accounts
    ]


def waiting(now):
    """The oldest message not yet accepted by i-dgtl, and the oldest status update owed to Bitrix24 (the waiting
    ones only: index ranges of the queues, not the tables)."""
    messages = (
        Message.objects.filter(state__in=[MessageState.RECEIVED, MessageState.SENDING])
        .order_by()
        .aggregate(n=Count("id"), oldest=Min("created_at"))
    )
    reports = (
        StatusReport.objects.filter(state=StatusReportState.PENDING)
        .order_by()
        .aggregate(n=Count("id"), oldest=Min("created_at"))
    )
    return {
        "messages": messages["n"],
        "oldest_message_age": (now - messages["oldest"]) if messages["oldest"] else None,
        "reports": reports["n"],
        "oldest_report_age": (now - reports["oldest"]) if reports["oldest"] else None,
        "messages_url": admin_url("providers_message_changelist", "state__in=received,sending"),
    }


def dashboard_data(now=None, user=None) -> dict:
    """Every section; with a user, only those of the models the user may view (the others are None)."""

    def may_view(*perms):
        return user is None or user.has_perms(perms)

    now = now or timezone.now()
    try:
        heartbeat = beat_heartbeat_age()
    except Exception:  # the cache may be down; the page still renders
        heartbeat = None
    messages = may_view("providers.view_message", "providers.view_statusreport")
    installations = may_view("providers.view_installation")
    registrations = may_view("providers.view_providerregistration", "providers.view_provider")
    return {
        "now": now,
        "today": messages_today(now) if messages else None,
        "chart": daily_chart(now) if messages else None,
        "sender_names": sender_names_by_status() if may_view("sendernames.view_sendernameapplication") else None,
        "sender_name_reads": sender_name_reads() if may_view("sendernames.view_sendernameapplication") else None,
        "attention": installations_needing_attention(installations, registrations)
        if installations or registrations
        else None,
        "waiting": waiting(now) if messages else None,
        "balances": idgtl_balances(now) if may_view("idgtl.view_idgtlaccount") else None,
        "beat_age": heartbeat,
    }
