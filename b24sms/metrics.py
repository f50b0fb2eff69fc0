"""Prometheus metrics: counters any process can record, and gauges read from the database at scrape time.

Web, workers and beat are separate processes (separate containers in production), so the events
they count are kept in one shared store and exposed by whichever web process is scraped:
a Redis hash when REDIS_URL is set (atomic HINCRBYFLOAT), the Django cache otherwise (embedded
`make run`: good enough for one machine). Recording never raises: a metric must not break sending.

Call from services and clients::

    from b24sms import metrics
    metrics.record_idgtl_error(4220)                      # i-dgtl answered an error (code or HTTP status)
    metrics.record_idgtl_retry("503")                     # a transient i-dgtl failure is retried
    metrics.record_bitrix24_retry("QUERY_LIMIT_EXCEEDED") # a Bitrix24 call is retried (reason: error code)
    metrics.record_bitrix24_rate_limit_hit("QUERY_LIMIT_EXCEEDED")  # Bitrix24 said slow down
    metrics.record_provider_repair("drift")               # a provider the portal had lost was added back
    metrics.record_send_latency(seconds)                  # from receipt by the handler to i-dgtl acceptance
    metrics.record_callback_events_dropped(n)             # kept callback events dropped unmatched
    metrics.record_messages_anonymised(n)                 # old final messages anonymised by retention

GET /metrics: django-prometheus's own metrics plus ours (names start with ``b24sms_``).
Access: a staff session, ``Authorization: Bearer $METRICS_TOKEN`` when METRICS_TOKEN is set, or a
client address in METRICS_ALLOWED_NETWORKS (default: loopback and private networks) when no token is
set, the address being the one TRUSTED_PROXIES forwarded (b24sms/netaddr.py). Behind a proxy every
client looks private: `manage.py check --deploy` requires METRICS_TOKEN (b24sms.E001).
"""
import json
import logging
import secrets
import threading

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Min
from django.http import HttpResponseForbidden
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from b24sms import netaddr

logger = logging.getLogger(__name__)

SEND_LATENCY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
_STORE_PREFIX = "b24sms:metrics:"

COUNTERS = {
    "idgtl_errors": ("b24sms_idgtl_errors", "i-dgtl error answers by error code (or HTTP status when there is no code).", ["code"]),
    "idgtl_retries": ("b24sms_idgtl_retries", "i-dgtl calls retried after a transient failure, by reason.", ["reason"]),
    "bitrix24_retries": ("b24sms_bitrix24_retries", "Bitrix24 calls retried, by reason (error code, http_5xx, timeout...).", ["reason"]),
    "bitrix24_rate_limit_hits": ("b24sms_bitrix24_rate_limit_hits", "Bitrix24 answers that asked us to slow down.", ["error"]),
    "provider_repairs": ("b24sms_provider_repairs", "Providers added back on a portal that had lost them, by reason "
                         "(app_update, reinstall, drift).", ["reason"]),
    "callback_events_dropped": ("b24sms_callback_inbox_dropped_events",
                                "i-dgtl callback events dropped from the inbox: their message uuid was never recorded "
                                "within the message lifetime.", []),
    "quota_refusals": ("b24sms_quota_refusals", "Messages not sent because their portal's quota was reached, by reason "
                       "(monthly_parts, recipient_per_hour).", ["reason"]),
    "messages_anonymised": ("b24sms_messages_anonymised", "Final messages whose text and phone numbers retention "
                            "removed (MESSAGES_RETENTION_DAYS).", []),
}


# --- The shared store ---------------------------------------------------------------------------
class _RedisStore:
    def __init__(self, url):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def incr(self, metric, field, amount):
        self.client.hincrbyfloat(_STORE_PREFIX + metric, field, amount)

    def incr_many(self, metric, amounts: dict):
        pipe = self.client.pipeline(transaction=False)
        for field, amount in amounts.items():
            pipe.hincrbyfloat(_STORE_PREFIX + metric, field, amount)
        pipe.execute()

    def read(self, metric) -> dict:
        return {k.decode(): float(v) for k, v in self.client.hgetall(_STORE_PREFIX + metric).items()}

    def clear(self):
        keys = list(self.client.scan_iter(_STORE_PREFIX + "*"))
        if keys:
            self.client.delete(*keys)


class _CacheStore:
    """One cache entry per metric holding {field: value}; read-modify-write under a process lock."""
    _lock = threading.Lock()

    def incr(self, metric, field, amount):
        self.incr_many(metric, {field: amount})

    def incr_many(self, metric, amounts):
        with self._lock:
            values = cache.get(_STORE_PREFIX + metric) or {}
            for field, amount in amounts.items():
                values[field] = values.get(field, 0.0) + amount
            cache.set(_STORE_PREFIX + metric, values, timeout=None)

    def read(self, metric):
        return dict(cache.get(_STORE_PREFIX + metric) or {})

    def clear(self):
        cache.delete_many([_STORE_PREFIX + m for m in (*COUNTERS, "send_latency")])


