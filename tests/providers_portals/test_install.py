"""Install and uninstall endpoints: both install forms, token confirmation at the OAuth server, reinstall, uninstall."""

from urllib.parse import urlencode

import pytest

from bitrix24.client import Bitrix24MethodError, Bitrix24TransientError
from providers.models import Installation, InstallationState, ProviderRegistration, RegistrationState
from providers.services.registration import provider_create
from tests.providers_portals.conftest import CLIENT_ID, MEMBER_ID

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"


def event_body(**overrides):
    fields = {
        "event": "ONAPPINSTALL",
        "data[VERSION]": "1",
        "data[ACTIVE]": "Y",
        "data[INSTALLED]": "Y",
        "data[LANGUAGE_ID]": "ru",
        "ts": "1696527000",
        "auth[access_token]": "admin-access-token",
        "auth[expires]": "1900000000",
        "auth[expires_in]": "3600",
        "auth[scope]": "crm,messageservice",
        "auth[domain]": "acme.bitrix24.ru",
        "auth[server_endpoint]": "https://oauth.bitrix.info/rest/",
        "auth[status]": "L",
        "auth[client_endpoint]": "https://acme.bitrix24.ru/rest/",
        "auth[member_id]": MEMBER_ID,
        "auth[user_id]": "1",
        "auth[refresh_token]": "refresh-token-1",
        "auth[application_token]": "app-token-1",
    }
    fields.update(overrides)
    return urlencode({k: v for k, v in fields.items() if v is not None})


def page_form(**overrides):
    fields = {
        "AUTH_ID": "admin-access-token",
        "AUTH_EXPIRES": "3600",
        "REFRESH_ID": "refresh-page-1",
        "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/",
        "APPLICATION_TOKEN": "app-token-page",
        "APPLICATION_SCOPE": "crm,messageservice",
        "member_id": MEMBER_ID,
        "status": "L",
        "PLACEMENT": "DEFAULT",
    }
    fields.update(overrides)
    return urlencode({k: v for k, v in fields.items() if v is not None})


PAGE_QUERY = "?DOMAIN=acme.bitrix24.ru&PROTOCOL=1&LANG=ru&APP_SID=abc"


def test_onappinstall_event_confirms_tokens_stores_installation_and_binds_app_events(
    client, application, portal, public_base_url
):
    response = client.post("/b24/install/", event_body(), content_type=FORM)

    assert response.status_code == 200, response.content
    assert response.json()["result"] == "installed"
    installation = Installation.objects.get()
    assert installation.application == application
    assert installation.member_id == MEMBER_ID
    assert installation.domain == "acme.bitrix24.ru"
    assert installation.client_endpoint == "https://acme.bitrix24.ru/rest/"
    assert installation.server_endpoint == "https://oauth.bitrix.info/rest/"
    assert installation.access_token == "admin-access-token"
    assert installation.refresh_token == "rotated-refresh-token-1"  # the OAuth server's answer, not the request's
    assert installation.application_token_matches("app-token-1")
    assert installation.access_token_expires_at.timestamp() == 1900000000
    assert installation.scope == "crm,messageservice"
    assert installation.portal_status == "L"
    assert installation.installed_by_user_id == "1"
    assert installation.state == InstallationState.ACTIVE
    # the OAuth server confirmed the tokens before anything was stored; the portal was not asked
    assert portal.calls[0] == ("oauth", "oauth.refresh", {"client_id": CLIENT_ID, "refresh_token": "refresh-token-1"})
    assert "app.info" not in [c[1] for c in portal.calls]
    assert portal.bindings[installation.pk] == [
        ("ONAPPUNINSTALL", f"https://sms.example.com/b24/uninstall/{installation.handler_secret}/"),
        ("ONAPPUPDATE", f"https://sms.example.com/b24/event/{installation.handler_secret}/"),
    ]
    assert response.json()["uninstall_handler_bound"] is True
    assert response.json()["update_handler_bound"] is True
    assert installation.bound_event_names == {"ONAPPUNINSTALL", "ONAPPUPDATE"}


def test_install_page_post_from_browser_gets_install_finish_page(client, application, portal):
    response = client.post("/b24/install/" + PAGE_QUERY, page_form(), content_type=FORM, HTTP_ACCEPT="text/html,*/*")

    assert response.status_code == 200
    assert b"BX24.installFinish()" in response.content
    assert "X-Frame-Options" not in response.headers  # shown inside the Bitrix24 iframe
    installation = Installation.objects.get()
    assert installation.domain == "acme.bitrix24.ru"
    assert installation.client_endpoint == "https://acme.bitrix24.ru/rest/"
    assert installation.refresh_token == "rotated-refresh-page-1"
    assert installation.application_token_matches("app-token-page")
    assert installation.member_id == MEMBER_ID


