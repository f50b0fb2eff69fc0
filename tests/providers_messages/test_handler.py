"""POST /b24/handler/<secret>/: every outcome a caller can see, and what is stored."""

import threading

import pytest
from django.db import connection

from common.errors import error_text
from providers.models import (
    InstallationState,
    Message,
    MessageState,
    MessageStatusChange,
    RegistrationState,
    StatusReport,
)
from tests.providers_messages.conftest import bizproc_fields, crm_fields, encode, without_auth

FORM = "application/x-www-form-urlencoded"


def post(client, installation, body, secret=None):
    return client.post(f"/b24/handler/{secret or installation.handler_secret}/", data=body, content_type=FORM)


@pytest.fixture(autouse=True)
def no_send(monkeypatch):
    """The send enqueued on commit is tested elsewhere."""
    calls = []
    monkeypatch.setattr("providers.services.sending.sending_schedule", lambda: calls.append(1))
    return calls


def test_crm_message_is_stored_once_and_a_send_is_enqueued_on_commit(
    client, installation, provider, no_send, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, installation, encode(crm_fields()))
    assert response.status_code == 200
    assert response.json() == {"result": "accepted", "message_id": "65575980fa531ac284c2ee68f81ebebd"}
    message = Message.objects.get()
    assert message.installation == installation and message.provider == provider
    assert message.state == MessageState.RECEIVED
    assert message.message_to == "+7 999 000-00-01" and message.destination == ""  # normalised when sent
    assert message.sender_name == "MyShop"
    assert message.bindings == [{"OWNER_TYPE_ID": "3", "OWNER_ID": "123"}]
    assert message.author_user_id == "1"
    assert list(message.status_changes.values_list("state", "source")) == [("received", "handler")]
    assert not StatusReport.objects.exists()  # Bitrix24 already shows "sent"; "queued" would move it back
    assert no_send == [1]


def test_bizproc_message_without_auth_is_accepted(client, installation, provider):
    response = post(client, installation, encode(without_auth(bizproc_fields())))
    assert response.status_code == 200
    message = Message.objects.get()
    assert message.module_id == "bizproc"
    assert message.document_id == ["crm", "CCrmDocumentLead", "LEAD_98"]
    assert message.workflow_id == "59ce38567ff2a5.26351167"
    assert message.author_user_id == ""


def _claimed_destinations():
    from providers.services.sending import messages_claim

    messages_claim(limit=100)
    return dict(Message.objects.values_list("message_id", "destination"))


def test_number_without_country_code_uses_the_portal_region_when_sent(client, installation, provider):
    installation.default_region = "BY"
    installation.save()
    post(client, installation, encode(crm_fields(message_to="29 123-45-67")))
    assert _claimed_destinations() == {"65575980fa531ac284c2ee68f81ebebd": "375291234567"}


def test_invalid_number_is_stored_then_fails_without_calling_idgtl(client, installation, provider):
    assert post(client, installation, encode(crm_fields(message_to="12"))).status_code == 200
    message = Message.objects.get()
    assert message.destination == "" and message.message_to == "12" and message.state == MessageState.RECEIVED
    assert _claimed_destinations() == {message.message_id: ""}
    message.refresh_from_db()
    assert message.state == MessageState.FAILED and "12" in message.error_message


