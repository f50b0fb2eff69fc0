"""The portal heals itself: ONAPPUPDATE re-registers providers, the drift repair adds back what Bitrix24 lost,
a portal without sender.update gets delete + add, and application events are bound where they are missing."""

import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from bitrix24.client import Bitrix24MethodError, Bitrix24TransientError
from common import metrics
from providers.models import Installation, InstallationState, ProviderRegistration, RegistrationState
from providers.services import installations as installation_services
from providers.services import registration as services
from tests.providers_portals.conftest import MEMBER_ID
from tests.providers_portals.test_install import FORM, event_body

pytestmark = pytest.mark.django_db

ALL_EVENTS = {"ONAPPUNINSTALL", "ONAPPUPDATE"}


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Run the tasks enqueued on commit (eager in unit tests) when the block ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def repairs(settings):
    """The provider-repair counter of /metrics, by reason (the Django cache store, emptied)."""
    settings.REDIS_URL = ""
    metrics.store().clear()
    yield lambda: {json.loads(labels)[0]: n for labels, n in metrics.store().read("provider_repairs").items()}
    metrics.store().clear()


@pytest.fixture
def installed(client, application, portal, public_base_url):
    """An installation made through the install endpoint (events bound), provider ``acme`` registered on it."""
    assert client.post("/b24/install/", event_body(), content_type=FORM).status_code == 200
    installation = Installation.objects.get()
    provider = services.provider_create(code="acme", name="Acme", sender_name="OUTSIDE")
    return installation, provider


def register(installation, provider, run_on_commit):
    with run_on_commit():
        services.provider_register(provider=provider, installations=[installation])
    return ProviderRegistration.objects.get(provider=provider, installation=installation)


def update_event(token="app-token-1", member_id=MEMBER_ID, event="ONAPPUPDATE", **extra):
    fields = {
        "event": event,
        "data[VERSION]": "2",
        "data[LANGUAGE_ID]": "ru",
        "ts": "1696527000",
        "auth[domain]": "acme.bitrix24.ru",
        "auth[member_id]": member_id,
        "auth[application_token]": token,
        **extra,
    }
    return urlencode({k: v for k, v in fields.items() if v is not None})


def sender_calls(portal):
    return [c[1] for c in portal.calls if c[1].startswith("messageservice.sender")]


# --- ONAPPUPDATE ---------------------------------------------------------------------------------


def test_app_update_registers_every_live_provider_again_and_records_the_repair(
    client, installed, portal, run_on_commit, repairs
):
    installation, provider = installed
    registration = register(installation, provider, run_on_commit)
    handler = portal.providers[installation.pk]["acme"]["HANDLER"]
    portal.providers[installation.pk].clear()  # Bitrix24 deletes the application's providers, then posts ONAPPUPDATE
    portal.calls.clear()

    with run_on_commit():
        response = client.post(f"/b24/event/{installation.handler_secret}/", update_event(), content_type=FORM)

    assert response.status_code == 200, response.content
    assert response.json() == {"result": "repairing", "domain": "acme.bitrix24.ru"}
    assert portal.providers[installation.pk]["acme"]["HANDLER"] == handler  # the same HANDLER
    registration.refresh_from_db()
    assert registration.state == RegistrationState.REGISTERED
    assert (registration.repair_reason, registration.repair_count) == ("app_update", 1)
    assert registration.repaired_at is not None
    assert repairs() == {"app_update": 1.0}
    # the update removed the event bindings too: bound again
    assert [c[1] for c in portal.calls if c[1].startswith("event.")][:2] == ["event.bind", "event.bind"]
    installation.refresh_from_db()
    assert installation.bound_event_names == ALL_EVENTS


