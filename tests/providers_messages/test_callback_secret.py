"""The i-dgtl callback URL has its own secret: reading it (at i-dgtl, in a proxy log) never lets anyone send SMS."""

import json
import urllib.parse

import pytest

from common.errors import error_text
from providers.models import Installation, Message, MessageState
from providers.services.delivery import callback_inbox_apply
from providers.services.sending import messages_send_waiting
from tests.providers_messages.conftest import bizproc_fields, crm_fields, encode, make_message, without_auth

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def no_send(monkeypatch):
    monkeypatch.setattr("providers.services.sending.sending_schedule", lambda: None)


def stolen_callback_path(settings, installation, provider, idgtl_api) -> str:
    """What an attacker reads: the callbackUrl b24sms gave i-dgtl with a real send."""
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    make_message(installation, provider, 1)
    assert messages_send_waiting() == 1
    return urllib.parse.urlsplit(idgtl_api.sent[0][0]["callbackUrl"]).path


def callback_event(uuid):
    return [
        {
            "message_uuid": uuid,
            "channel_type": "SMS",
            "callback_event": "delivered",
            "status": "delivered",
            "status_time": "2026-01-01T10:00:00Z",
        }
    ]


@pytest.mark.parametrize(
    "fields",
    [without_auth(bizproc_fields()), without_auth(crm_fields()), crm_fields()],
    ids=["robot-without-auth", "crm-without-auth", "crm-with-auth"],
)
def test_a_stolen_callback_url_cannot_send_sms_through_the_handler(
    client, settings, installation, provider, idgtl_api, fields
):
    path = stolen_callback_path(settings, installation, provider, idgtl_api)
    assert path.startswith("/idgtl/callback/")
    stolen_secret = path.removeprefix("/idgtl/callback/").strip("/")

    response = client.post(f"/b24/handler/{stolen_secret}/", data=encode(fields), content_type=FORM)

    assert response.status_code in (403, 404) and error_text(response.json())
    assert list(Message.objects.values_list("message_id", flat=True)) == [f"m{1:031d}"]  # only the real one


def test_the_callback_url_carries_the_callback_secret_and_it_works(client, settings, installation, provider, idgtl_api):
    path = stolen_callback_path(settings, installation, provider, idgtl_api)
    assert path == f"/idgtl/callback/{installation.callback_secret}/"
    assert installation.handler_secret not in idgtl_api.sent[0][0]["callbackUrl"]
    message = Message.objects.get()

    response = client.post(
        path, data=json.dumps(callback_event(message.idgtl_message_uuid)), content_type="application/json"
    )

    assert response.status_code == 200 and response.json()["stored"] == 1
    callback_inbox_apply()  # the worker's run, a moment later
    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED


def test_legacy_callback_url_with_the_handler_secret_still_updates_statuses(client, installation, provider):
    """Messages sent before the upgrade were given callback URLs with the HANDLER secret: accepted
    on the callback endpoint only (they update statuses of that installation's messages)."""
    message = make_message(installation, provider, 1, state=MessageState.SENT, idgtl_message_uuid="legacy-1")

    response = client.post(
        f"/idgtl/callback/{installation.handler_secret}/",
        data=json.dumps(callback_event("legacy-1")),
        content_type="application/json",
    )

    assert response.status_code == 200 and response.json()["stored"] == 1
    callback_inbox_apply()  # the worker's run, a moment later
    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED


def test_each_installation_has_its_own_callback_secret(installation):
    other = Installation.objects.create(
        application=installation.application, member_id="other", domain="o.test", client_endpoint="https://o.test/rest/"
    )
    secrets = {installation.handler_secret, installation.callback_secret, other.handler_secret, other.callback_secret}
    assert len(secrets) == 4
    assert all(len(secret) >= 43 for secret in secrets)


def test_a_callback_secret_of_another_installation_touches_nothing_here(client, installation, provider):
    message = make_message(installation, provider, 1, state=MessageState.SENT, idgtl_message_uuid="u-1")
    other = Installation.objects.create(
        application=installation.application, member_id="other", domain="o.test", client_endpoint="https://o.test/rest/"
    )

    response = client.post(
        f"/idgtl/callback/{other.callback_secret}/",
        data=json.dumps(callback_event("u-1")),
        content_type="application/json",
    )

    assert response.status_code == 200 and response.json()["stored"] == 1  # kept for the other portal's uuid
    callback_inbox_apply()
    message.refresh_from_db()
    assert message.state == MessageState.SENT


def test_an_unknown_callback_secret_is_refused(client, installation, provider):
    make_message(installation, provider, 1, state=MessageState.SENT, idgtl_message_uuid="u-1")
    wrong = installation.callback_secret[:-1] + ("A" if installation.callback_secret[-1] != "A" else "B")
    response = client.post(
        f"/idgtl/callback/{wrong}/", data=json.dumps(callback_event("u-1")), content_type="application/json"
    )
    assert response.status_code == 403
    assert Message.objects.get().state == MessageState.SENT
