"""Install, register and uninstall over real HTTP: the fake Bitrix24 portal, the live server and a real worker."""

from urllib.parse import urlencode

import pytest
import requests

from providers.models import Installation, InstallationState, ProviderRegistration, RegistrationState
from providers.services.installations import application_sync_default
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CLIENT_ID = "local.6f1e2d3c4b5a69.87654321"
CLIENT_SECRET = "integration-client-secret"


@pytest.fixture
def default_application(live_worker, settings):
    settings.B24_CLIENT_ID, settings.B24_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    return application_sync_default()


@pytest.mark.parametrize("mode", ["event", "page"])
def test_portal_installs_registers_provider_and_uninstalls(
    live_worker, live_server, bitrix24, default_application, api_client, mode
):
    portal = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)

    response = bitrix24.install(portal, live_server.url + "/b24/install/", mode=mode)

    assert response.status_code == 200, response.text
    installation = Installation.objects.get(member_id=portal.member_id)
    assert installation.state == InstallationState.ACTIVE
    assert installation.application_token_matches(portal.application_token)
    uninstall_url = f"{live_server.url}/b24/uninstall/{installation.handler_secret}/"
    assert [(b["event"], b["handler"]) for b in portal.event_bindings] == [
        ("ONAPPUNINSTALL", uninstall_url),
        ("ONAPPUPDATE", f"{live_server.url}/b24/event/{installation.handler_secret}/"),
    ]

    created = api_client.post(
        "/api/providers/",
        {
            "code": "b24sms.acme",
            "name": "Acme SMS",
            "name_translations": {"ru": "Акме СМС", "en": "Acme SMS"},
            "sender_name": "ACMESHOP",
            "installations": [installation.pk],
        },
        format="json",
    )
    assert created.status_code == 201, created.content

    handler_url = f"{live_server.url}/b24/handler/{installation.handler_secret}/"
    provider_on_portal = wait_until(
        lambda: portal.providers.get("b24sms.acme"),
        timeout=30,
        message="the worker to register the provider on the fake portal",
    )
    assert provider_on_portal["HANDLER"] == handler_url
    wait_until(
        lambda: ProviderRegistration.objects.filter(state=RegistrationState.REGISTERED).exists(),
        timeout=10,
        message="the registration to be recorded",
    )

    check = api_client.post(f"/api/providers/{created.json()['id']}/check/", {}, format="json").json()
    assert check[0]["present_on_portal"] is True and check[0]["missing_on_portal"] == []

    response = bitrix24.uninstall(portal)

    assert response.status_code == 200, response.text
    installation.refresh_from_db()
    assert installation.state == InstallationState.REMOVED
    assert ProviderRegistration.objects.get().state == RegistrationState.REMOVED
    calls_before = len(portal.calls)
    check = api_client.post(
        f"/api/providers/{created.json()['id']}/check/", {"installations": [installation.pk]}, format="json"
    ).json()
    assert "INSTALLATION_INACTIVE" in check[0]["error"]
    refused = api_client.post(
        f"/api/providers/{created.json()['id']}/register/", {"installations": [installation.pk]}, format="json"
    )
    assert refused.status_code == 400 and "installations" in refused.json()
    assert len(portal.calls) == calls_before


def test_forged_install_is_refused_by_the_portal_and_nothing_is_stored(
    live_worker, live_server, bitrix24, default_application
):
    portal = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    body = urlencode(
        {
            "event": "ONAPPINSTALL",
            "auth[access_token]": "forged-token",
            "auth[refresh_token]": "forged",
            "auth[expires_in]": "3600",
            "auth[domain]": portal.domain,
            "auth[client_endpoint]": portal.client_endpoint,
            "auth[member_id]": portal.member_id,
            "auth[application_token]": "forged",
            "auth[user_id]": "1",
        }
    )

    response = requests.post(
        live_server.url + "/b24/install/",
        data=body,
        timeout=30,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 403
    assert not Installation.objects.exists()


def test_install_for_another_application_is_refused(live_worker, live_server, bitrix24, default_application):
    bitrix24.add_application(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    portal = bitrix24.add_portal(client_id="local.someoneelse.1", client_secret="other-secret")

    response = bitrix24.install(portal, live_server.url + "/b24/install/", mode="event")

    assert response.status_code == 403  # the OAuth server: that refresh token is not ours (invalid_grant)
    assert not Installation.objects.exists()


def test_reinstall_on_the_same_portal_updates_the_installation_and_keeps_the_provider(
    live_worker, live_server, bitrix24, default_application, api_client
):
    portal = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert bitrix24.install(portal, live_server.url + "/b24/install/", mode="event").status_code == 200
    installation = Installation.objects.get()
    api_client.post(
        "/api/providers/",
        {"code": "acme", "name": "Acme", "sender_name": "ACMESHOP", "installations": [installation.pk]},
        format="json",
    )
    wait_until(
        lambda: ProviderRegistration.objects.filter(state=RegistrationState.REGISTERED).exists(),
        timeout=30,
        message="the first registration",
    )
    portal.calls.clear()

    response = bitrix24.install(portal, live_server.url + "/b24/install/", mode="event")  # e.g. an app update

    assert response.status_code == 200 and response.json()["result"] == "reinstalled"
    assert response.json()["uninstall_handler_bound"] is True  # the re-bind error was checked with event.get
    installation = Installation.objects.get()
    assert installation.refresh_token == portal.admin_refresh_token
    # the registration is pushed again: sender.add answers "already installed", so sender.update follows
    wait_until(
        lambda: (
            [m for m, _p in portal.calls if m.startswith("messageservice.sender")]
            == ["messageservice.sender.add", "messageservice.sender.update"]
        ),
        timeout=30,
        message="the re-registration",
    )
    wait_until(
        lambda: ProviderRegistration.objects.filter(state=RegistrationState.REGISTERED).exists(),
        timeout=10,
        message="the registration to be recorded again",
    )
    assert portal.providers["acme"]["HANDLER"] == f"{live_server.url}/b24/handler/{installation.handler_secret}/"