def test_install_page_post_without_browser_gets_json_and_http_protocol(client, application, portal):
    portal.client_endpoint = "http://portal.example.org:8080/rest/"  # an on-premise portal over http

    response = client.post("/b24/install/?DOMAIN=portal.example.org:8080&PROTOCOL=0", page_form(), content_type=FORM)

    assert response.status_code == 200
    assert response.json()["result"] == "installed"
    assert Installation.objects.get().client_endpoint == "http://portal.example.org:8080/rest/"


def test_token_of_another_application_is_refused_and_nothing_stored(client, application, portal):
    portal.app_code = "local.someoneelse.0000"

    response = client.post("/b24/install/", event_body(), content_type=FORM)

    assert response.status_code == 403
    assert "detail" in response.json()
    assert not Installation.objects.exists()
    assert [c[1] for c in portal.calls] == ["oauth.refresh"]


def test_forged_token_is_refused_and_nothing_stored(client, application, portal):
    response = client.post("/b24/install/", event_body(**{"auth[refresh_token]": "forged"}), content_type=FORM)

    assert response.status_code == 403
    assert not Installation.objects.exists()


def test_tokens_of_another_portal_are_refused(client, application, portal):
    """Real tokens of the attacker's own portal, sent with the victim's member_id."""
    portal.member_id = "0" * 32

    response = client.post("/b24/install/", event_body(), content_type=FORM)

    assert response.status_code == 403
    assert "another portal" in response.json()["detail"]
    assert not Installation.objects.exists()


def test_a_missing_or_refused_client_secret_is_a_503_naming_the_setting(client, application, portal):
    application.client_secret = ""
    application.save()
    response = client.post("/b24/install/", event_body(), content_type=FORM)
    assert response.status_code == 503 and "B24_CLIENT_SECRET" in response.json()["detail"]

    application.client_secret = "wrong"
    application.save()
    response = client.post("/b24/install/", event_body(), content_type=FORM)
    assert response.status_code == 503 and "client_id" in response.json()["detail"]
    assert not Installation.objects.exists()


def test_unreachable_oauth_server_answers_503_and_stores_nothing(client, application, portal):
    portal.fail("oauth.refresh", Bitrix24TransientError("NETWORK_ERROR", "timeout"))

    response = client.post("/b24/install/", event_body(), content_type=FORM)

    assert response.status_code == 503
    assert not Installation.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        (event_body(**{"auth[member_id]": None}), "auth[member_id]"),
        (event_body(**{"auth[application_token]": ""}), "auth[application_token]"),
        (event_body(**{"auth[client_endpoint]": "ftp://x/rest/"}), "auth[client_endpoint]"),
        (event_body(**{"auth[expires]": "soon"}), "auth[expires]"),
        (event_body(event="ONCRMLEADADD"), "event"),
        ("event=ONAPPINSTALL", "auth"),
        ("hello=world", "AUTH_ID"),
        (page_form(REFRESH_ID=None), "DOMAIN"),  # no query string: the domain is missing first
        (event_body(**{"auth[domain]": None}), "auth[domain]"),
        (event_body(**{"auth[domain]": "a" * 256}), "auth[domain]"),
        (event_body(**{"auth[domain]": "acme.bitrix24.ru/x?y@z"}), "auth[domain]"),
        (event_body(**{"auth[client_endpoint]": "http://[::1/rest/"}), "auth[client_endpoint]"),
        (event_body(**{"auth[client_endpoint]": "https://acme.bitrix24.ru:99999/rest/"}), "auth[client_endpoint]"),
        (event_body(**{"auth[client_endpoint]": "https://acme.bitrix24.ru/" + "r" * 475}), "auth[client_endpoint]"),
        (event_body(**{"auth[member_id]": "a223c6b3\x00"}), "auth[member_id]"),  # PostgreSQL refuses NUL
        (event_body(**{"auth[access_token]": "token\nwith-newline"}), "auth[access_token]"),
    ],
)
def test_bad_install_input_is_a_400_naming_the_field(client, application, portal, body, field):
    response = client.post("/b24/install/", body, content_type=FORM)

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Installation.objects.exists()
    assert portal.calls == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://evil.example.com/rest/",  # another host than auth[domain]
        "https://acme.bitrix24.ru:8443/rest/",  # ... or the right host on another port than the domain says
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_install_never_calls_an_endpoint_outside_the_portal_domain(client, application, portal, endpoint, settings):
    settings.SANDBOX = False
    body = event_body(**{"auth[client_endpoint]": endpoint})
    if ":8443" in endpoint:
        body = event_body(**{"auth[client_endpoint]": endpoint, "auth[domain]": "acme.bitrix24.ru:443"})

    response = client.post("/b24/install/", body, content_type=FORM)

    assert response.status_code == 400, response.content
    assert "auth[client_endpoint]" in response.json()
    assert portal.calls == []
    assert not Installation.objects.exists()


