"""`manage.py check --deploy` names every unsafe production setting (b24sms/checks.py)."""

import pytest
from django.core import checks

from b24sms.checks import address_lists_check, deployment_check, secrets_at_rest_check

SAFE = {
    "DEBUG": False,
    "SECRET_KEY": "a-real-secret-key-of-this-deployment-0123456789-abcdefghijklmnop",
    "ALLOWED_HOSTS": ["sms.example.com"],
    "PUBLIC_BASE_URL": "https://sms.example.com",
    "METRICS_TOKEN": "metrics-token-0123456789abcdef",
    "B24_REQUIRE_HTTPS": True,
    "B24_ALLOWED_PORTAL_DOMAINS": [".bitrix24.ru", ".bitrix24.com"],
    "TRUSTED_PROXIES": ["172.16.0.0/12"],
}


@pytest.fixture
def production(settings):
    for name, value in SAFE.items():
        setattr(settings, name, value)
    return settings


def ids(problems):
    return sorted(problem.id for problem in problems)


def test_a_sane_production_configuration_passes(production):
    assert deployment_check(None) == [] and address_lists_check(None) == [] and secrets_at_rest_check(None) == []


def test_the_checks_are_registered_for_deploy_only():
    deploy = {check.__name__ for check in checks.registry.registry.get_checks(include_deployment_checks=True)}
    everyday = {check.__name__ for check in checks.registry.registry.get_checks(include_deployment_checks=False)}
    assert "deployment_check" in deploy and "deployment_check" not in everyday
    assert "address_lists_check" in everyday
    assert "secrets_at_rest_check" in everyday  # not only --deploy: migrate, runserver... refuse to run without keys


@pytest.mark.parametrize(
    "change, expected, level",
    [
        ({"METRICS_TOKEN": ""}, "b24sms.E001", checks.ERROR),
        ({"SECRET_KEY": "insecure-local-development-key-change-me-0123456789abcdef"}, "b24sms.E002", checks.ERROR),
        ({"SECRET_KEY": "build-only"}, "b24sms.E002", checks.ERROR),
        ({"ALLOWED_HOSTS": ["*"]}, "b24sms.E003", checks.ERROR),
        ({"ALLOWED_HOSTS": ["sms.example.com", "*"]}, "b24sms.E003", checks.ERROR),
        ({"ALLOWED_HOSTS": ["localhost", "127.0.0.1", "[::1]"]}, "b24sms.W001", checks.WARNING),
        ({"ALLOWED_HOSTS": []}, "b24sms.W001", checks.WARNING),
        ({"ALLOWED_HOSTS": ["other.example.com"]}, "b24sms.W002", checks.WARNING),
        ({"PUBLIC_BASE_URL": "http://sms.example.com"}, "b24sms.E004", checks.ERROR),
        ({"B24_REQUIRE_HTTPS": False}, "b24sms.W003", checks.WARNING),
        ({"B24_ALLOWED_PORTAL_DOMAINS": []}, "b24sms.W004", checks.WARNING),
    ],
)
def test_each_unsafe_setting_is_named(production, change, expected, level):
    for name, value in change.items():
        setattr(production, name, value)
    problems = deployment_check(None)
    assert ids(problems) == [expected], problems
    assert problems[0].level == level and problems[0].hint


def test_a_suffix_in_allowed_hosts_covers_the_public_host(production):
    production.ALLOWED_HOSTS = [".example.com"]
    assert deployment_check(None) == []


def test_debug_is_left_to_django_own_check(production):
    production.DEBUG = True
    production.METRICS_TOKEN = ""
    assert deployment_check(None) == []  # security.W018 says DEBUG must be off; the rest is for production


@pytest.mark.parametrize("name", ["TRUSTED_PROXIES", "METRICS_ALLOWED_NETWORKS", "IDGTL_CALLBACK_ALLOWED_IPS"])
def test_an_address_list_entry_that_is_no_address_is_an_error(production, name):
    setattr(production, name, ["10.0.0.0/8", "proxy.internal"])
    problems = address_lists_check(None)
    assert ids(problems) == ["b24sms.E010"] and name in problems[0].msg and "proxy.internal" in problems[0].msg


FERNET_KEY = "Lw3kq2xAw0Tr8Q2b9bJxk4m6Zt6l8QnSx1yGm8m6v0Y="


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"FIELD_ENCRYPTION_KEYS": []}, ["b24sms.E005"]),
        ({"FIELD_ENCRYPTION_KEYS": ["not-a-fernet-key"]}, ["b24sms.E005"]),
        ({"FIELD_ENCRYPTION_KEYS": [FERNET_KEY, "x" * 44]}, ["b24sms.E005"]),  # an old key mistyped counts too
        ({"SECRET_INDEX_KEY": ""}, ["b24sms.E006"]),
        ({"SECRET_INDEX_KEY": "too-short"}, ["b24sms.E006"]),
        ({"FIELD_ENCRYPTION_KEYS": [], "SECRET_INDEX_KEY": ""}, ["b24sms.E005", "b24sms.E006"]),
    ],
)
def test_production_needs_the_secret_keys(production, change, expected):
    production.FIELD_ENCRYPTION_KEYS = [FERNET_KEY]
    production.SECRET_INDEX_KEY = "an-index-key-of-this-deployment-0123456789"
    assert secrets_at_rest_check(None) == []
    for name, value in change.items():
        setattr(production, name, value)
    problems = secrets_at_rest_check(None)
    assert ids(problems) == expected, problems
    assert all(problem.level == checks.ERROR and problem.hint for problem in problems)


def test_several_encryption_keys_are_accepted_as_a_list_or_comma_separated(production):
    production.FIELD_ENCRYPTION_KEYS = f"{FERNET_KEY},{FERNET_KEY}"
    assert secrets_at_rest_check(None) == []
