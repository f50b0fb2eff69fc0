"""GET /healthz: database, broker and beat, each named when it fails; and the container probe."""

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone

from b24sms import healthprobe
from b24sms.celery import app
from b24sms.tasks import BEAT_HEARTBEAT_KEY, beat_heartbeat
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def broker_up(tmp_path, monkeypatch):
    # Celery's broker_url prefers the CELERY_BROKER_URL environment variable (set in CI).
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setattr(app.conf, "broker_url", url)


@pytest.fixture
def broker_down(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")


@pytest.fixture
def heartbeat():
    cache.delete(BEAT_HEARTBEAT_KEY)
    yield
    cache.delete(BEAT_HEARTBEAT_KEY)


@pytest.fixture
def operator(settings):
    """The headers of a caller allowed to see the details: the METRICS_TOKEN bearer."""
    settings.METRICS_TOKEN = "health-details-token-0123456789"
    return {"Authorization": "Bearer health-details-token-0123456789"}


@pytest.mark.django_db
def test_all_parts_ok_after_beat_ran(client, broker_up, heartbeat, operator):
    beat_heartbeat()
    response = client.get("/healthz", headers=operator)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "broker", "beat"}
    assert body["checks"]["beat"]["age_seconds"] < 5


@pytest.mark.django_db
def test_beat_never_ran_is_named(client, broker_up, heartbeat, operator):
    response = client.get("/healthz", headers=operator)
    assert response.status_code == 503
    assert response.json()["failing"] == ["beat"]
    assert "no heartbeat" in response.json()["checks"]["beat"]["error"]


@pytest.mark.django_db
def test_stale_heartbeat_fails(client, broker_up, heartbeat, settings, operator):
    settings.HEALTHZ_BEAT_MAX_AGE = 120
    cache.set(BEAT_HEARTBEAT_KEY, (timezone.now() - timedelta(minutes=5)).isoformat(), timeout=None)
    body = client.get("/healthz", headers=operator).json()
    assert body["failing"] == ["beat"] and "300 s ago" in body["checks"]["beat"]["error"]


@pytest.mark.django_db
def test_broker_down_is_named_quickly(client, broker_down, heartbeat):
    beat_heartbeat()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"]["ms"] < 5000
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_database_down_is_named(client, broker_up, heartbeat, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def broken(self, sql, params=None):
        raise RuntimeError("database is gone")

    beat_heartbeat()
    with monkeypatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", broken)
        response = client.get("/healthz")
    assert response.status_code == 503
    assert "database" in response.json()["failing"]


@pytest.mark.django_db
def test_an_anonymous_caller_gets_the_verdict_without_internal_error_texts(
    client, broker_down, heartbeat, settings, staff_user, monkeypatch
):
    """A stranger learns which part fails, never the exception text (hosts, ports, library internals)."""
    from django.db.backends.utils import CursorWrapper

    def broken(self, sql, params=None):
        raise RuntimeError("could not connect to server db-internal.example:5432 as user b24sms")

    settings.METRICS_TOKEN = "health-details-token-0123456789"
    with monkeypatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", broken)
        anonymous = client.get("/healthz")
        wrong_token = client.get("/healthz", headers={"Authorization": "Bearer guessed"})
        with_token = client.get("/healthz", headers={"Authorization": "Bearer health-details-token-0123456789"})
    for response in (anonymous, wrong_token):
        assert response.status_code == 503
        body = response.json()
        assert set(body["failing"]) == {"database", "broker", "beat"}
        assert all(set(check) == {"ok", "ms"} for check in body["checks"].values()), body
        assert "db-internal" not in response.content.decode() and "redis" not in response.content.decode()
    assert "db-internal.example" in with_token.json()["checks"]["database"]["error"]
    assert with_token.json()["checks"]["broker"]["error"]
    client.force_login(staff_user)
    assert "no heartbeat" in client.get("/healthz?check=beat").json()["checks"]["beat"]["error"]


@pytest.mark.django_db
def test_check_parameter_limits_the_run(client, broker_down, heartbeat):
    response = client.get("/healthz?check=database")
    assert response.status_code == 200
    assert list(response.json()["checks"]) == ["database"]


@pytest.mark.django_db
def test_healthz_under_production_host_and_https_rules(client, settings, broker_up, heartbeat):
    settings.ALLOWED_HOSTS = ["sms.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    beat_heartbeat()
    assert client.get("/healthz").status_code == 400  # Host testserver is not allowed
    headers = healthprobe.probe_headers({"DJANGO_ALLOWED_HOSTS": "sms.example.com"})
    response = client.get("/healthz", headers=headers)
    assert response.status_code == 200, response.content


def test_probe_host_choice():
    assert healthprobe.probe_host("sms.example.com, b.org") == "sms.example.com"
    assert healthprobe.probe_host(".example.com") == "example.com"
    assert healthprobe.probe_host("*") == "localhost"
    assert healthprobe.probe_host("") == "localhost"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_container_probe_against_gunicorn_with_production_settings(tmp_path):
    """The docker-compose web healthcheck, for real: production settings, gunicorn, the probe."""
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "b24sms.settings.production",
        "DJANGO_SECRET_KEY": "p" * 60,
        "DJANGO_ALLOWED_HOSTS": "sms.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "HEALTHZ_PROBE_BASE": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "b24sms.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def probe():
            return subprocess.run(
                [sys.executable, "-m", "b24sms.healthprobe", "/healthz?check=database"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )

        result = wait_until(
            lambda: (r := probe()).returncode == 0 and r, timeout=40, interval=0.5, message="healthz via the probe"
        )
        assert '"status": "ok"' in result.stdout
        # The naive probe the compose file used to have: a plain-HTTP request for Host 127.0.0.1.
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert refused.value.code == 400
    finally:
        server.terminate()
        server.wait(timeout=15)