def test_a_repeated_app_update_finds_the_providers_and_records_no_repair(
    client, installed, portal, run_on_commit, repairs
):
    installation, provider = installed
    registration = register(installation, provider, run_on_commit)
    portal.calls.clear()

    with run_on_commit():
        response = client.post(f"/b24/event/{installation.handler_secret}/", update_event(), content_type=FORM)

    assert response.status_code == 200
    assert sender_calls(portal) == ["messageservice.sender.add", "messageservice.sender.update"]
    registration.refresh_from_db()
    assert (registration.state, registration.repair_count, registration.repaired_at) == (
        RegistrationState.REGISTERED,
        0,
        None,
    )
    assert repairs() == {}


def test_app_update_leaves_removed_registrations_alone(client, installed, portal, run_on_commit):
    installation, provider = installed
    register(installation, provider, run_on_commit)
    with run_on_commit():
        services.provider_unregister(provider=provider)
    portal.calls.clear()

    with run_on_commit():
        client.post(f"/b24/event/{installation.handler_secret}/", update_event(), content_type=FORM)

    assert sender_calls(portal) == []
    assert ProviderRegistration.objects.get().state == RegistrationState.REMOVED


@pytest.mark.parametrize(
    "body, status",
    [
        (update_event(token="app-token-2"), 403),  # another application_token
        (update_event(member_id="b" * 32), 403),  # another portal's member_id
        (update_event(event="ONCRMLEADADD"), 400),
        (update_event(token=None), 400),
        ("event=ONAPPUPDATE", 400),
    ],
)
def test_app_update_with_a_wrong_token_or_malformed_is_refused(client, installed, portal, run_on_commit, body, status):
    installation, provider = installed
    registration = register(installation, provider, run_on_commit)
    portal.calls.clear()

    with run_on_commit():
        response = client.post(f"/b24/event/{installation.handler_secret}/", body, content_type=FORM)

    assert response.status_code == status, response.content
    assert portal.calls == []
    registration.refresh_from_db()
    assert registration.state == RegistrationState.REGISTERED


def test_app_update_to_an_unknown_secret_or_with_get_is_refused(client, installed):
    installation, _provider = installed
    assert client.post("/b24/event/" + "x" * 43 + "/", update_event(), content_type=FORM).status_code == 403
    assert client.post("/b24/event/%00/", update_event(), content_type=FORM).status_code == 403
    assert client.get(f"/b24/event/{installation.handler_secret}/").status_code == 405


def test_app_update_of_a_removed_installation_is_ignored(client, installed, portal, run_on_commit):
    installation, provider = installed
    register(installation, provider, run_on_commit)
    Installation.objects.filter(pk=installation.pk).update(state=InstallationState.NEEDS_REINSTALL)
    portal.calls.clear()

    with run_on_commit():
        response = client.post(f"/b24/event/{installation.handler_secret}/", update_event(), content_type=FORM)

    assert response.json()["result"] == "ignored"
    assert portal.calls == []


def test_the_events_endpoint_also_takes_onappuninstall(client, installed):
    installation, _provider = installed
    body = update_event(event="ONAPPUNINSTALL", **{"data[CLEAN]": "1"})

    response = client.post(f"/b24/event/{installation.handler_secret}/", body, content_type=FORM)

    assert response.json()["result"] == "removed"
    assert Installation.objects.get().state == InstallationState.REMOVED


def test_a_reinstall_that_lost_the_providers_records_a_repair(client, installed, portal, run_on_commit, repairs):
    installation, provider = installed
    registration = register(installation, provider, run_on_commit)
    portal.providers[installation.pk].clear()

    with run_on_commit():
        response = client.post(
            "/b24/install/", event_body(**{"auth[refresh_token]": "refresh-token-2"}), content_type=FORM
        )

    assert response.json()["result"] == "reinstalled"
    registration.refresh_from_db()
    assert (registration.state, registration.repair_reason, registration.repair_count) == (
        RegistrationState.REGISTERED,
        "reinstall",
        1,
    )
    assert repairs() == {"reinstall": 1.0}


# --- sender.update unknown on the portal -------------------------------------------------------------


