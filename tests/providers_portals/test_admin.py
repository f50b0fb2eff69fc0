"""Admin: applications (secret write-only), installations (masked, state visible), provider actions."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from providers.models import BitrixApplication, InstallationState, Provider, RegistrationState
from providers.services import registration as services

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_application_secret_is_masked_and_blank_keeps_it(admin_client, application):
    page = admin_client.get(f"/admin/providers/bitrixapplication/{application.pk}/change/").content.decode()
    assert application.client_secret not in page
    assert "••••" + application.client_secret[-4:] in page
    assert "/b24/install/" in page

    response = admin_client.post(
        f"/admin/providers/bitrixapplication/{application.pk}/change/",
        {"name": "renamed", "client_id": application.client_id, "client_secret": ""},
    )
    assert response.status_code == 302
    application.refresh_from_db()
    assert application.name == "renamed" and application.client_secret == "s3cr3t-client-secret-value"

    admin_client.post(
        f"/admin/providers/bitrixapplication/{application.pk}/change/",
        {"name": "renamed", "client_id": application.client_id, "client_secret": "new-secret-123456"},
    )
    application.refresh_from_db()
    assert application.client_secret == "new-secret-123456"


def test_new_application_needs_a_secret(admin_client, db):
    response = admin_client.post(
        "/admin/providers/bitrixapplication/add/", {"name": "market", "client_id": "app.market.1", "client_secret": ""}
    )
    assert response.status_code == 200
    assert not BitrixApplication.objects.exists()
    admin_client.post(
        "/admin/providers/bitrixapplication/add/",
        {"name": "market", "client_id": "app.market.1", "client_secret": "secret-market-1"},
    )
    assert BitrixApplication.objects.get().client_secret == "secret-market-1"


def test_installation_pages_show_state_and_masked_tokens(admin_client, make_installation):
    installation = make_installation(
        state=InstallationState.NEEDS_REINSTALL,
        last_error="invalid_grant: token revoked",
        application_token="app-token-shown-nowhere",
    )

    listing = admin_client.get("/admin/providers/installation/").content.decode()
    page = admin_client.get(f"/admin/providers/installation/{installation.pk}/change/").content.decode()

    assert "Needs reinstall: reinstall the application on the portal" in listing
    assert "invalid_grant" in listing
    assert (
        f"Needs reinstall (no call reaches it until the application is reinstalled there): {installation.domain}"
        in listing
    )
    for secret in (
        installation.access_token,
        installation.refresh_token,
        "app-token-shown-nowhere",
        installation.application_token_hash,
        installation.handler_secret,
        installation.callback_secret,
        installation.handler_secret_index,
        installation.callback_secret_index,
    ):
        assert secret not in page and secret not in listing
    assert "••••" in page


def test_provider_added_in_admin_is_validated(admin_client, approved_sender_name):
    response = admin_client.post(
        "/admin/providers/provider/add/",
        {
            "code": "bad code",
            "name": "Acme",
            "name_translations": "{}",
            "description_translations": "{}",
            "sender_name_application": approved_sender_name.pk,
            "sender_name": "",
            "registrations-TOTAL_FORMS": "0",
            "registrations-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert not Provider.objects.exists()

    response = admin_client.post(
        "/admin/providers/provider/add/",
        {
            "code": "acme",
            "name": "Acme",
            "name_translations": '{"en": "Acme"}',
            "description_translations": "{}",
            "sender_name_application": approved_sender_name.pk,
            "sender_name": "",
            "registrations-TOTAL_FORMS": "0",
            "registrations-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    provider = Provider.objects.get()
    assert provider.sender_name == "ACMESHOP" and provider.name_translations == {"en": "Acme"}


def test_register_action_asks_for_portals_then_reports_per_portal(
    admin_client, make_installation, approved_sender_name, portal, on_commit
):
    first, second = make_installation(), make_installation()
    provider = services.provider_create(code="acme", name="Acme", sender_name_application=approved_sender_name)
    url = "/admin/providers/provider/"

    page = admin_client.post(url, {"action": "register_action", ACTION_CHECKBOX_NAME: [provider.pk]})
    assert page.status_code == 200
    assert first.domain in page.content.decode() and second.domain in page.content.decode()

    with on_commit():
        response = admin_client.post(
            url,
            {
                "action": "register_action",
                ACTION_CHECKBOX_NAME: [provider.pk],
                "apply": "1",
                "installations": [second.pk],
            },
            follow=True,
        )
    text = response.content.decode()
    assert f"Acme: registration queued on {second.domain}" in text  # the admin capitalises messages
    assert "acme" in portal.providers[second.pk] and first.pk not in portal.providers
    assert provider.registrations.get().state == RegistrationState.REGISTERED


def test_update_remove_and_check_actions_say_what_happened(
    admin_client, make_installation, approved_sender_name, portal, on_commit
):
    installation = make_installation()
    with on_commit():
        provider = services.provider_create(
            code="acme", name="Acme", sender_name_application=approved_sender_name, installations=[installation]
        )
    url = "/admin/providers/provider/"

    with on_commit():
        text = admin_client.post(
            url, {"action": "update_action", ACTION_CHECKBOX_NAME: [provider.pk]}, follow=True
        ).content.decode()
    assert f"Acme: update queued on {installation.domain}" in text

    portal.providers[installation.pk]["stranger"] = {}
    text = admin_client.post(
        url, {"action": "check_action", ACTION_CHECKBOX_NAME: [provider.pk]}, follow=True
    ).content.decode()
    assert f"Acme @ {installation.domain}: Registered and present on the portal." in text
    assert "stranger" in text

    with on_commit():
        text = admin_client.post(
            url,
            {
                "action": "remove_action",
                ACTION_CHECKBOX_NAME: [provider.pk],
                "apply": "1",
                "installations": [installation.pk],
            },
            follow=True,
        ).content.decode()
    assert f"Acme: removal queued on {installation.domain}" in text
    assert "acme" not in portal.providers[installation.pk]
    assert provider.registrations.get().state == RegistrationState.REMOVED


def test_editing_a_provider_in_admin_pushes_the_change(
    admin_client, make_installation, approved_sender_name, portal, on_commit
):
    installation = make_installation()
    with on_commit():
        provider = services.provider_create(
            code="acme", name="Acme", sender_name_application=approved_sender_name, installations=[installation]
        )
    registration = provider.registrations.get()
    with on_commit():
        response = admin_client.post(
            f"/admin/providers/provider/{provider.pk}/change/",
            {
                "code": "acme",
                "name": "Acme renamed",
                "name_translations": "{}",
                "description_translations": "{}",
                "sender_name_application": approved_sender_name.pk,
                "sender_name": "ACMESHOP",
                "registrations-TOTAL_FORMS": "1",
                "registrations-INITIAL_FORMS": "1",
                "registrations-0-id": registration.pk,
                "registrations-0-provider": provider.pk,
            },
        )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert portal.providers[installation.pk]["acme"]["NAME"] == "Acme renamed"


def test_changelists_take_a_fixed_number_of_queries(
    admin_client, five_providers_on_five_portals, django_assert_max_num_queries
):
    for url in (
        "/admin/providers/installation/",
        "/admin/providers/providerregistration/",  # 5 and 25 rows
        "/admin/providers/provider/",
        "/admin/providers/bitrixapplication/",
    ):
        with django_assert_max_num_queries(8):
            assert admin_client.get(url).status_code == 200, url


def test_changing_the_code_of_a_registered_provider_is_a_form_error(
    admin_client, make_installation, approved_sender_name, portal, on_commit
):
    installation = make_installation()
    with on_commit():
        provider = services.provider_create(
            code="acme", name="Acme", sender_name_application=approved_sender_name, installations=[installation]
        )
    registration = provider.registrations.get()

    response = admin_client.post(
        f"/admin/providers/provider/{provider.pk}/change/",
        {
            "code": "acme2",
            "name": "Acme",
            "name_translations": "{}",
            "description_translations": "{}",
            "sender_name_application": approved_sender_name.pk,
            "sender_name": "ACMESHOP",
            "registrations-TOTAL_FORMS": "1",
            "registrations-INITIAL_FORMS": "1",
            "registrations-0-id": registration.pk,
            "registrations-0-provider": provider.pk,
        },
    )

    assert response.status_code == 200
    assert "The code cannot change while the provider is registered on a portal." in response.content.decode()
    provider.refresh_from_db()
    assert provider.code == "acme"


@pytest.mark.parametrize(
    "field, value",
    [
        ("rate_limit_drain_per_second", "0"),
        ("rate_limit_drain_per_second", "-2"),
        ("rate_limit_burst", "0"),
        ("default_region", "ZZ"),
    ],
)
def test_installation_settings_that_would_break_every_call_are_refused(admin_client, make_installation, field, value):
    installation = make_installation()
    form = {"account": "", "default_region": "kz", "rate_limit_burst": "250", "rate_limit_drain_per_second": "5"}

    refused = admin_client.post(f"/admin/providers/installation/{installation.pk}/change/", {**form, field: value})
    saved = admin_client.post(f"/admin/providers/installation/{installation.pk}/change/", form)

    assert refused.status_code == 200 and "errorlist" in refused.content.decode()
    assert saved.status_code == 302
    installation.refresh_from_db()
    assert (installation.default_region, installation.rate_limit_burst, installation.rate_limit_drain_per_second) == (
        "KZ",
        250,
        5.0,
    )