_store = None
_store_url = None


def store():
    global _store, _store_url
    url = settings.REDIS_URL
    if _store is None or url != _store_url:
        _store, _store_url = (_RedisStore(url) if url else _CacheStore()), url
    return _store


def _labels_key(values) -> str:
    return json.dumps([str(v) for v in values], ensure_ascii=False)


def _count(counter: str, *labels, amount: float = 1.0):
    try:
        store().incr(counter, _labels_key(labels), amount)
    except Exception:  # never let a metric break the work it measures
        logger.debug("metric %s not recorded", counter, exc_info=True)


# --- Recording (called by clients and services) --------------------------------------------------
def record_idgtl_error(code, *, http_status=None):
    _count("idgtl_errors", code if code is not None else (http_status if http_status is not None else "none"))


def record_quota_refusal(reason, count=1):
    _count("quota_refusals", reason, amount=count)


def record_idgtl_retry(reason):
    _count("idgtl_retries", reason)


def record_bitrix24_retry(reason):
    _count("bitrix24_retries", reason)


def record_bitrix24_rate_limit_hit(error="QUERY_LIMIT_EXCEEDED"):
    _count("bitrix24_rate_limit_hits", error)


def record_provider_repair(reason):
    _count("provider_repairs", reason)


def record_callback_events_dropped(n: int):
    _count("callback_events_dropped", amount=float(n))


def record_messages_anonymised(n: int):
    if n:
        _count("messages_anonymised", amount=float(n))


def record_send_latency(*seconds: float):
    """One observation per message (several at once for a batch: one round trip to the store)."""
    if not seconds:
        return
    try:
        amounts = {"count": float(len(seconds)), "sum": float(sum(seconds))}
        for bound in SEND_LATENCY_BUCKETS:
            n = sum(1 for value in seconds if value <= bound)
            if n:
                amounts[floatToGoString(bound)] = float(n)
        store().incr_many("send_latency", amounts)
    except Exception:
        logger.debug("send latency not recorded", exc_info=True)


# --- Scrape-time collector ----------------------------------------------------------------------
def _database_gauges():
    from providers.models import (
        Installation, Message, MessageState, ProviderRegistration, StatusReport, StatusReportState, UnmatchedCallbackEvent,
    )
    from sendernames.models import SenderNameApplication

    now = timezone.now()
    messages = GaugeMetricFamily("b24sms_messages", "Messages by pipeline state.", labels=["state"])
    by_state = dict(Message.objects.order_by().values_list("state").annotate(n=Count("id")))
    for state in MessageState.values:
        messages.add_metric([state], by_state.get(state, 0))
    yield messages

    waiting = Message.objects.filter(state__in=[MessageState.RECEIVED, MessageState.SENDING]).order_by()
    agg = waiting.aggregate(n=Count("id"), oldest=Min("created_at"))
    yield GaugeMetricFamily("b24sms_queue_waiting_messages", "Messages received and not yet accepted by i-dgtl.", value=agg["n"])
    yield GaugeMetricFamily(
        "b24sms_queue_oldest_waiting_seconds", "Age of the oldest message not yet accepted by i-dgtl (0 when none).",
        value=(now - agg["oldest"]).total_seconds() if agg["oldest"] else 0)

    reports = StatusReport.objects.filter(state=StatusReportState.PENDING).order_by().aggregate(n=Count("id"), oldest=Min("created_at"))
    yield GaugeMetricFamily("b24sms_status_reports_pending", "Status updates owed to Bitrix24.", value=reports["n"])
    yield GaugeMetricFamily(
        "b24sms_status_reports_oldest_pending_seconds", "Age of the oldest status update owed to Bitrix24 (0 when none).",
        value=(now - reports["oldest"]).total_seconds() if reports["oldest"] else 0)

    inbox = UnmatchedCallbackEvent.objects.order_by().aggregate(n=Count("id"), oldest=Min("received_at"))
    yield GaugeMetricFamily(
        "b24sms_callback_inbox_waiting_events",
        "i-dgtl callback events kept until the uuid of their message is recorded (the callback came before the "
        "send's answer).", value=inbox["n"])
    yield GaugeMetricFamily(
        "b24sms_callback_inbox_oldest_waiting_seconds",
        "Age of the oldest kept callback event (0 when none); dropped past the message lifetime.",
        value=(now - inbox["oldest"]).total_seconds() if inbox["oldest"] else 0)

    for name, doc, model, field in (
        ("b24sms_installations", "Installations (portals) by state.", Installation, "state"),
        ("b24sms_provider_registrations", "Provider registrations by state.", ProviderRegistration, "state"),
        ("b24sms_sender_name_applications", "Sender-name applications by i-dgtl status ('' before submission).", SenderNameApplication, "status"),
    ):
        family = GaugeMetricFamily(name, doc, labels=[field])
        for value, n in model.objects.order_by().values_list(field).annotate(n=Count("id")):
            family.add_metric([value or ""], n)
        yield family

    yield from _idgtl_balance_gauges(now)


