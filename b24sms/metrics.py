"""GET /metrics: django-prometheus's own metrics plus ours (names start with ``b24sms_``).

Ours are the counters any process records (common/metrics.py: the registry and its shared store) and
gauges read from the database at scrape time (messages by state, queues, installations, registrations,
sender-name applications, i-dgtl balances), read here because only this floor may read every app.

Access: a staff session, ``Authorization: Bearer $METRICS_TOKEN`` when METRICS_TOKEN is set, or a
client address in METRICS_ALLOWED_NETWORKS (default: loopback and private networks) when no token is
set, the address being the one TRUSTED_PROXIES forwarded (common/netaddr.py). Behind a proxy every
client looks private: `manage.py check --deploy` requires METRICS_TOKEN (b24sms.E001).
"""

import logging
import threading

from django.conf import settings
from django.db.models import Count, Min, Sum
from django.http import HttpResponseForbidden
from django.utils import timezone
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from b24sms.health import beat_heartbeat_age
from b24sms.ops_access import is_staff, metrics_token_presented
from common import metrics, netaddr
from idgtl.models import IdgtlAccount
from providers.models import (
    Installation,
    Message,
    MessageState,
    ProviderRegistration,
    StatusReport,
    StatusReportState,
    UnmatchedCallbackEvent,
    UsageDay,
)
from sendernames.models import SenderNameApplication

logger = logging.getLogger(__name__)


# --- Scrape-time collector ----------------------------------------------------------------------
def _database_gauges():
    now = timezone.now()
    # Never a count over the whole messages table (seconds at ten million rows, on every scrape): the states
    # a message reaches after its claim come from the usage rollups (each message counted once, in its
    # current state: providers/services/usage.py), the waiting ones from the (state, created_at) index.
    waiting = (
        Message.objects.filter(state__in=[MessageState.RECEIVED, MessageState.SENDING])
        .order_by()
        .values("state")
        .annotate(n=Count("id"), oldest=Min("created_at"))
    )
    waiting = {row["state"]: row for row in waiting}
    by_state = dict(UsageDay.objects.order_by().values_list("state").annotate(n=Sum("messages")))
    by_state[MessageState.RECEIVED] = waiting.get(MessageState.RECEIVED, {}).get("n", 0)
    messages = GaugeMetricFamily("b24sms_messages", "Messages by pipeline state.", labels=["state"])
    for state in MessageState.values:
        messages.add_metric([state], by_state.get(state) or 0)
    yield messages

    oldest = min((row["oldest"] for row in waiting.values()), default=None)
    yield GaugeMetricFamily(
        "b24sms_queue_waiting_messages",
        "Messages received and not yet accepted by i-dgtl.",
        value=sum(row["n"] for row in waiting.values()),
    )
    yield GaugeMetricFamily(
        "b24sms_queue_oldest_waiting_seconds",
        "Age of the oldest message not yet accepted by i-dgtl (0 when none).",
        value=(now - oldest).total_seconds() if oldest else 0,
    )

    reports = (
        StatusReport.objects.filter(state=StatusReportState.PENDING)
        .order_by()
        .aggregate(n=Count("id"), oldest=Min("created_at"))
    )
    yield GaugeMetricFamily("b24sms_status_reports_pending", "Status updates owed to Bitrix24.", value=reports["n"])
    yield GaugeMetricFamily(
        "b24sms_status_reports_oldest_pending_seconds",
        "Age of the oldest status update owed to Bitrix24 (0 when none).",
        value=(now - reports["oldest"]).total_seconds() if reports["oldest"] else 0,
    )

    inbox = UnmatchedCallbackEvent.objects.order_by().aggregate(n=Count("id"), oldest=Min("received_at"))
    yield GaugeMetricFamily(
        "b24sms_callback_inbox_waiting_events",
        "i-dgtl callback events kept until the uuid of their message is recorded (the callback came before the "
        "send's answer).",
        value=inbox["n"],
    )
    yield GaugeMetricFamily(
        "b24sms_callback_inbox_oldest_waiting_seconds",
        "Age of the oldest kept callback event (0 when none); dropped past the message lifetime.",
        value=(now - inbox["oldest"]).total_seconds() if inbox["oldest"] else 0,
    )

    for name, doc, model, field in (
        ("b24sms_installations", "Installations (portals) by state.", Installation, "state"),
        ("b24sms_provider_registrations", "Provider registrations by state.", ProviderRegistration, "state"),
        (
            "b24sms_sender_name_applications",
            "Sender-name applications by i-dgtl status ('' before submission).",
            SenderNameApplication,
            "status",
        ),
    ):
        family = GaugeMetricFamily(name, doc, labels=[field])
        for value, n in model.objects.order_by().values_list(field).annotate(n=Count("id")):
            family.add_metric([value or ""], n)
        yield family

    yield from _idgtl_balance_gauges(now)