def test_allowed_portal_domains_are_checked_before_any_call(client, application, portal, settings):
    settings.B24_ALLOWED_PORTAL_DOMAINS = [".bitrix24.com", "crm.example.org"]

    refused = client.post("/b24/install/", event_body(), content_type=FORM)
    refused_page = client.post("/b24/install/" + PAGE_QUERY, page_form(), content_type=FORM)

    assert refused.status_code == 400 and "auth[domain]" in refused.json()
    assert refused_page.status_code == 400 and "DOMAIN" in refused_page.json()
    assert portal.calls == [] and not Installation.objects.exists()

    settings.B24_ALLOWED_PORTAL_DOMAINS = [".bitrix24.ru"]
    assert client.post("/b24/install/", event_body(), content_type=FORM).status_code == 200
    assert Installation.objects.get().domain == "acme.bitrix24.ru"


@pytest.mark.parametrize(
    "domain, allowed",
    [
        ("acme.bitrix24.com", True),
        ("ACME.Bitrix24.com", True),
        ("crm.example.org", True),
        ("bitrix24.com", False),
        ("evilbitrix24.com", False),
        ("acme.bitrix24.com.evil.io", False),
        ("sub.crm.example.org", False),
    ],
)
def test_allowed_portal_domain_entries(settings, domain, allowed):
    from providers.services.installations import portal_domain_allowed

    settings.B24_ALLOWED_PORTAL_DOMAINS = [".bitrix24.com", "crm.example.org"]
    assert portal_domain_allowed(domain) is allowed


def test_https_is_required_when_configured(client, application, portal, settings):
    settings.B24_REQUIRE_HTTPS = True

    event = client.post(
        "/b24/install/", event_body(**{"auth[client_endpoint]": "http://acme.bitrix24.ru/rest/"}), content_type=FORM
    )
    page = client.post("/b24/install/?DOMAIN=acme.bitrix24.ru&PROTOCOL=0", page_form(), content_type=FORM)

    assert event.status_code == 400 and "auth[client_endpoint]" in event.json()
    assert page.status_code == 400 and "PROTOCOL" in page.json()
    assert portal.calls == [] and not Installation.objects.exists()
    assert client.post("/b24/install/", event_body(), content_type=FORM).status_code == 200


def test_install_page_domain_must_be_a_host(client, application, portal):
    response = client.post("/b24/install/?DOMAIN=evil.example/x%3Fy%40z&PROTOCOL=1", page_form(), content_type=FORM)
    assert response.status_code == 400
    assert "DOMAIN" in response.json()
    assert portal.calls == []


def test_non_utf8_body_is_a_400(client, application, portal):
    response = client.post("/b24/install/", b"event=\xff\xfe", content_type=FORM)
    assert response.status_code == 400


def test_install_without_default_application_or_unknown_id_is_404(client, db, portal):
    assert client.post("/b24/install/", event_body(), content_type=FORM).status_code == 404
    assert client.post("/b24/install/999/", event_body(), content_type=FORM).status_code == 404
    assert client.get("/b24/install/").status_code == 405


def test_install_for_another_application_checks_its_client_id(client, application, other_application, portal):
    assert client.post(f"/b24/install/{other_application.pk}/", event_body(), content_type=FORM).status_code == 403
    portal.app_code = other_application.client_id

    response = client.post(f"/b24/install/{other_application.pk}/", event_body(), content_type=FORM)

    assert response.status_code == 200
    assert Installation.objects.get().application == other_application


