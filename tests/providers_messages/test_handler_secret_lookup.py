"""The HANDLER and the i-dgtl callback find their installation by the keyed hash of the URL secret (a blind
index), and check the application token by its keyed hash: nothing on the HANDLER's path is decrypted."""

import json

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from common.errors import error_text
from providers.models import Message, MessageState
from providers.services.delivery import callback_inbox_apply
from tests.providers_messages.conftest import APPLICATION_TOKEN, crm_fields, encode, make_message

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def no_send(monkeypatch):
    monkeypatch.setattr("providers.services.sending.sending_schedule", lambda: None)


def post(client, secret, fields):
    return client.post(f"/b24/handler/{secret}/", data=encode(fields), content_type=FORM)


def index_overwrite(installation, column):
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE providers_installation SET {column} = %s WHERE id = %s", ["0" * 64, installation.pk])


def test_the_handler_decrypts_nothing(client, settings, installation, provider):
    """With keys that decrypt none of the stored secrets, a HANDLER call is still stored: it is matched by hashes."""
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    response = post(client, installation.handler_secret, crm_fields(message_id="by-index-1"))
    assert response.status_code == 200, response.content
    assert Message.objects.filter(message_id="by-index-1").count() == 1


def test_the_handler_secret_is_matched_by_its_index(client, installation, provider):
    assert post(client, installation.handler_secret, crm_fields(message_id="by-index-2")).status_code == 200
    index_overwrite(installation, "handler_secret_index")  # the encrypted secret still decrypts to the same text

    response = post(client, installation.handler_secret, crm_fields(message_id="by-index-3"))

    assert response.status_code == 403 and error_text(response.json())
    assert list(Message.objects.values_list("message_id", flat=True)) == ["by-index-2"]


@pytest.mark.parametrize(
    "token, status",
    [(APPLICATION_TOKEN, 200), (APPLICATION_TOKEN[:-1], 403), (APPLICATION_TOKEN.upper(), 403), ("", 403)],
)
def test_the_application_token_is_checked_against_its_keyed_hash(client, installation, provider, token, status):
    response = post(client, installation.handler_secret, crm_fields(**{"auth[application_token]": token}))
    assert response.status_code == status
    assert Message.objects.count() == (1 if status == 200 else 0)


def test_a_callback_secret_opens_no_handler(client, installation, provider):
    response = post(client, installation.callback_secret, crm_fields())
    assert response.status_code in (403, 404) and not Message.objects.exists()


def callback(client, secret, uuid):
    event = [
        {
            "message_uuid": uuid,
            "channel_type": "SMS",
            "callback_event": "delivered",
            "status": "delivered",
            "status_time": "2026-01-01T10:00:00Z",
        }
    ]
    response = client.post(f"/idgtl/callback/{secret}/", data=json.dumps(event), content_type="application/json")
    if response.status_code == 200:
        callback_inbox_apply()  # the worker's run, a moment later
    return response


def test_the_callback_secret_is_matched_by_its_index(client, installation, provider):
    message = make_message(installation, provider, 1, state=MessageState.SENT, idgtl_message_uuid="u-index-1")
    index_overwrite(installation, "callback_secret_index")
    assert callback(client, installation.callback_secret, "u-index-1").status_code in (403, 404)
    assert Message.objects.get(pk=message.pk).state == MessageState.SENT

    assert callback(client, installation.handler_secret, "u-index-1").status_code == 200  # legacy URL: its own index
    assert Message.objects.get(pk=message.pk).state == MessageState.DELIVERED