def test_a_portal_without_sender_update_gets_delete_and_add_and_is_remembered(installed, portal, run_on_commit):
    installation, provider = installed
    registration = register(installation, provider, run_on_commit)
    portal.legacy = True
    portal.calls.clear()

    with run_on_commit():
        services.provider_update(provider=provider, name="Acme renamed")

    assert sender_calls(portal) == [
        "messageservice.sender.update",
        "messageservice.sender.delete",
        "messageservice.sender.add",
    ]
    assert portal.providers[installation.pk]["acme"]["NAME"] == "Acme renamed"
    assert portal.providers[installation.pk]["acme"]["TYPE"] == "SMS"
    installation.refresh_from_db()
    assert installation.lacks_sender_update is True
    registration.refresh_from_db()
    assert (registration.state, registration.repair_count) == (RegistrationState.REGISTERED, 0)  # not a repair

    portal.calls.clear()
    with run_on_commit():
        services.provider_update(provider=provider, name="Acme again")

    assert sender_calls(portal) == ["messageservice.sender.delete", "messageservice.sender.add"]  # straight away
    assert portal.providers[installation.pk]["acme"]["NAME"] == "Acme again"


def test_registering_a_provider_already_on_a_legacy_portal_replaces_it(installed, portal, run_on_commit):
    installation, provider = installed
    portal.legacy = True
    portal.providers[installation.pk] = {"acme": {"CODE": "acme", "NAME": "old", "HANDLER": "https://old.example/"}}

    registration = register(installation, provider, run_on_commit)

    assert sender_calls(portal) == [
        "messageservice.sender.add",
        "messageservice.sender.update",
        "messageservice.sender.delete",
        "messageservice.sender.add",
    ]
    assert registration.state == RegistrationState.REGISTERED
    assert portal.providers[installation.pk]["acme"]["NAME"] == "Acme"


def test_delete_and_add_when_the_provider_is_gone_adds_it(installed, portal, run_on_commit):
    installation, provider = installed
    register(installation, provider, run_on_commit)
    Installation.objects.filter(pk=installation.pk).update(lacks_sender_update=True)
    portal.providers[installation.pk].clear()
    portal.calls.clear()

    with run_on_commit():
        services.provider_update(provider=provider, description="new")

    assert sender_calls(portal) == ["messageservice.sender.delete", "messageservice.sender.add"]
    assert ProviderRegistration.objects.get().state == RegistrationState.REGISTERED


def test_other_update_errors_do_not_mark_the_portal(installed, portal, run_on_commit):
    installation, provider = installed
    register(installation, provider, run_on_commit)
    portal.fail(
        "messageservice.sender.update", Bitrix24MethodError("ERROR_SENDER_UPDATE_FAILURE", "Sender update error!")
    )

    with run_on_commit():
        services.provider_update(provider=provider, name="Acme renamed")

    installation.refresh_from_db()
    assert installation.lacks_sender_update is False
    registration = ProviderRegistration.objects.get()
    assert registration.state == RegistrationState.FAILED and "ERROR_SENDER_UPDATE_FAILURE" in registration.last_error


def test_a_reinstall_learns_again_whether_the_portal_has_sender_update(client, installed):
    installation, _provider = installed
    Installation.objects.filter(pk=installation.pk).update(lacks_sender_update=True)

    client.post("/b24/install/", event_body(**{"auth[refresh_token]": "refresh-token-2"}), content_type=FORM)

    installation.refresh_from_db()
    assert installation.lacks_sender_update is False


# --- Drift repair ---------------------------------------------------------------------------------------