def test_repeated_post_answers_200_and_changes_nothing(
    client, installation, provider, no_send, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = post(client, installation, encode(crm_fields()))
        second = post(client, installation, encode(crm_fields(message_body="changed")))
    assert first.status_code == second.status_code == 200
    assert second.json()["result"] == "duplicate"
    assert Message.objects.get().text == "Your code: 1234"
    assert MessageStatusChange.objects.count() == 1
    assert no_send == [1]


def test_message_receive_with_an_installation_finds_the_provider(installation, provider):
    from providers.handler_form import handler_form_parse
    from providers.services.intake import ProviderNotRegistered, message_receive

    message, created = message_receive(installation=installation, form=handler_form_parse(encode(crm_fields())))
    assert created and message.provider == provider
    assert message_receive(installation=installation, form=handler_form_parse(encode(crm_fields())))[1] is False
    with pytest.raises(ProviderNotRegistered):
        message_receive(installation=installation, form=handler_form_parse(encode(crm_fields(code="nope"))))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"hello",
        encode(crm_fields(code=None)),
        encode(crm_fields(message_id=None)),
        encode(crm_fields(**{"message_to": None, "properties[phone_number]": None})),
        b"message_body=%FF&code=provider1&message_id=1&message_to=%2B79990000001",
    ],
)
def test_malformed_body_is_400_json_and_nothing_is_stored(client, installation, provider, body):
    response = post(client, installation, body)
    assert response.status_code == 400
    assert error_text(response.json())
    assert not Message.objects.exists()


def test_missing_field_is_named(client, installation, provider):
    response = post(client, installation, encode(crm_fields(message_id=None)))
    assert "message_id" in response.json()


@pytest.mark.parametrize(
    "case", ["wrong_secret", "wrong_token", "token_missing", "other_portal", "removed", "needs_reinstall"]
)
def test_forged_or_unauthorised_calls_are_403_and_nothing_is_stored(client, installation, provider, case):
    fields, secret = crm_fields(), None
    if case == "wrong_secret":
        secret = installation.handler_secret[:-1] + ("A" if installation.handler_secret[-1] != "A" else "B")
    elif case == "wrong_token":
        fields["auth[application_token]"] = "0" * 32
    elif case == "token_missing":
        del fields["auth[application_token]"]
    elif case == "other_portal":
        fields["auth[member_id]"] = "f" * 32
    else:
        installation.state = InstallationState.REMOVED if case == "removed" else InstallationState.NEEDS_REINSTALL
        installation.save()
    response = post(client, installation, encode(fields), secret=secret)
    assert response.status_code == 403
    assert error_text(response.json())
    assert not Message.objects.exists()


def test_a_call_without_auth_still_needs_the_secret(client, installation, provider):
    response = post(client, installation, encode(without_auth(bizproc_fields())), secret="x" * 43)
    assert response.status_code == 403
    assert not Message.objects.exists()


@pytest.mark.parametrize("case", ["unknown_code", "not_registered_here", "registration_removed"])
def test_unknown_provider_is_404_and_nothing_is_stored(client, installation, provider, case):
    from providers.models import Provider

    fields = crm_fields()
    if case == "unknown_code":
        fields["code"] = "nope"
    elif case == "not_registered_here":
        Provider.objects.create(code="other", name="Other", sender_name="Other")
        fields["code"] = "other"
    else:
        provider.registrations.update(state=RegistrationState.REMOVED)
    response = post(client, installation, encode(fields))
    assert response.status_code == 404
    assert error_text(response.json())
    assert not Message.objects.exists()


def test_get_is_not_allowed(client, installation, provider):
    assert client.get(f"/b24/handler/{installation.handler_secret}/").status_code == 405


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_posts_store_one_message(installation, provider):
    from django.test import Client

    body = encode(crm_fields())
    results = []

    def send():
        results.append(post(Client(), installation, body).status_code)
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    assert Message.objects.count() == 1
    assert MessageStatusChange.objects.count() == 1


def test_a_broker_failure_after_commit_still_answers_200(
    client, installation, provider, monkeypatch, django_capture_on_commit_callbacks
):
    def broken():
        raise ConnectionError("redis is down")

    monkeypatch.setattr("providers.services.sending.sending_schedule", broken)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, installation, encode(crm_fields()))
    assert response.status_code == 200
    assert Message.objects.get().state == MessageState.RECEIVED  # the beat sweep sends it


