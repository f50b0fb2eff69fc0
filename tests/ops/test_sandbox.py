"""Sandbox mode: when it starts, what it points b24sms at, and never under production settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from b24sms import sandbox

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def nothing_configured(settings):
    settings.IDGTL_SENDER_NAMES_TOKEN = ""
    settings.IDGTL_MESSAGES_TOKEN = ""
    settings.B24_CLIENT_ID = ""


@pytest.mark.django_db
def test_sandbox_when_nothing_is_configured(nothing_configured):
    enabled, reason = sandbox.sandbox_decision({"DJANGO_SETTINGS_MODULE": "b24sms.settings.local"})
    assert enabled and "no i-dgtl key" in reason


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["IDGTL_SENDER_NAMES_TOKEN", "IDGTL_MESSAGES_TOKEN", "B24_CLIENT_ID"])
def test_real_configuration_turns_it_off(nothing_configured, settings, name):
    setattr(settings, name, "real-value-123")
    enabled, reason = sandbox.sandbox_decision({"DJANGO_SETTINGS_MODULE": "b24sms.settings.local"})
    assert not enabled and name in reason


@pytest.mark.django_db
def test_keys_saved_in_the_admin_turn_it_off(nothing_configured):
    from idgtl.services import account_get_default

    account = account_get_default()
    account.sender_names_key = "a-real-key-saved-in-admin"
    account.save()
    assert sandbox.sandbox_decision({"DJANGO_SETTINGS_MODULE": "b24sms.settings.local"})[0] is False


@pytest.mark.django_db
def test_forcing(nothing_configured, settings):
    assert (
        sandbox.sandbox_decision({"B24SMS_SANDBOX": "0", "DJANGO_SETTINGS_MODULE": "b24sms.settings.local"})[0] is False
    )
    settings.IDGTL_MESSAGES_TOKEN = "x" * 20
    assert (
        sandbox.sandbox_decision({"B24SMS_SANDBOX": "1", "DJANGO_SETTINGS_MODULE": "b24sms.settings.local"})[0] is True
    )


def test_never_under_production_settings(nothing_configured):
    enabled, reason = sandbox.sandbox_decision(
        {"B24SMS_SANDBOX": "1", "DJANGO_SETTINGS_MODULE": "b24sms.settings.production"}
    )
    assert not enabled and "production" in reason


def test_production_settings_pin_sandbox_off():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "b24sms.settings.production",
        "B24SMS_SANDBOX": "1",
        "DJANGO_SECRET_KEY": "k" * 60,
        "DJANGO_ALLOWED_HOSTS": "sms.example.com",
    }
    code = "import django; django.setup(); from django.conf import settings; print(settings.SANDBOX)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_environment_points_everything_at_the_fakes():
    env = sandbox.sandbox_environment(8000, {"B24SMS_SANDBOX_REVIEW_DELAY": "7"})
    assert env["B24SMS_SANDBOX"] == "1"
    assert env["IDGTL_API_URL"] == "http://127.0.0.1:8101/api/v1"
    assert env["B24_OAUTH_URL"] == "http://127.0.0.1:8102/oauth/token/"
    assert env["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert env["B24_CLIENT_ID"] == sandbox.SANDBOX_CLIENT_ID
    assert env["B24SMS_SANDBOX_REVIEW_DELAY"] == "7"


@pytest.mark.django_db
def test_prepare_points_the_default_account_and_application_at_the_sandbox(settings):
    from idgtl.models import IdgtlAccount
    from providers.models import BitrixApplication

    for name, value in sandbox.sandbox_environment(8000, {}).items():
        if hasattr(settings, name):
            setattr(settings, name, value)
    application = sandbox.sandbox_prepare()
    account = IdgtlAccount.objects.get(is_default=True)
    assert account.api_url == "http://127.0.0.1:8101/api/v1" and account.messages_key == sandbox.SANDBOX_MESSAGES_KEY
    assert (
        application.is_default and BitrixApplication.objects.get(is_default=True).client_id == sandbox.SANDBOX_CLIENT_ID
    )
    sandbox.sandbox_prepare()  # idempotent
    assert BitrixApplication.objects.count() == 1


def test_run_backoffice_lists_the_sandbox_processes(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IDGTL_", "B24_", "B24SMS_", "DATABASE_URL", "CELERY_BROKER"))
    }
    env.update(
        {"DJANGO_SETTINGS_MODULE": "b24sms.settings.local", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "run_backoffice", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    names = [
        line.split(":")[0] for line in result.stdout.splitlines() if ": " in line and not line.startswith("SANDBOX")
    ]
    assert names == ["web", "worker", "beat", "idgtl", "bitrix24"]
    env["IDGTL_MESSAGES_TOKEN"] = "real-key-0123456789"
    result = subprocess.run(
        [sys.executable, "manage.py", "run_backoffice", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Sandbox off: IDGTL_MESSAGES_TOKEN set" in result.stdout
    assert "idgtl:" not in result.stdout


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_make_run_sandbox_end_to_end(tmp_path):
    """run_backoffice in sandbox mode: five processes, b24sms installed on the fake portal, Ctrl-C stops all."""
    import json
    import signal
    import urllib.request

    from tests.waiting import wait_until

    web, idgtl_port, b24_port, portal_port = _free_ports(4)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IDGTL_", "B24_", "B24SMS_", "DATABASE_URL", "CELERY_", "REDIS_URL", "DJANGO_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "b24sms.settings.local",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
            "PORT": str(web),
            "B24SMS_SANDBOX_IDGTL_PORT": str(idgtl_port),
            "B24SMS_SANDBOX_BITRIX24_PORT": str(b24_port),
            "B24SMS_SANDBOX_PORTAL_PORT": str(portal_port),
            "LOG_LEVEL": "WARNING",
            "DJANGO_DEBUG": "false",
            "METRICS_TOKEN": "sandbox-test-metrics-token",  # /healthz shows its details to this bearer only
        }
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=180
    )
    log = open(tmp_path / "run.log", "w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_backoffice"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def fake_portal():
        try:
            url = f"http://127.0.0.1:{b24_port}/__fake__/portals/{sandbox.SANDBOX_MEMBER_ID}"
            return json.loads(urllib.request.urlopen(url, timeout=2).read())
        except OSError:
            return None

    def log_tail():
        return (tmp_path / "run.log").read_text(errors="replace")[-4000:]

    try:
        try:
            state = wait_until(
                lambda: (p := fake_portal()) and p["event_bindings"] and p,
                timeout=180,
                interval=0.5,
                message="b24sms installed on the sandbox portal",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_tail()}") from None
        assert state["installed"] and state["event_bindings"][0]["event"] == "ONAPPUNINSTALL"
        page = urllib.request.urlopen(f"http://127.0.0.1:{web}/admin/login/", timeout=10).read().decode()
        assert 'id="b24sms-sandbox-banner"' in page

        def healthz():
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{web}/healthz", headers={"Authorization": "Bearer sandbox-test-metrics-token"}
                )
                return json.loads(urllib.request.urlopen(request, timeout=5).read())
            except OSError:
                return None

        # beat sends a heartbeat when it starts and the worker records it: healthy within seconds
        try:
            body = wait_until(healthz, timeout=120, interval=1, message="/healthz 200")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_tail()}") from None
        assert body["status"] == "ok" and body["checks"]["beat"]["age_seconds"] < 120
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
        try:
            process.wait(timeout=40)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    output = (tmp_path / "run.log").read_text()
    assert "b24sms installed on the sandbox portal" in output
    for name in ("web", "worker", "beat", "idgtl", "bitrix24"):
        assert f"{name} stopped" in output or f"{name}.1 stopped" in output, output[-3000:]


@pytest.mark.django_db
def test_leaving_the_sandbox_retires_its_portal(settings):
    from providers.models import BitrixApplication, Installation, InstallationState

    for name, value in sandbox.sandbox_environment(8000, {}).items():
        if hasattr(settings, name):
            setattr(settings, name, value)
    application = sandbox.sandbox_prepare()
    Installation.objects.create(
        application=application,
        member_id=sandbox.SANDBOX_MEMBER_ID,
        domain=sandbox.SANDBOX_PORTAL_DOMAIN,
        client_endpoint="http://127.0.0.1:8103/rest/",
        access_token="a",
        refresh_token="r",
    )
    assert sandbox.sandbox_leave() == 1
    installation = Installation.objects.get()
    assert installation.state == InstallationState.REMOVED and installation.access_token == ""
    assert not BitrixApplication.objects.get(client_id=sandbox.SANDBOX_CLIENT_ID).is_default
    assert sandbox.sandbox_leave() == 0