def test_drift_repair_adds_back_what_the_portal_lost(installed, portal, run_on_commit, repairs):
    installation, provider = installed
    registration = register(installation, provider, run_on_commit)
    kept = services.provider_create(code="kept", name="Kept", sender_name="OUTSIDE")
    register(installation, kept, run_on_commit)
    failed = services.provider_create(code="failed", name="Failed", sender_name="OUTSIDE")
    failed_registration = failed.registrations.create(installation=installation, state=RegistrationState.FAILED)
    del portal.providers[installation.pk]["acme"]  # deleted behind our back
    portal.providers[installation.pk]["stranger"] = {"CODE": "stranger"}
    portal.bindings[installation.pk].clear()
    portal.calls.clear()

    with run_on_commit():
        result = services.installation_repair_drift(installation=installation)

    assert result.missing_on_portal == ["acme"] and result.unknown_on_portal == ["stranger"] and not result.error
    assert sender_calls(portal) == ["messageservice.sender.list", "messageservice.sender.add"]
    assert portal.providers[installation.pk]["acme"]["HANDLER"] == services.registration_handler_url(installation)
    registration.refresh_from_db()
    assert (registration.state, registration.repair_reason, registration.repair_count) == (
        RegistrationState.REGISTERED,
        "drift",
        1,
    )
    assert registration.checked_at is not None
    assert repairs() == {"drift": 1.0}
    failed_registration.refresh_from_db()
    assert failed_registration.state == RegistrationState.FAILED  # waits for an operator
    assert "stranger" in portal.providers[installation.pk]  # never deleted
    assert {event for event, _handler in portal.bindings[installation.pk]} == ALL_EVENTS  # bound again

    portal.calls.clear()
    with run_on_commit():
        again = services.installation_repair_drift(installation=installation)

    assert again.missing_on_portal == [] and sender_calls(portal) == ["messageservice.sender.list"]
    registration.refresh_from_db()
    assert registration.repair_count == 1


def test_drift_repair_when_sender_list_fails_changes_nothing(installed, portal, run_on_commit):
    installation, provider = installed
    registration = register(installation, provider, run_on_commit)
    portal.fail("messageservice.sender.list", Bitrix24TransientError("QUERY_LIMIT_EXCEEDED", "Too many requests"))

    with run_on_commit():
        result = services.installation_repair_drift(installation=installation)

    assert "QUERY_LIMIT_EXCEEDED" in result.error
    registration.refresh_from_db()
    assert registration.state == RegistrationState.REGISTERED and registration.repair_count == 0


def test_drift_runs_spread_the_portals_over_the_interval(make_installation, run_on_commit, portal, monkeypatch):
    installations = [make_installation() for _ in range(10)]
    idle = make_installation()  # no live registration: nothing to compare
    provider = services.provider_create(code="acme", name="Acme", sender_name="OUTSIDE")
    for installation in installations:
        provider.registrations.create(installation=installation, state=RegistrationState.REGISTERED)
    provider.registrations.create(installation=idle, state=RegistrationState.REMOVED)
    queued = []
    from providers.tasks import registration as tasks

    monkeypatch.setattr(tasks.repair_installation_drift, "delay", queued.append)
    interval, period = timedelta(seconds=600), timedelta(seconds=60)

    seen = []
    for _run in range(10):
        with run_on_commit():
            seen += services.installations_drift_due(interval=interval, period=period)

    assert sorted(seen) == sorted(i.pk for i in installations)  # each once, one per run
    assert queued == seen
    with run_on_commit():
        assert services.installations_drift_due(interval=interval, period=period) == []  # none due yet
    ProviderRegistration.objects.filter(installation=installations[3]).update(
        checked_at=timezone.now() - timedelta(seconds=601)
    )
    with run_on_commit():
        assert services.installations_drift_due(interval=interval, period=period) == [installations[3].pk]


def test_drift_beat_task_repairs_through_the_queue(installed, portal, run_on_commit, repairs):
    from providers.tasks.registration import repair_provider_drift

    installation, provider = installed
    registration = register(installation, provider, run_on_commit)
    portal.providers[installation.pk].clear()

    with run_on_commit():
        assert repair_provider_drift() == [installation.pk]

    registration.refresh_from_db()
    assert (registration.state, registration.repair_reason) == (RegistrationState.REGISTERED, "drift")
    assert "acme" in portal.providers[installation.pk]


