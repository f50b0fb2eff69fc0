"""API: /api/portals/ and /api/providers/ (staff only, snake_case, 4xx naming the field)."""

import pytest

from providers.models import InstallationState, Provider, RegistrationState

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_portals_list_and_retrieve_never_expose_tokens(api_client, make_installation):
    installation = make_installation(
        state=InstallationState.NEEDS_REINSTALL, last_error="invalid_grant", application_token="app-token-shown-nowhere"
    )

    listed = api_client.get("/api/portals/").json()["results"]
    one = api_client.get(f"/api/portals/{installation.pk}/").json()

    assert listed[0]["domain"] == installation.domain
    assert one["needs_reinstall"] is True and one["last_error"] == "invalid_grant"
    text = str(listed) + str(one)
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
        assert secret not in text


def test_api_requires_staff(client, db):
    assert client.get("/api/portals/").status_code in (401, 403)
    assert client.post("/api/providers/", {}, content_type="application/json").status_code in (401, 403)


def test_create_provider_registers_it_on_the_given_installations(
    api_client, make_installation, approved_sender_name, portal, on_commit
):
    installation = make_installation()
    with on_commit():
        response = api_client.post(
            "/api/providers/",
            {
                "code": "acme",
                "name": "Acme",
                "name_translations": {"ru": "Акме", "en": "Acme"},
                "description": "Gateway",
                "sender_name_application": approved_sender_name.pk,
                "installations": [installation.pk],
            },
            format="json",
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["code"] == "acme" and body["type"] == "SMS" and body["sender_name"] == "ACMESHOP"
    assert body["installations"] == [installation.pk]
    assert "acme" in portal.providers[installation.pk]
    detail = api_client.get(f"/api/providers/{body['id']}/").json()
    assert detail["registrations"][0]["state"] == RegistrationState.REGISTERED
    assert detail["registrations"][0]["domain"] == installation.domain


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"code": "bad code", "name": "X", "sender_name": "OUTSIDE"}, "code"),
        ({"code": "x", "name": "", "sender_name": "OUTSIDE"}, "name"),
        ({"code": "x", "name": "X"}, "sender_name"),
        ({"code": "x", "name": "X", "sender_name": "OUTSIDE", "name_translations": {"eng": "X"}}, "name_translations"),
        ({"code": "x", "name": "X", "sender_name": "OUTSIDE", "installations": [9999]}, "installations"),
        ({"code": "x", "name": "X", "sender_name_application": 9999}, "sender_name_application"),
        (
            {"code": "x", "name": "X", "sender_name": "OUTSIDE", "name_translations": {"ru": "X\u0000"}},
            "name_translations",
        ),
        ({"code": "x", "name": "X\u0000", "sender_name": "OUTSIDE"}, "name"),
        (
            {"code": "x", "name": "X", "sender_name": "OUTSIDE", "description_translations": ["X"]},
            "description_translations",
        ),
    ],
)
def test_bad_provider_input_is_a_400_naming_the_field(api_client, payload, field):
    response = api_client.post("/api/providers/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Provider.objects.exists()


def test_inactive_installation_is_refused(api_client, make_installation):
    removed = make_installation(state=InstallationState.REMOVED)
    response = api_client.post(
        "/api/providers/",
        {"code": "x", "name": "X", "sender_name": "OUTSIDE", "installations": [removed.pk]},
        format="json",
    )
    assert response.status_code == 400
    assert "installations" in response.json()
    assert not Provider.objects.exists()


def test_update_pushes_and_register_check_remove_delete(
    api_client, make_installation, approved_sender_name, portal, on_commit
):
    first, second = make_installation(), make_installation()
    provider_id = api_client.post(
        "/api/providers/",
        {"code": "acme", "name": "Acme", "sender_name_application": approved_sender_name.pk},
        format="json",
    ).json()["id"]

    with on_commit():
        response = api_client.post(
            f"/api/providers/{provider_id}/register/", {"installations": [first.pk]}, format="json"
        )
    assert response.status_code == 202
    assert [r["installation"] for r in response.json()] == [first.pk]
    assert "acme" in portal.providers[first.pk] and second.pk not in portal.providers

    with on_commit():
        response = api_client.patch(f"/api/providers/{provider_id}/", {"name": "Acme 2"}, format="json")
    assert response.status_code == 200
    assert portal.providers[first.pk]["acme"]["NAME"] == "Acme 2"

    portal.providers[first.pk]["stranger"] = {}
    response = api_client.post(f"/api/providers/{provider_id}/check/", {}, format="json")
    assert response.status_code == 200
    [row] = response.json()
    assert (
        row["domain"] == first.domain and row["present_on_portal"] is True and row["unknown_on_portal"] == ["stranger"]
    )

    with on_commit():
        response = api_client.post(f"/api/providers/{provider_id}/remove/", {}, format="json")
    assert response.status_code == 202
    assert "acme" not in portal.providers[first.pk]

    with on_commit():
        assert api_client.post(f"/api/providers/{provider_id}/register/", {}, format="json").status_code == 202
    assert "acme" in portal.providers[first.pk] and "acme" in portal.providers[second.pk]

    with on_commit():
        assert api_client.delete(f"/api/providers/{provider_id}/").status_code == 204
    assert "acme" not in portal.providers[first.pk] and "acme" not in portal.providers[second.pk]


def test_register_with_a_bad_installation_id_names_the_field(api_client, approved_sender_name):
    provider_id = api_client.post(
        "/api/providers/",
        {"code": "acme", "name": "Acme", "sender_name_application": approved_sender_name.pk},
        format="json",
    ).json()["id"]
    response = api_client.post(f"/api/providers/{provider_id}/register/", {"installations": ["x"]}, format="json")
    assert response.status_code == 400
    assert "installations" in response.json()


def test_schema_documents_the_endpoints_and_fields(api_client):
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    for p in [
        "/api/portals/",
        "/api/portals/{id}/",
        "/api/providers/",
        "/api/providers/{id}/",
        "/api/providers/{id}/register/",
        "/api/providers/{id}/check/",
        "/api/providers/{id}/remove/",
    ]:
        assert p in paths, p
    provider = schema["components"]["schemas"]["Provider"]["properties"]
    for field in [
        "code",
        "name",
        "name_translations",
        "description",
        "description_translations",
        "sender_name",
        "sender_name_application",
        "installations",
        "registrations",
    ]:
        assert field in provider, field
    assert "access_token" not in schema["components"]["schemas"]["Installation"]["properties"]


def test_provider_with_messages_cannot_be_deleted(api_client, make_installation, approved_sender_name):
    from providers.models import Message

    installation = make_installation()
    provider_id = api_client.post(
        "/api/providers/",
        {"code": "acme", "name": "Acme", "sender_name_application": approved_sender_name.pk},
        format="json",
    ).json()["id"]
    Message.objects.create(
        installation=installation,
        provider_id=provider_id,
        message_id="m1",
        module_id="crm",
        message_to="+79990000000",
        text="hi",
        sender_name="ACMESHOP",
    )

    response = api_client.delete(f"/api/providers/{provider_id}/")

    assert response.status_code == 400
    assert "remove it from the portals" in str(response.json())
    assert Provider.objects.filter(pk=provider_id).exists()


def test_a_portal_named_twice_is_registered_and_checked_once(api_client, make_installation, portal, on_commit):
    installation = make_installation()
    with on_commit():
        created = api_client.post(
            "/api/providers/",
            {
                "code": "acme",
                "name": "Acme",
                "sender_name": "OUTSIDE",
                "installations": [installation.pk, installation.pk],
            },
            format="json",
        )
    assert created.status_code == 201, created.content
    assert len([c for c in portal.calls if c[1] == "messageservice.sender.add"]) == 1

    checked = api_client.post(
        f"/api/providers/{created.json()['id']}/check/",
        {"installations": [installation.pk, installation.pk]},
        format="json",
    )
    assert checked.status_code == 200
    assert [row["installation_id"] for row in checked.json()] == [installation.pk]


def test_lists_take_a_fixed_number_of_queries(
    api_client, five_providers_on_five_portals, django_assert_max_num_queries
):
    with django_assert_max_num_queries(6):
        assert len(api_client.get("/api/portals/").json()["results"]) == 5
    with django_assert_max_num_queries(6):
        providers = api_client.get("/api/providers/").json()["results"]
    assert len(providers) == 5 and all(len(p["registrations"]) == 5 for p in providers)


def test_a_code_taken_by_a_concurrent_request_is_a_400(api_client, monkeypatch):
    monkeypatch.setattr("providers.services.registration._code_taken", lambda code, **kw: False)  # both passed it
    body = {"code": "acme", "name": "Acme", "sender_name": "OUTSIDE"}
    assert api_client.post("/api/providers/", body, format="json").status_code == 201

    response = api_client.post("/api/providers/", body, format="json")

    assert response.status_code == 400
    assert "code" in response.json()
    assert Provider.objects.count() == 1


def test_a_broker_outage_leaves_the_registration_pending_not_a_500(
    api_client, make_installation, portal, on_commit, monkeypatch
):
    from kombu.exceptions import OperationalError

    from providers.tasks import registration as registration_tasks

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis: Connection refused.")

    monkeypatch.setattr(registration_tasks.register_provider, "delay", broker_down)
    installation = make_installation()
    with on_commit():
        created = api_client.post(
            "/api/providers/",
            {"code": "acme", "name": "Acme", "sender_name": "OUTSIDE", "installations": [installation.pk]},
            format="json",
        )
    assert created.status_code == 201, created.content
    assert created.json()["registrations"][0]["state"] == RegistrationState.PENDING
    assert not [c for c in portal.calls if c[1] == "messageservice.sender.add"]
