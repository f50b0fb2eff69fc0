"""Send a test SMS: posted to our own handler as Bitrix24 would, through the whole pipeline."""

import pytest

from providers.models import Message, Provider, ProviderRegistration, RegistrationState
from providers.services import test_sms as service

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def registered(live_server, settings, idgtl, bitrix24, installation_factory):
    """A provider registered on an installation of a fake portal; b24sms reachable at the live server."""
    settings.PUBLIC_BASE_URL = live_server.url
    portal = bitrix24.add_portal(client_id="local.test.sms", client_secret="s3cret-value")
    installation = installation_factory(portal)
    provider = Provider.objects.create(code="acme_sms", name="ACME SMS", sender_name="ACME")
    ProviderRegistration.objects.create(
        provider=provider, installation=installation, state=RegistrationState.REGISTERED
    )
    idgtl.allowed_sender_names.add("ACME")
    return provider, installation, portal


def test_the_form_is_what_bitrix24_posts(registered):
    provider, installation, _portal = registered
    form = dict(
        service.bitrix24_form(
            installation=installation, provider=provider, message_id="test-1", phone="+79001234567", text="Hello"
        )
    )
    assert form["code"] == "acme_sms" and form["message_to"] == "+79001234567" and form["message_body"] == "Hello"
    # b24sms keeps only a keyed hash of the application token: the form is that of a message without an author
    assert not any(key.startswith("auth[") for key in form)
    assert service.handler_url(installation).endswith(f"/b24/handler/{installation.handler_secret}/")


def test_test_sms_is_stored_by_the_handler_and_sent(registered, idgtl):
    provider, installation, _portal = registered
    result = service.provider_send_test_sms(provider=provider, phone="+7 900 123-45-67", text="Hello from b24sms")
    assert result.accepted and result.via == "handler" and result.handler_status == 200
    message = Message.objects.get(pk=result.message.pk)
    assert message.installation == installation and message.message_id.startswith("test-")
    assert message.destination == "79001234567" and message.text == "Hello from b24sms"
    # it reached i-dgtl with the provider's sender name, like any SMS from Bitrix24
    sent = [r for r in idgtl.requests if r.method == "POST" and r.path.endswith("/message")]
    assert sent and sent[-1].json[0]["destination"] == "79001234567" and sent[-1].json[0]["senderName"] == "ACME"


def test_api(registered, api_client):
    provider, installation, _portal = registered
    response = api_client.post(
        f"/api/providers/{provider.pk}/test-sms/", {"phone": "+79001234567", "text": "Hi"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["portal"] == installation.domain and body["handler_status"] == 200
    assert Message.objects.filter(pk=body["id"], message_id=body["message_id"]).exists()
    assert api_client.get(f"/api/messages/{body['id']}/").status_code == 200


def test_api_bad_input_names_the_field(registered, api_client):
    provider, _installation, _portal = registered
    response = api_client.post(f"/api/providers/{provider.pk}/test-sms/", {"phone": "", "text": "Hi"}, format="json")
    assert response.status_code == 400 and "phone" in response.json()
    response = api_client.post(
        f"/api/providers/{provider.pk}/test-sms/",
        {"phone": "+79001234567", "text": "Hi", "installation": 999999},
        format="json",
    )
    assert response.status_code == 400 and "installation" in response.json()
    assert (
        api_client.post("/api/providers/999999/test-sms/", {"phone": "1", "text": "x"}, format="json").status_code
        == 404
    )
    assert not Message.objects.exists()


def test_not_registered_anywhere(api_client, db):
    provider = Provider.objects.create(code="lonely", name="Lonely", sender_name="ACME")
    response = api_client.post(
        f"/api/providers/{provider.pk}/test-sms/", {"phone": "+79001234567", "text": "Hi"}, format="json"
    )
    assert response.status_code == 400 and "register it first" in response.json()["installation"][0]


def test_unreachable_handler_is_a_502(registered, api_client, settings):
    provider, _installation, _portal = registered
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:1"
    response = api_client.post(
        f"/api/providers/{provider.pk}/test-sms/", {"phone": "+79001234567", "text": "Hi"}, format="json"
    )
    assert response.status_code == 502 and "PUBLIC_BASE_URL" in response.json()["detail"]


def test_sandbox_portal_sends_through_the_fake_bitrix24(
    registered, settings, monkeypatch, bitrix24, installation_factory, idgtl
):
    """On the sandbox portal the fake Bitrix24 posts the SMS itself, so it knows the message."""
    from common import sandbox
    from providers.services.portal_access import portal_client

    settings.SANDBOX = True
    monkeypatch.setattr(sandbox, "bitrix24_url", lambda environ=None: bitrix24.url)
    portal = bitrix24.add_portal(
        client_id="local.sandbox.x", client_secret="sandbox-secret", member_id=sandbox.SANDBOX_MEMBER_ID
    )
    installation = installation_factory(portal)
    provider = Provider.objects.create(code="sandbox_sms", name="Sandbox SMS", sender_name="ACME")
    portal_client(installation).sender_add("sandbox_sms", service.handler_url(installation), "Sandbox SMS", "test")
    ProviderRegistration.objects.create(
        provider=provider, installation=installation, state=RegistrationState.REGISTERED
    )
    result = service.provider_send_test_sms(
        provider=provider, phone="+79001234567", text="Hi", installation_id=installation.pk
    )
    assert result.via == "fake-bitrix24" and result.accepted
    assert result.message_id in portal.messages  # so message.status.update for it is accepted


def test_admin_action(registered, client, staff_user):
    provider, installation, _portal = registered
    client.force_login(staff_user)
    url = "/admin/providers/provider/"
    page = client.post(url, {"action": "send_test_sms", "_selected_action": [provider.pk]})
    assert page.status_code == 200 and b'id="test-sms-form"' in page.content
    page = client.post(
        url,
        {
            "action": "send_test_sms",
            "_selected_action": [provider.pk],
            "send": "1",
            "phone": "",
            "text": "x",
            "installation": installation.pk,
        },
    )
    assert page.status_code == 200 and b"errorlist" in page.content and not Message.objects.exists()
    response = client.post(
        url,
        {
            "action": "send_test_sms",
            "_selected_action": [provider.pk],
            "send": "1",
            "phone": "+79001234567",
            "text": "Hello",
            "installation": installation.pk,
        },
    )
    message = Message.objects.get()
    assert response.status_code == 302 and response.url == f"/admin/providers/message/{message.pk}/change/"
