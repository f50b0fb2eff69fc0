"""System checks for the Bitrix24 settings (what `manage.py check` tells an operator)."""

import pytest

from providers.checks import bitrix24_settings_check


def ids(settings):
    return sorted(problem.id for problem in bitrix24_settings_check(None))


@pytest.fixture
def configured(settings):
    settings.SANDBOX = False
    settings.B24_REQUIRE_HTTPS = False
    settings.B24_CLIENT_ID = "local.abc.1"
    settings.B24_CLIENT_SECRET = "secret"
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    return settings


def test_a_complete_configuration_has_no_problems(configured):
    assert ids(configured) == []
    configured.B24_REQUIRE_HTTPS = True  # production
    assert ids(configured) == []


def test_missing_application_credentials_warn_outside_the_sandbox(configured):
    configured.B24_CLIENT_ID = ""
    configured.B24_CLIENT_SECRET = ""
    assert ids(configured) == ["providers.W001", "providers.W002"]
    configured.SANDBOX = True
    assert ids(configured) == []


@pytest.mark.parametrize(
    "url", ["", "sms.example.com", "ftp://sms.example.com", "https://", "http://[::1", "https://sms.example.com:99999"]
)
def test_unparsable_public_base_url_is_an_error(configured, url):
    configured.PUBLIC_BASE_URL = url
    assert ids(configured) == ["providers.E001"]


def test_a_host_without_a_dot_warns(configured):
    configured.PUBLIC_BASE_URL = "http://localhost:8000"
    assert ids(configured) == ["providers.W003"]
    configured.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    assert ids(configured) == []


def test_plain_http_warns_under_production_settings(configured):
    configured.PUBLIC_BASE_URL = "http://sms.example.com"
    assert ids(configured) == []
    configured.B24_REQUIRE_HTTPS = True
    assert ids(configured) == ["providers.W004"]