# --- Application events bound where missing -----------------------------------------------------------------


def test_beat_binds_the_events_an_installation_lacks(make_installation, portal, run_on_commit, public_base_url):
    before = make_installation()  # installed before ONAPPUPDATE was bound: nothing recorded
    bound = make_installation(bound_events="ONAPPUNINSTALL,ONAPPUPDATE")
    recent = make_installation(events_bind_attempted_at=timezone.now())
    make_installation(state=InstallationState.REMOVED)
    portal.bindings[before.pk] = [("ONAPPUNINSTALL", f"https://sms.example.com/b24/uninstall/{before.handler_secret}/")]
    portal.rebind_fails = True  # the re-bind of ONAPPUNINSTALL errs; event.get shows it

    with run_on_commit():
        queued = installation_services.installations_bind_missing_events(retry_after=timedelta(seconds=900))

    assert queued == [before.pk]
    assert portal.bindings[before.pk] == [
        ("ONAPPUNINSTALL", f"https://sms.example.com/b24/uninstall/{before.handler_secret}/"),
        ("ONAPPUPDATE", f"https://sms.example.com/b24/event/{before.handler_secret}/"),
    ]
    before.refresh_from_db()
    assert before.bound_event_names == ALL_EVENTS and before.last_error == ""
    assert bound.pk not in portal.bindings and recent.pk not in portal.bindings
    with run_on_commit():
        assert installation_services.installations_bind_missing_events(retry_after=timedelta(seconds=900)) == []


def test_a_bind_that_keeps_failing_is_recorded_and_not_hammered(make_installation, portal, run_on_commit):
    installation = make_installation()
    portal.fail("event.bind", Bitrix24MethodError("ERROR_EVENT_NOT_FOUND", "Event not found"))

    with run_on_commit():
        installation_services.installations_bind_missing_events(retry_after=timedelta(seconds=900))

    installation.refresh_from_db()
    assert installation.bound_event_names == {"ONAPPUPDATE"}
    assert installation.last_error.startswith("event.bind ONAPPUNINSTALL: ERROR_EVENT_NOT_FOUND")
    with run_on_commit():
        assert installation_services.installations_bind_missing_events(retry_after=timedelta(seconds=900)) == []
    Installation.objects.filter(pk=installation.pk).update(
        events_bind_attempted_at=timezone.now() - timedelta(seconds=901)
    )
    with run_on_commit():
        assert installation_services.installations_bind_missing_events(retry_after=timedelta(seconds=900)) == [
            installation.pk
        ]
    installation.refresh_from_db()
    assert installation.bound_event_names == ALL_EVENTS and installation.last_error == ""


# --- Visible to operators -----------------------------------------------------------------------------------


def test_repairs_show_in_the_api_the_admin_and_metrics(
    client, admin_client, api_client, installed, portal, run_on_commit, repairs
):
    installation, provider = installed
    register(installation, provider, run_on_commit)
    portal.providers[installation.pk].clear()
    with run_on_commit():
        services.installation_repair_drift(installation=installation)

    row = api_client.get(f"/api/providers/{provider.pk}/").json()["registrations"][0]
    assert (row["repair_reason"], row["repair_count"]) == ("drift", 1) and row["repaired_at"]
    portal_row = api_client.get(f"/api/portals/{installation.pk}/").json()
    assert portal_row["lacks_sender_update"] is False
    assert set(portal_row["bound_events"].split(",")) == ALL_EVENTS

    page = admin_client.get(f"/admin/providers/provider/{provider.pk}/change/").content.decode()
    assert "Missing on the portal (drift repair)" in page and "1 repair" in page
    listing = admin_client.get("/admin/providers/providerregistration/?repair_reason=drift").content.decode()
    assert "acme" in listing

    metrics_page = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'b24sms_provider_repairs_total{reason="drift"} 1.0' in metrics_page
