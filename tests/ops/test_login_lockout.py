"""Failed admin logins are limited (django-axes): after AXES_FAILURE_LIMIT failures with one username from
one client address, that username is refused from that address for AXES_COOLOFF_TIME, with a clear
message in the reader's language. The address is common.netaddr's: X-Forwarded-For counts only behind
TRUSTED_PROXIES. API tokens never log in and are not affected."""

import pytest
from axes.models import AccessAttempt
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "right-pass-123"


@pytest.fixture(autouse=True)
def axes_on(settings):
    settings.AXES_ENABLED = True  # off for the rest of the suite (Django's test client logs in without a request)
    settings.AXES_FAILURE_LIMIT = 3


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(username="admin", email="a@example.com", password=PASSWORD)


def log_in(client, password, username="admin", **headers):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, **headers)


def test_the_limit_locks_the_username_from_that_address_with_a_clear_message(client, admin_user):
    for _ in range(2):
        response = log_in(client, "wrong")
        assert response.status_code == 200 and "Please enter the correct" in response.content.decode()
    response = log_in(client, "wrong")
    assert response.status_code == 429
    page = response.content.decode()
    assert 'id="b24sms-login-locked"' in page and "Too many failed logins as “admin”" in page
    assert "blocked for 15 minutes" in page and 'id="login-form"' in page  # the login page, with why and how long

    response = log_in(client, PASSWORD)  # the right password no longer helps
    assert response.status_code == 429 and "_auth_user_id" not in client.session
    assert AccessAttempt.objects.get(username="admin").failures_since_start >= 3
    assert "right-pass" not in AccessAttempt.objects.get(username="admin").post_data


def test_the_message_is_russian_for_a_russian_reader(client, admin_user):
    for _ in range(3):
        response = log_in(client, "wrong", HTTP_ACCEPT_LANGUAGE="ru")
    assert response.status_code == 429
    page = response.content.decode()
    assert "Слишком много неудачных попыток входа под именем «admin»" in page and "15 минут" in page


def test_other_usernames_and_other_addresses_are_not_locked(client, admin_user, django_user_model):
    django_user_model.objects.create_superuser(username="boris", email="b@example.com", password=PASSWORD)
    for _ in range(3):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD, username="boris").status_code == 302
    client.logout()
    assert log_in(client, PASSWORD, REMOTE_ADDR="192.0.2.10").status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_address_is_locked(client, admin_user, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for _ in range(3):
        log_in(client, "wrong", HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy)
    assert log_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy).status_code == 429
    assert AccessAttempt.objects.get().ip_address == "198.51.100.7"
    assert log_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.8", **proxy).status_code == 302  # another client


def test_a_forged_forwarded_address_does_not_escape_the_lock(client, admin_user):
    for n in range(3):  # not behind a trusted proxy: X-Forwarded-For is the client's own words
        log_in(client, "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    assert log_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.99").status_code == 429


def test_a_successful_login_forgets_earlier_failures(client, admin_user):
    for _ in range(2):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302


def test_api_tokens_are_not_affected(client, admin_user):
    for _ in range(4):
        log_in(client, "wrong")
    api = APIClient(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")
    assert api.get("/api/portals/").status_code == 200
