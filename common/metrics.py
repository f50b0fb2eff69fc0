"""Counters any process records (the registry behind /metrics, which b24sms/metrics.py serves).

Web, workers and beat are separate processes (separate containers in production), so the events
they count are kept in one shared store and exposed by whichever web process is scraped:
a Redis hash when REDIS_URL is set (atomic HINCRBYFLOAT), the Django cache otherwise (embedded
`make run`: good enough for one machine). Recording never raises: a metric must not break sending.

Call from services and clients::

    from common import metrics
    metrics.record_idgtl_error(4220)                      # i-dgtl answered an error (code or HTTP status)
    metrics.record_idgtl_retry("503")                     # a transient i-dgtl failure is retried
    metrics.record_bitrix24_retry("QUERY_LIMIT_EXCEEDED") # a Bitrix24 call is retried (reason: error code)
    metrics.record_bitrix24_rate_limit_hit("QUERY_LIMIT_EXCEEDED")  # Bitrix24 said slow down
    metrics.record_provider_repair("drift")               # a provider the portal had lost was added back
    metrics.record_send_latency(seconds)                  # from receipt by the handler to i-dgtl acceptance
    metrics.record_callback_events_dropped(n)             # kept callback events dropped unmatched
    metrics.record_messages_anonymised(n)                 # old final messages anonymised by retention
"""

import json
import logging
import threading

import redis
from django.conf import settings
from django.core.cache import cache
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

logger = logging.getLogger(__name__)

SEND_LATENCY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
_STORE_PREFIX = "b24sms:metrics:"

COUNTERS = {
    "idgtl_errors": (
        "b24sms_idgtl_errors",
        "i-dgtl error answers by error code (or HTTP status when there is no code).",
        ["code"],
    ),
    "idgtl_retries": ("b24sms_idgtl_retries", "i-dgtl calls retried after a transient failure, by reason.", ["reason"]),
    "bitrix24_retries": (
        "b24sms_bitrix24_retries",
        "Bitrix24 calls retried, by reason (error code, http_5xx, timeout...).",
        ["reason"],
    ),
    "bitrix24_rate_limit_hits": (
        "b24sms_bitrix24_rate_limit_hits",
        "Bitrix24 answers that asked us to slow down.",
        ["error"],
    ),
    "provider_repairs": (
        "b24sms_provider_repairs",
        "Providers added back on a portal that had lost them, by reason (app_update, reinstall, drift).",
        ["reason"],
    ),
    "callback_events_dropped": (
        "b24sms_callback_inbox_dropped_events",
        "i-dgtl callback events dropped from the inbox: their message uuid was never recorded "
        "within the message lifetime.",
        [],
    ),
    "quota_refusals": (
        "b24sms_quota_refusals",
        "Messages not sent because their portal's quota was reached, by reason (monthly_parts, recipient_per_hour).",
        ["reason"],
    ),
    "messages_anonymised": (
        "b24sms_messages_anonymised",
        "Final messages whose text and phone numbers retention removed (MESSAGES_RETENTION_DAYS).",
        [],
    ),
}


# --- The shared store ---------------------------------------------------------------------------
class _RedisStore:
    def __init__(self, url):
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


# --- Reading (the /metrics view) ----------------------------------------------------------------
def stored_counter_families():
    """The recorded counters and the send-latency histogram, as Prometheus families (read at scrape time)."""
    s = store()
    for key, (name, doc, labels) in COUNTERS.items():
        family = CounterMetricFamily(name, doc, labels=labels)
        for field, value in sorted(s.read(key).items()):
            family.add_metric(json.loads(field), value)
        yield family
    raw = s.read("send_latency")
    buckets = [(floatToGoString(b), raw.get(floatToGoString(b), 0.0)) for b in SEND_LATENCY_BUCKETS] + [
        ("+Inf", raw.get("count", 0.0))
    ]
    yield HistogramMetricFamily(
        "b24sms_send_latency_seconds",
        "From receipt by the handler to acceptance by i-dgtl.",
        buckets=buckets,
        sum_value=raw.get("sum", 0.0),
    )
