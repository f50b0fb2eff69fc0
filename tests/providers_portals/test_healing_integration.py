"""The portal heals itself, end to end: the fake Bitrix24 portal, the live server, a real worker, PostgreSQL, Redis.

An application update deletes our providers and posts ONAPPUPDATE -> the worker registers them again
and an SMS after it is delivered; a legacy portal (no sender.update) gets a rename as delete + add;
the drift repair adds back a provider deleted behind our back; existing installations get ONAPPUPDATE bound.
"""

import json

import pytest
import requests

from common import metrics
from providers.models import Installation, Message, MessageState, ProviderRegistration, RegistrationState
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CLIENT_ID = "local.healing00000.1"
CLIENT_SECRET = "healing-client-secret"
SENDER_NAME = "MyShop"
SENDER_METHODS = ("messageservice.sender.add", "messageservice.sender.update", "messageservice.sender.delete")


def repairs(reason: str) -> float:
    """The /metrics counter of provider repairs (shared by the worker and this process through Redis)."""
    return metrics.store().read("provider_repairs").get(json.dumps([reason]), 0.0)


def bindings(portal) -> set[tuple[str, str]]:
    return {(b["event"], b["handler"]) for b in list(portal.event_bindings)}


def registration() -> ProviderRegistration:
    return ProviderRegistration.objects.select_related("installation").get()


@pytest.fixture
def install(live_worker, live_server, bitrix24, idgtl, settings):
    """``install(legacy=False)``: a fake portal installs our app (install endpoint); ``sms1`` is registered there."""
    from providers.services.installations import application_sync_default
    from providers.services.registration import provider_create

    settings.B24_CLIENT_ID, settings.B24_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    application_sync_default()
    idgtl.allowed_sender_names.add(SENDER_NAME)

    def install(*, legacy: bool = False):
        portal = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, legacy=legacy)
        response = bitrix24.install(portal, live_server.url + "/b24/install/", mode="event")
        assert response.status_code == 200, response.text
        assert response.json()["uninstall_handler_bound"] and response.json()["update_handler_bound"]
        installation = Installation.objects.get(member_id=portal.member_id)
        provider = provider_create(
            code="sms1", name="SMS via i-dgtl", sender_name=SENDER_NAME, installations=[installation]
        )
        wait_until(
            lambda: registration().state == RegistrationState.REGISTERED and "sms1" in portal.providers,
            timeout=30,
            message="the provider to be registered on the portal",
        )
        return portal, installation, provider

    return install


def sms_is_delivered(bitrix24, idgtl, portal, phone: str):
    message_id, response = bitrix24.send_sms(portal, "sms1", phone, "after the repair")
    assert response.status_code == 200, response.text
    message = wait_until(
        lambda: Message.objects.filter(message_id=message_id, state=MessageState.SENT).first(),
        timeout=30,
        message="the message to be sent",
    )
    idgtl.set_message_status(message.idgtl_message_uuid, "delivered")
    wait_until(
        lambda: portal.message_statuses.get(message_id, [])[-1:] == ["delivered"],
        timeout=30,
        message="the portal to show delivered",
    )


def test_app_update_at_the_portal_registers_the_providers_again_and_sms_flow(install, bitrix24, idgtl, live_server):
    portal, installation, _provider = install()
    handler = portal.providers["sms1"]["HANDLER"]
    events = {
        ("ONAPPUNINSTALL", f"{live_server.url}/b24/uninstall/{installation.handler_secret}/"),
        ("ONAPPUPDATE", f"{live_server.url}/b24/event/{installation.handler_secret}/"),
    }
    assert bindings(portal) == events
    before = repairs("app_update")

    # Bitrix24 deletes every provider of the application, removes its event bindings and posts ONAPPUPDATE
    response = bitrix24.update_application(portal, unbind_events=True)

    assert response.status_code == 200, response.text
    assert response.json()["result"] == "repairing"
    wait_until(
        lambda: registration().repair_count == 1 and registration().state == RegistrationState.REGISTERED,
        timeout=30,
        message="the provider to be registered again",
    )
    assert portal.providers["sms1"]["HANDLER"] == handler
    assert registration().repair_reason == "app_update" and registration().repaired_at is not None
    wait_until(lambda: bindings(portal) == events, timeout=30, message="the events to be bound again")
    wait_until(
        lambda: Installation.objects.get().bound_events == "ONAPPUNINSTALL,ONAPPUPDATE",
        timeout=10,
        message="the bindings to be recorded",
    )
    assert repairs("app_update") == before + 1

    sms_is_delivered(bitrix24, idgtl, portal, "+79990002001")


