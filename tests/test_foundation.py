"""The foundation: settings, the default i-dgtl account, the API's shape, production hardening."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from idgtl.models import IdgtlAccount, mask_secret
from idgtl.services import account_get_default, account_sync_default

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_default_account_is_created_from_settings(settings):
    settings.IDGTL_API_URL = "http://127.0.0.1:1/api/v1"
    settings.IDGTL_SENDER_NAMES_TOKEN = "c2VuZGVyOm5hbWVzLWtleQ=="
    settings.IDGTL_MESSAGES_TOKEN = "bWVzc2FnZXM6a2V5LTEyMzQ="
    account = account_sync_default()
    assert account.is_default and account.api_url == "http://127.0.0.1:1/api/v1"
    assert account.sender_names_key == "c2VuZGVyOm5hbWVzLWtleQ=="
    assert IdgtlAccount.objects.filter(is_default=True).count() == 1
    assert account_get_default() == account


@pytest.mark.django_db
def test_empty_settings_do_not_erase_a_key_saved_in_the_admin(settings):
    settings.IDGTL_SENDER_NAMES_TOKEN = ""
    account = account_get_default()
    account.sender_names_key = "saved-in-admin-key-123"
    account.save()
    assert account_sync_default().sender_names_key == "saved-in-admin-key-123"


def test_secrets_are_masked():
    assert mask_secret("") == ""
    assert mask_secret("short") == "••••"
    assert mask_secret("a-very-long-secret-key-9876") == "••••9876"


def test_production_settings_pass_check_deploy():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "b24sms.settings.production",
        "DJANGO_SECRET_KEY": "x" * 30 + "-production-secret-key-with-enough-entropy-0987654321",
        "DJANGO_ALLOWED_HOSTS": "sms.example.com",
        "IDGTL_SENDER_NAMES_TOKEN": "a2V5OjI=",
        "IDGTL_MESSAGES_TOKEN": "a2V5OjE=",
        "B24_CLIENT_ID": "local.test.1",
        "B24_CLIENT_SECRET": "secret",
        "PUBLIC_BASE_URL": "https://sms.example.com",
        "METRICS_TOKEN": "metrics-token-for-the-deploy-check-0123456789",
        "FIELD_ENCRYPTION_KEYS": "Lw3kq2xAw0Tr8Q2b9bJxk4m6Zt6l8QnSx1yGm8m6v0Y=",
        "SECRET_INDEX_KEY": "a-production-secret-index-key-0123456789abcdef",
    }
    for name in ("DJANGO_ALLOW_ASYNC_UNSAFE", "B24_ALLOWED_PORTAL_DOMAINS", "TRUSTED_PROXIES", "DJANGO_DEBUG"):
        # DJANGO_ALLOW_ASYNC_UNSAFE: set by the browser tests for their own process only
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_openapi_schema_builds(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "b24sms API"


@pytest.mark.django_db
def test_api_needs_staff(client, django_user_model):
    django_user_model.objects.create_user(username="plain", password="plain-pass-123")
    client.login(username="plain", password="plain-pass-123")
    assert client.get("/api/schema/").status_code == 403


@pytest.mark.django_db
def test_migrations_are_complete():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