def _idgtl_balance_gauges(now):
    """Per i-dgtl account (one small query): the last balance read, its age, the threshold, a failed last read."""
    balance = GaugeMetricFamily(
        "b24sms_idgtl_balance",
        "i-dgtl balance of each account, as last read (GET /balance).",
        labels=["account", "currency"],
    )
    age = GaugeMetricFamily(
        "b24sms_idgtl_balance_age_seconds",
        "Seconds since the i-dgtl balance of each account was last read (-1: never).",
        labels=["account"],
    )
    threshold = GaugeMetricFamily(
        "b24sms_idgtl_balance_low_threshold",
        "Low-balance threshold of each i-dgtl account that has one.",
        labels=["account"],
    )
    failing = GaugeMetricFamily(
        "b24sms_idgtl_balance_read_error",
        "1 when the last read of the account's i-dgtl balance failed.",
        labels=["account"],
    )
    rows = IdgtlAccount.objects.order_by("name").values_list(
        "name", "balance", "balance_currency", "balance_at", "low_balance_threshold", "balance_error"
    )
    for name, amount, currency, read_at, low, error in rows:
        if amount is not None:
            balance.add_metric([name, currency], float(amount))
        age.add_metric([name], (now - read_at).total_seconds() if read_at else -1)
        if low is not None:
            threshold.add_metric([name], float(low))
        failing.add_metric([name], 1 if error else 0)
    yield from (balance, age, threshold, failing)


class B24smsCollector:
    """Read at every scrape; each part reports b24sms_scrape_ok so a broken part is visible."""

    def collect(self):
        ok = GaugeMetricFamily(
            "b24sms_scrape_ok", "1 when this part of the b24sms metrics could be read.", labels=["part"]
        )
        for part, produce in (("database", _database_gauges), ("counters", metrics.stored_counter_families)):
            try:
                families = list(produce())
            except Exception:
                logger.warning("metrics part %s unavailable", part, exc_info=True)
                ok.add_metric([part], 0)
                continue
            ok.add_metric([part], 1)
            yield from families
        try:
            age = beat_heartbeat_age()
            yield GaugeMetricFamily(
                "b24sms_beat_heartbeat_age_seconds",
                "Seconds since beat's last heartbeat (-1: never).",
                value=age.total_seconds() if age is not None else -1,
            )
        except Exception:
            logger.debug("heartbeat age unavailable", exc_info=True)
        yield ok

    def describe(self):
        return []  # collected lazily: no database access at registration


_registered = False
_register_lock = threading.Lock()


def register_collector(registry=None):
    global _registered
    with _register_lock:
        if not _registered:
            (registry or REGISTRY).register(B24smsCollector())
            _registered = True


# --- The /metrics view ----------------------------------------------------------------------------
def _client_allowed(request) -> bool:
    if is_staff(request):
        return True
    if settings.METRICS_TOKEN:
        return metrics_token_presented(request)
    # No token (refused by `manage.py check --deploy`): the client's address, as trusted proxies tell it.
    return netaddr.address_in(netaddr.client_ip(request), settings.METRICS_ALLOWED_NETWORKS)


def metrics_view(request):
    if not _client_allowed(request):
        return HttpResponseForbidden("metrics: forbidden\n", content_type="text/plain")
    register_collector()
    return ExportToDjangoView(request)