# --- the one-statement path (PostgreSQL) and its way back to the full path -----------------------------
def test_a_changed_portal_region_is_used_for_messages_not_yet_sent(client, installation, provider):
    post(client, installation, encode(crm_fields(message_id="1", message_to="29 123-45-67")))
    installation.default_region = "BY"  # changed in the admin before the send
    installation.save()
    post(client, installation, encode(crm_fields(message_id="2", message_to="29 123-45-67")))
    assert _claimed_destinations() == {"1": "375291234567", "2": "375291234567"}


def test_an_uninstall_stops_the_next_message_of_a_portal_that_was_sending(client, installation, provider):
    assert post(client, installation, encode(crm_fields(message_id="1"))).status_code == 200
    installation.state = InstallationState.REMOVED
    installation.save()
    assert post(client, installation, encode(crm_fields(message_id="2"))).status_code == 403
    assert list(Message.objects.values_list("message_id", flat=True)) == ["1"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_costs_no_message(installation, provider, no_send):
    """A database restart or an idle timeout kills the pooled connection between two calls: the next
    call reconnects and is stored (there is no liveness query before the statement)."""
    import psycopg
    from django.conf import settings
    from django.test import Client

    client = Client()
    assert post(client, installation, encode(crm_fields(message_id="1"))).status_code == 200
    backend = connection.connection.info.backend_pid
    dsn = connection.get_connection_params()
    with psycopg.connect(
        dbname=dsn["dbname"], user=dsn.get("user"), host=dsn.get("host"), port=dsn.get("port"), autocommit=True
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend])
    response = post(client, installation, encode(crm_fields(message_id="2")))
    assert response.status_code == 200 and response.json()["result"] == "accepted"
    assert sorted(Message.objects.values_list("message_id", flat=True)) == ["1", "2"]
    assert connection.connection.info.backend_pid != backend
    assert no_send == [1, 1]
    assert settings.DATABASES["default"]["CONN_MAX_AGE"]  # (a persistent connection is what can go stale)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_statement_whose_answer_was_lost_is_stored_once_and_still_sent(installation, provider, no_send, monkeypatch):
    """The statement committed, then the connection broke before its answer: the full path finds the
    message (one row) and makes sure its send is asked for."""
    from django.db import OperationalError
    from django.test import Client

    from providers.services import intake

    real = intake._accept_in_one_statement

    def committed_then_lost(**kwargs):
        real(**kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(intake, "_accept_in_one_statement", committed_then_lost)
    response = post(Client(), installation, encode(crm_fields()))
    assert response.status_code == 200
    assert Message.objects.count() == 1 and MessageStatusChange.objects.count() == 1
    assert no_send == [1]


def _prepared_handler_statements() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%new_message%"])
        return cursor.fetchone()[0]


@pytest.mark.integration  # PostgreSQL: the one-statement path is its own (required in CI)
def test_the_handler_statement_is_prepared_by_default(client, installation, provider):
    assert post(client, installation, encode(crm_fields(message_id="1"))).status_code == 200
    assert _prepared_handler_statements() == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_without_prepared_statements_behind_a_pooler_the_handler_still_stores_once(installation, provider):
    from django.test import Client

    connection.close()  # a fresh connection, as DATABASE_PREPARED_STATEMENTS=false opens them
    connection.ensure_connection()
    connection.connection.prepare_threshold = None
    try:
        client = Client()
        for _ in range(2):
            assert post(client, installation, encode(crm_fields(message_id="1"))).status_code == 200
        assert Message.objects.count() == 1 and MessageStatusChange.objects.count() == 1
        assert _prepared_handler_statements() == 0
    finally:
        connection.close()  # the next test gets a connection as configured


@pytest.mark.parametrize("value,expected", [("", 5), ("false", None)])
def test_the_prepared_statements_setting(value, expected):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/x", "DATABASE_PREPARED_STATEMENTS": value}
    if not value:
        del env["DATABASE_PREPARED_STATEMENTS"]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from b24sms.settings import base; "
            "print(base.DATABASES['default'].get('OPTIONS', {}).get('prepare_threshold'))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == str(expected)
