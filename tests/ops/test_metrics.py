"""GET /metrics: django-prometheus plus b24sms metrics from the database and from any process."""

import os
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from common import metrics

# Redis is tested when the integration stack is configured (CI); the Django cache always.
_BROKER = os.environ.get("CELERY_BROKER_URL", "")
_STORES = ["cache"] + (["redis"] if _BROKER.startswith("redis://") else [])


@pytest.fixture(params=_STORES)
def metric_store(request, settings):
    """Each test runs on both stores: the Django cache (embedded) and Redis (production)."""
    settings.REDIS_URL = _BROKER if request.param == "redis" else ""
    metrics.store().clear()
    yield metrics.store()
    metrics.store().clear()


def scrape(client, **headers):
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))))


@pytest.mark.django_db
def test_metrics_include_django_and_recorded_counters(client, metric_store):
    metrics.record_idgtl_error(4220)
    metrics.record_idgtl_error(4220)
    metrics.record_idgtl_error(None, http_status=503)
    metrics.record_bitrix24_retry("QUERY_LIMIT_EXCEEDED")
    metrics.record_bitrix24_rate_limit_hit()
    metrics.record_idgtl_retry("503")
    metrics.record_send_latency(0.7)
    metrics.record_send_latency(42)
    samples = scrape(client, REMOTE_ADDR="127.0.0.1")
    assert value(samples, "b24sms_idgtl_errors_total", code=4220) == 2
    assert value(samples, "b24sms_idgtl_errors_total", code=503) == 1
    assert value(samples, "b24sms_bitrix24_retries_total", reason="QUERY_LIMIT_EXCEEDED") == 1
    assert value(samples, "b24sms_bitrix24_rate_limit_hits_total", error="QUERY_LIMIT_EXCEEDED") == 1
    assert value(samples, "b24sms_idgtl_retries_total", reason="503") == 1
    assert value(samples, "b24sms_send_latency_seconds_bucket", le="0.5") == 0
    assert value(samples, "b24sms_send_latency_seconds_bucket", le="1.0") == 1
    assert value(samples, "b24sms_send_latency_seconds_bucket", le="60.0") == 2
    assert value(samples, "b24sms_send_latency_seconds_count") == 2
    assert value(samples, "b24sms_send_latency_seconds_sum") == pytest.approx(42.7)
    assert value(samples, "b24sms_scrape_ok", part="database") == 1
    assert any(name.startswith("django_http_requests") for name, _ in samples)


@pytest.mark.django_db
def test_database_gauges(client, metric_store):
    from tests.ops.factories import make_message

    now = timezone.now()
    make_message(state="received", created_at=now - timedelta(minutes=10))
    make_message(state="sending", created_at=now - timedelta(minutes=2), counted=True)
    make_message(state="delivered", created_at=now - timedelta(hours=1), counted=True)
    with CaptureQueriesContext(connection) as queries:
        samples = scrape(client, REMOTE_ADDR="10.1.2.3")
    assert value(samples, "b24sms_messages", state="received") == 1
    assert value(samples, "b24sms_messages", state="sending") == 1
    assert value(samples, "b24sms_messages", state="delivered") == 1
    # Past their claim, messages are counted from the usage rollups: the scrape reads the messages table only
    # for the waiting ones, through the (state, created_at) index (seconds at ten million rows otherwise).
    on_messages = [q["sql"] for q in queries.captured_queries if re.search(r'FROM "providers_message"(\s|$)', q["sql"])]
    assert on_messages and all('"state" IN' in sql for sql in on_messages), on_messages
    assert value(samples, "b24sms_messages", state="failed") == 0
    assert value(samples, "b24sms_queue_waiting_messages") == 2
    assert 590 < value(samples, "b24sms_queue_oldest_waiting_seconds") < 700
    assert value(samples, "b24sms_installations", state="active") == 1


@pytest.mark.django_db
def test_metrics_access(client, settings, staff_user):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    settings.METRICS_TOKEN = "scrape-token-123456"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403  # a token, once set, is required
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert (
        client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-token-123456").status_code
        == 200
    )
    client.force_login(staff_user)
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200


def test_recording_never_raises(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    metrics.record_idgtl_error(4010)  # Redis unreachable: silently not recorded
    metrics.record_send_latency(1.0)


@pytest.mark.django_db
def test_idgtl_client_records_errors_and_retries(metric_store, idgtl, client):
    from idgtl.client import IdgtlClient, IdgtlConfigurationError

    api = IdgtlClient(idgtl.url, idgtl.messages_key, max_retries=2)
    api._sleep = lambda seconds: None
    idgtl.fail_next(1, status=503)
    api.get_balance()
    with pytest.raises(IdgtlConfigurationError):
        IdgtlClient(idgtl.url, "d3Jvbmc6a2V5").get_balance()
    samples = scrape(client, REMOTE_ADDR="127.0.0.1")
    assert value(samples, "b24sms_idgtl_retries_total", reason="503") == 1
    assert value(samples, "b24sms_idgtl_errors_total", code=4012) == 1
    assert value(samples, "b24sms_idgtl_errors_total", code=5030) == 1  # the envelope code of a 503


@pytest.mark.django_db
def test_bitrix24_client_records_rate_limit_hits_and_retries(
    metric_store, bitrix24, installation_factory, client, settings
):
    from providers.services.portal_access import portal_client

    settings.B24_RETRY_BACKOFF = 0.01
    portal = bitrix24.add_portal(client_id="local.metrics.1", client_secret="metrics-secret")
    installation = installation_factory(portal)
    bitrix24.fail_next(2, error="QUERY_LIMIT_EXCEEDED", status=503)
    portal_client(installation).call("app.info")
    samples = scrape(client, REMOTE_ADDR="127.0.0.1")
    assert value(samples, "b24sms_bitrix24_rate_limit_hits_total", error="QUERY_LIMIT_EXCEEDED") == 2
    assert value(samples, "b24sms_bitrix24_retries_total", reason="QUERY_LIMIT_EXCEEDED") == 2