def test_reinstall_updates_the_same_installation_and_pushes_providers_again(
    client, application, portal, approved_sender_name, django_capture_on_commit_callbacks
):
    client.post("/b24/install/", event_body(), content_type=FORM)
    installation = Installation.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        provider = provider_create(
            code="acme", name="Acme", sender_name_application=approved_sender_name, installations=[installation]
        )
    installation.mark_removed(installation.installed_at)
    portal.providers.clear()  # Bitrix24 deleted the application's providers
    secret = installation.handler_secret

    portal.client_endpoint = "https://acme-renamed.bitrix24.ru/rest/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/b24/install/",
            event_body(
                **{
                    "auth[refresh_token]": "refresh-token-2",
                    "auth[application_token]": "app-token-2",
                    "auth[domain]": "acme-renamed.bitrix24.ru",
                    "auth[client_endpoint]": "https://acme-renamed.bitrix24.ru/rest/",
                }
            ),
            content_type=FORM,
        )

    assert response.status_code == 200
    assert response.json()["result"] == "reinstalled"
    installation = Installation.objects.get()
    assert installation.state == InstallationState.ACTIVE
    assert installation.uninstalled_at is None
    assert installation.refresh_token == "rotated-refresh-token-2"
    assert installation.application_token_matches("app-token-2") and not installation.application_token_matches(
        "app-token-1"
    )
    assert installation.domain == "acme-renamed.bitrix24.ru"
    assert installation.handler_secret == secret  # HANDLER URLs stay valid
    # the registration was live, so the provider was added again
    assert "acme" in portal.providers[installation.pk]
    assert ProviderRegistration.objects.get(provider=provider).state == RegistrationState.REGISTERED


def test_rebind_error_is_success_when_event_get_shows_the_binding(client, application, portal):
    client.post("/b24/install/", event_body(), content_type=FORM)
    portal.rebind_fails = True

    response = client.post("/b24/install/", event_body(**{"auth[refresh_token]": "refresh-token-2"}), content_type=FORM)

    assert response.json()["uninstall_handler_bound"] is True
    assert [c[1] for c in portal.calls][-2:] == ["event.bind", "event.get"]
    assert Installation.objects.get().last_error == ""


def test_bind_failure_is_recorded_but_install_kept(client, application, portal):
    portal.fail("event.bind", Bitrix24MethodError("ERROR_EVENT_NOT_FOUND", "Event not found"))

    response = client.post("/b24/install/", event_body(), content_type=FORM)

    assert response.status_code == 200
    assert response.json()["uninstall_handler_bound"] is False
    installation = Installation.objects.get()
    assert installation.is_active
    assert "ERROR_EVENT_NOT_FOUND" in installation.last_error


def test_transient_bind_failure_is_retried_by_a_task(client, application, portal):
    portal.fail("event.bind", Bitrix24TransientError("QUERY_LIMIT_EXCEEDED", "Too many requests"))

    response = client.post("/b24/install/", event_body(), content_type=FORM)  # eager task binds at once

    assert response.status_code == 200
    installation = Installation.objects.get()
    assert portal.bindings[installation.pk]
    assert installation.last_error == ""


# --- uninstall --------------------------------------------------------------------------------


def uninstall_body(token, member_id=MEMBER_ID):
    return urlencode(
        {
            "event": "ONAPPUNINSTALL",
            "data[LANGUAGE_ID]": "ru",
            "data[CLEAN]": "1",
            "ts": "1696527000",
            "auth[domain]": "acme.bitrix24.ru",
            "auth[member_id]": member_id,
            "auth[application_token]": token,
        }
    )


@pytest.fixture
def installed(client, application, portal, approved_sender_name, django_capture_on_commit_callbacks):
    client.post("/b24/install/", event_body(), content_type=FORM)
    installation = Installation.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        provider_create(
            code="acme", name="Acme", sender_name_application=approved_sender_name, installations=[installation]
        )
    return installation


def test_uninstall_with_the_stored_token_removes_installation_and_registrations(client, installed, portal):
    response = client.post(
        f"/b24/uninstall/{installed.handler_secret}/", uninstall_body("app-token-1"), content_type=FORM
    )

    assert response.status_code == 200
    installation = Installation.objects.get()
    assert installation.state == InstallationState.REMOVED
    assert installation.uninstalled_at is not None
    assert installation.access_token == "" and installation.refresh_token == ""
    assert ProviderRegistration.objects.get().state == RegistrationState.REMOVED
    # a repeated event changes nothing and still answers 200
    assert (
        client.post(
            f"/b24/uninstall/{installed.handler_secret}/", uninstall_body("app-token-1"), content_type=FORM
        ).status_code
        == 200
    )


def test_no_call_reaches_the_portal_after_uninstall(client, installed, portal):
    from providers.services.registration import provider_check

    client.post(f"/b24/uninstall/{installed.handler_secret}/", uninstall_body("app-token-1"), content_type=FORM)
    calls_before = len(portal.calls)

    results = provider_check(provider=installed.providers.get(), installations=[Installation.objects.get()])

    assert "INSTALLATION_INACTIVE" in results[0]["error"]
    assert len(portal.calls) == calls_before