def test_legacy_portal_gets_a_rename_through_delete_and_add(install, bitrix24, idgtl):
    from providers.services.registration import provider_update

    portal, installation, provider = install(legacy=True)
    portal.calls.clear()

    provider_update(provider=provider, name="Renamed SMS")

    wait_until(
        lambda: (
            portal.providers.get("sms1", {}).get("NAME") == {"": "Renamed SMS"}
            and registration().state == RegistrationState.REGISTERED
        ),
        timeout=30,
        message="the rename to land",
    )
    assert [m for m, _p in list(portal.calls) if m in SENDER_METHODS] == [
        "messageservice.sender.update",
        "messageservice.sender.delete",
        "messageservice.sender.add",
    ]
    assert Installation.objects.get().lacks_sender_update is True
    assert registration().repair_count == 0  # our own delete + add is no repair
    portal.calls.clear()

    provider_update(provider=provider, name="Renamed again")

    wait_until(
        lambda: (
            portal.providers.get("sms1", {}).get("NAME") == {"": "Renamed again"}
            and registration().state == RegistrationState.REGISTERED
        ),
        timeout=30,
        message="the second rename",
    )
    assert [m for m, _p in list(portal.calls) if m in SENDER_METHODS] == [
        "messageservice.sender.delete",
        "messageservice.sender.add",
    ]  # sender.update is not tried again
    assert portal.providers["sms1"]["HANDLER"].endswith(f"/b24/handler/{installation.handler_secret}/")
    sms_is_delivered(bitrix24, idgtl, portal, "+79990002002")


def test_drift_repair_adds_back_a_provider_deleted_behind_our_back(install, bitrix24, idgtl, client, api_client):
    from providers.tasks.registration import repair_provider_drift

    portal, _installation, provider = install()
    deleted = requests.post(
        portal.client_endpoint + "messageservice.sender.delete",
        json={"CODE": "sms1", "auth": portal.admin_access_token},
        timeout=10,
    )
    assert deleted.status_code == 200 and "sms1" not in portal.providers
    before = repairs("drift")

    repair_provider_drift.delay()  # what beat runs every minute

    wait_until(
        lambda: (
            registration().repair_count == 1
            and registration().state == RegistrationState.REGISTERED
            and "sms1" in portal.providers
        ),
        timeout=30,
        message="the drift repair",
    )
    row = api_client.get(f"/api/providers/{provider.pk}/").json()["registrations"][0]
    assert (row["repair_reason"], row["repair_count"], row["state"]) == ("drift", 1, "registered")
    assert row["repaired_at"] and row["checked_at"]
    assert repairs("drift") == before + 1
    page = client.get("/metrics").content.decode()
    assert f'b24sms_provider_repairs_total{{reason="drift"}} {before + 1}' in page

    repair_provider_drift.delay()  # nothing due (checked a moment ago), nothing lost: nothing changes
    sms_is_delivered(bitrix24, idgtl, portal, "+79990002003")
    assert registration().repair_count == 1


def test_an_installation_made_before_onappupdate_was_bound_gets_it_at_the_next_beat_run(
    live_worker, live_server, bitrix24, installation_factory
):
    from providers.tasks.registration import bind_missing_events

    portal = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    installation = installation_factory(portal)  # as an earlier version stored it: no bound events recorded
    uninstall_url = f"{live_server.url}/b24/uninstall/{installation.handler_secret}/"
    requests.post(
        portal.client_endpoint + "event.bind",
        timeout=10,
        json={"event": "ONAPPUNINSTALL", "handler": uninstall_url, "auth": portal.admin_access_token},
    ).raise_for_status()

    bind_missing_events.delay()

    wait_until(
        lambda: Installation.objects.get().bound_events == "ONAPPUNINSTALL,ONAPPUPDATE",
        timeout=30,
        message="the missing event to be bound",
    )
    assert bindings(portal) == {
        ("ONAPPUNINSTALL", uninstall_url),
        ("ONAPPUPDATE", f"{live_server.url}/b24/event/{installation.handler_secret}/"),
    }
    assert Installation.objects.get().last_error == ""