def _idgtl_balance_gauges(now):
    """Per i-dgtl account (one small query): the last balance read, its age, the threshold, a failed last read."""
    from idgtl.models import IdgtlAccount

    balance = GaugeMetricFamily("b24sms_idgtl_balance", "i-dgtl balance of each account, as last read (GET /balance).",
                                labels=["account", "currency"])
    age = GaugeMetricFamily("b24sms_idgtl_balance_age_seconds",
                            "Seconds since the i-dgtl balance of each account was last read (-1: never).", labels=["account"])
    threshold = GaugeMetricFamily("b24sms_idgtl_balance_low_threshold",
                                  "Low-balance threshold of each i-dgtl account that has one.", labels=["account"])
    failing = GaugeMetricFamily("b24sms_idgtl_balance_read_error",
                                "1 when the last read of the account's i-dgtl balance failed.", labels=["account"])
    rows = IdgtlAccount.objects.order_by("name").values_list(
        "name", "balance", "balance_currency", "balance_at", "low_balance_threshold", "balance_error")
    for name, amount, currency, read_at, low, error in rows:
        if amount is not None:
            balance.add_metric([name, currency], float(amount))
        age.add_metric([name], (now - read_at).total_seconds() if read_at else -1)
        if low is not None:
            threshold.add_metric([name], float(low))
        failing.add_metric([name], 1 if error else 0)
    yield from (balance, age, threshold, failing)


def _stored_counters():
    s = store()
    for key, (name, doc, labels) in COUNTERS.items():
        family = CounterMetricFamily(name, doc, labels=labels)
        for field, value in sorted(s.read(key).items()):
            family.add_metric(json.loads(field), value)
        yield family
    raw = s.read("send_latency")
    buckets = [(floatToGoString(b), raw.get(floatToGoString(b), 0.0)) for b in SEND_LATENCY_BUCKETS] + [("+Inf", raw.get("count", 0.0))]
    yield HistogramMetricFamily(
        "b24sms_send_latency_seconds", "From receipt by the handler to acceptance by i-dgtl.",
        buckets=buckets, sum_value=raw.get("sum", 0.0))


class B24smsCollector:
    """Read at every scrape; each part reports b24sms_scrape_ok so a broken part is visible."""

    def collect(self):
        ok = GaugeMetricFamily("b24sms_scrape_ok", "1 when this part of the b24sms metrics could be read.", labels=["part"])
        for part, produce in (("database", _database_gauges), ("counters", _stored_counters)):
            try:
                families = list(produce())
            except Exception:
                logger.warning("metrics part %s unavailable", part, exc_info=True)
                ok.add_metric([part], 0)
                continue
            ok.add_metric([part], 1)
            yield from families
        try:
            from b24sms.health import beat_heartbeat_age

            age = beat_heartbeat_age()
            yield GaugeMetricFamily("b24sms_beat_heartbeat_age_seconds", "Seconds since beat's last heartbeat (-1: never).",
                                    value=age.total_seconds() if age is not None else -1)
        except Exception:
            logger.debug("heartbeat age unavailable", exc_info=True)
        yield ok

    def describe(self):
        return []  # collected lazily: no database access at registration


_registered = False
_register_lock = threading.Lock()


def register_collector(registry=None):
    global _registered
    from prometheus_client import REGISTRY

    with _register_lock:
        if not _registered:
            (registry or REGISTRY).register(B24smsCollector())
            _registered = True


# --- The /metrics view ----------------------------------------------------------------------------
def is_staff(request) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def metrics_token_presented(request) -> bool:
    """`Authorization: Bearer METRICS_TOKEN`, with METRICS_TOKEN set (also opens /healthz's details)."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    return bool(token) and header.startswith("Bearer ") and secrets.compare_digest(header[7:].encode(), token.encode())


def _client_allowed(request) -> bool:
    if is_staff(request):
        return True
    if settings.METRICS_TOKEN:
        return metrics_token_presented(request)
    # No token (refused by `manage.py check --deploy`): the client's address, as trusted proxies tell it.
    return netaddr.address_in(netaddr.client_ip(request), settings.METRICS_ALLOWED_NETWORKS)


def metrics_view(request):
    from django_prometheus.exports import ExportToDjangoView

    if not _client_allowed(request):
        return HttpResponseForbidden("metrics: forbidden\n", content_type="text/plain")
    register_collector()
    return ExportToDjangoView(request)