@pytest.mark.parametrize("token, member_id", [("wrong-token", MEMBER_ID), ("app-token-1", "another-member")])
def test_uninstall_with_a_wrong_token_is_refused_and_changes_nothing(client, installed, token, member_id):
    response = client.post(
        f"/b24/uninstall/{installed.handler_secret}/", uninstall_body(token, member_id), content_type=FORM
    )

    assert response.status_code == 403
    installation = Installation.objects.get()
    assert installation.state == InstallationState.ACTIVE
    assert installation.access_token == "admin-access-token"
    assert ProviderRegistration.objects.get().state == RegistrationState.REGISTERED


def test_uninstall_with_unknown_secret_or_bad_body(client, installed):
    assert (
        client.post("/b24/uninstall/not-a-secret/", uninstall_body("app-token-1"), content_type=FORM).status_code == 403
    )
    for forged in ("ab%00cd", "x" * 65, "a.b"):  # NUL: PostgreSQL refuses it in a query (was a 500)
        assert (
            client.post(f"/b24/uninstall/{forged}/", uninstall_body("app-token-1"), content_type=FORM).status_code
            == 403
        )
    response = client.post(f"/b24/uninstall/{installed.handler_secret}/", "event=ONAPPUNINSTALL", content_type=FORM)
    assert response.status_code == 400
    assert "auth" in response.json()
    assert Installation.objects.get().is_active


# --- default application ----------------------------------------------------------------------


def test_default_application_follows_settings(db, settings):
    from providers.models import BitrixApplication
    from providers.services.installations import application_sync_default

    settings.B24_CLIENT_ID = ""
    assert application_sync_default() is None

    settings.B24_CLIENT_ID, settings.B24_CLIENT_SECRET = CLIENT_ID, "first-secret"
    app = application_sync_default()
    assert (app.client_id, app.client_secret, app.is_default) == (CLIENT_ID, "first-secret", True)

    settings.B24_CLIENT_SECRET = ""  # an empty setting keeps the saved secret
    assert application_sync_default().client_secret == "first-secret"

    settings.B24_CLIENT_ID, settings.B24_CLIENT_SECRET = "local.new.1", "second"
    new = application_sync_default()
    assert new.is_default and new.pk != app.pk
    assert BitrixApplication.objects.filter(is_default=True).count() == 1


def test_a_late_install_event_changes_nothing(client, application, portal):
    """The install page and ONAPPINSTALL carry the same refresh token; the later one finds it rotated."""
    client.post("/b24/install/" + PAGE_QUERY, page_form(APPLICATION_TOKEN="app-token-1"), content_type=FORM)
    before = Installation.objects.values().get()

    late = event_body(**{"auth[refresh_token]": "refresh-page-1"})
    response = client.post("/b24/install/", late, content_type=FORM)

    assert response.status_code == 200, response.content
    assert response.json()["result"] == "unchanged"
    assert Installation.objects.values().get() == before


def test_a_replayed_install_without_the_application_token_is_refused(client, application, portal):
    client.post("/b24/install/", event_body(), content_type=FORM)
    before = Installation.objects.values().get()

    replay = event_body(**{"auth[application_token]": "guessed", "auth[access_token]": "attacker"})
    response = client.post("/b24/install/", replay, content_type=FORM)

    assert response.status_code == 403
    assert Installation.objects.values().get() == before


def test_a_domain_naming_the_default_port_is_the_same_host(client, application, portal):
    body = event_body(**{"auth[domain]": "acme.bitrix24.ru:443"})
    assert client.post("/b24/install/", body, content_type=FORM).status_code == 200


def test_sandbox_portal_with_a_domain_label_may_live_on_another_host(client, application, portal, settings):
    """The sandbox's fake portal is labelled sandbox.bitrix24.test but served from 127.0.0.1."""
    settings.SANDBOX = True
    body = event_body(
        **{"auth[domain]": "sandbox.bitrix24.test", "auth[client_endpoint]": "http://127.0.0.1:8102/rest/"}
    )

    assert client.post("/b24/install/", body, content_type=FORM).status_code == 200
    assert Installation.objects.get().domain == "sandbox.bitrix24.test"


def test_a_broker_outage_when_queueing_the_rebind_keeps_the_install(client, application, portal, monkeypatch):
    from kombu.exceptions import OperationalError

    from providers.tasks.registration import bind_event_handlers

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis: Connection refused.")

    monkeypatch.setattr(bind_event_handlers, "apply_async", broker_down)
    portal.fail("event.bind", Bitrix24TransientError("QUERY_LIMIT_EXCEEDED", "Too many requests"))

    response = client.post("/b24/install/", event_body(), content_type=FORM)

    assert response.status_code == 200
    assert response.json()["uninstall_handler_bound"] is False
    assert Installation.objects.get().is_active
