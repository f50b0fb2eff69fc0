"""Ids, pages, filters and bodies are bounded once for the whole API (common/api.py), and the schema says
what every operation answers (b24sms/api_schema.py): what a client sees, on SQLite and PostgreSQL alike."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from providers.models import BitrixApplication, Installation, Message, Provider, ProviderRegistration, RegistrationState
from tests.fixtures.documents import PDF_BYTES

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"  # 20 digits: past PostgreSQL's bigint and SQLite's INTEGER


@pytest.fixture
def rows(db):
    application = BitrixApplication.objects.create(name="app", client_id="local.api.1", client_secret="s")
    installation = Installation.objects.create(
        application=application,
        member_id="member-api",
        domain="acme.bitrix24.test",
        client_endpoint="https://acme.bitrix24.test/rest/",
        access_token="at",
        refresh_token="rt",
        application_token="apptoken",
    )
    provider = Provider.objects.create(code="api_sms", name="API SMS", sender_name="ACME")
    ProviderRegistration.objects.create(
        provider=provider, installation=installation, state=RegistrationState.REGISTERED
    )
    for n in range(3):
        Message.objects.create(
            installation=installation,
            provider=provider,
            message_id=f"api-{n}",
            module_id="crm",
            message_to="+79001234567",
            destination="79001234567",
            text="hi",
            sender_name="ACME",
        )
    return installation, provider


@pytest.fixture
def schema(api_client):
    return api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()


@pytest.mark.parametrize(
    "url, parameter",
    [
        (f"/api/messages/?portal={HUGE}", "portal"),
        (f"/api/messages/?provider={HUGE}", "provider"),
        ("/api/messages/?provider=0", "provider"),
        ("/api/messages/?portal=1.5e300", "portal"),
        (f"/api/usage/?portal={HUGE}", "portal"),
        (f"/api/tariffs/?installation={HUGE}", "installation"),
        (f"/api/portals/?application={HUGE}", "application"),
        (f"/api/sender-name-groups/?account={HUGE}", "account"),
        ("/api/messages/?created_from=0001-01-01T00:00:00%2B01:00", "created_from"),  # before year 1 in UTC
        ("/api/messages/?page=0", "page"),
        ("/api/messages/?page=abc", "page"),
        ("/api/portals/{portal}/statement/?month=2026-13", "month"),
    ],
)
def test_a_bad_id_date_or_page_in_a_query_is_a_400_naming_it(api_client, rows, url, parameter):
    response = api_client.get(url.format(portal=rows[0].pk))
    assert response.status_code == 400, response.content
    assert parameter in response.json()


def test_an_id_that_exists_nowhere_filters_everything_out(api_client, rows):
    installation, _provider = rows
    assert api_client.get(f"/api/messages/?portal={installation.pk + 1000}").json()["count"] == 0
    assert api_client.get(f"/api/portals/?application={installation.application_id + 1000}").json()["count"] == 0
    assert api_client.get(f"/api/messages/?portal={installation.pk}").json()["count"] == 3


@pytest.mark.parametrize(
    "url",
    [
        f"/api/messages/{HUGE}/",
        f"/api/providers/{HUGE}/test-sms/",
        f"/api/portals/{HUGE}/usage/",
        f"/api/sender-names/{HUGE}/documents/1/",
        "/api/providers/0.5/",
        "/api/nothing-here/",
    ],
)
def test_a_path_that_names_no_row_is_a_json_404(api_client, rows, url):
    if "test-sms" in url:
        response = api_client.post(url, {"phone": "+79001234567", "text": "x"})
    else:
        response = api_client.get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_page_past_the_last_is_a_404(api_client, rows):
    assert api_client.get("/api/messages/?page=2").status_code == 404


def test_an_empty_query_value_is_the_same_as_none(api_client, rows):
    everything = api_client.get("/api/messages/").json()
    response = api_client.get("/api/messages/?page=&portal=&state=&created_from=&provider_code=")
    assert response.status_code == 200 and response.json() == everything
    assert api_client.get("/api/usage/?portal=&date_from=").status_code == 200
    assert api_client.get("/api/statements/?month=&format=").status_code == 200


def test_ids_in_a_body_are_bounded(api_client, rows):
    _installation, provider = rows
    response = api_client.post(
        f"/api/providers/{provider.pk}/test-sms/", {"phone": "+79001234567", "text": "x", "installation": int(HUGE)}
    )
    assert response.status_code == 400 and "installation" in response.json()
    response = api_client.post(f"/api/providers/{provider.pk}/check/", {"installations": [int(HUGE)]})
    assert response.status_code == 400 and "installations" in response.json()
    response = api_client.post(f"/api/providers/{provider.pk}/register/", {"installations": {}})
    assert response.status_code == 400 and "installations" in response.json()  # an object is not a list
    assert not Message.objects.filter(message_id__startswith="test-").exists()


def test_only_json_bodies_outside_uploads(api_client, rows):
    response = api_client.post("/api/providers/", {"code": "x", "name": "X", "sender_name": "ACME"}, format="multipart")
    assert response.status_code == 415 and "detail" in response.json()
    assert not Provider.objects.filter(code="x").exists()


def test_register_answers_the_list_the_schema_promises(api_client, rows, schema):
    installation, provider = rows  # the registration task is queued on commit, which never comes here
    response = api_client.post(f"/api/providers/{provider.pk}/register/", {"installations": [installation.pk]})
    assert response.status_code == 202
    assert [row["installation"] for row in response.json()] == [installation.pk]
    documented = schema["paths"]["/api/providers/{id}/register/"]["post"]["responses"]["202"]
    assert documented["content"]["application/json"]["schema"]["type"] == "array"


def test_every_operation_documents_its_errors_with_the_one_error_body(schema):
    error = {"$ref": "#/components/schemas/Error"}
    assert set(schema["components"]["schemas"]["Error"]["properties"]) == {"detail"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for code in ("401", "403"):
                assert responses[code]["content"]["application/json"]["schema"] == error, (method, path, code)
            if "{" in path:
                assert "404" in responses, (method, path)
            if operation.get("requestBody") or any(p["in"] == "query" for p in operation.get("parameters", [])):
                assert "400" in responses, (method, path)
            for parameter in operation.get("parameters", []):
                assert parameter["in"] != "query" or parameter.get("allowEmptyValue") or parameter.get("required")
    delete = schema["paths"]["/api/providers/{id}/"]["delete"]["responses"]
    assert "remove it from the portals" in delete["400"]["description"]


def test_a_document_is_served_and_documented_with_its_own_type(api_client, db, settings, schema):
    from sendernames.services import application_create

    application = application_create(
        common_type="PROMO",
        brand="MTS",
        date_from="2030-01-31",
        sender_name="ACMESHOP",
        counteragent_name="ООО Акме",
        counteragent_inn="7707083893",
        documents=[SimpleUploadedFile("charter.pdf", PDF_BYTES)],
    )
    document = application.documents.get()
    response = api_client.get(
        f"/api/sender-names/{application.pk}/documents/{document.pk}/", HTTP_ACCEPT="application/pdf"
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    documented = schema["paths"]["/api/sender-names/{id}/documents/{document_id}/"]["get"]["responses"]["200"]
    assert set(documented["content"]) == {"application/pdf", "image/png", "image/jpeg"}


def test_a_message_list_raised_by_a_view_names_no_field_the_same_way():
    from rest_framework.exceptions import ValidationError

    from b24sms.api import exception_handler

    response = exception_handler(ValidationError(["Not now."]), {"view": None})
    assert response.status_code == 400 and response.data == {"non_field_errors": ["Not now."]}


@pytest.mark.parametrize(
    "method, url, body, field",
    [
        ("post", "/api/providers/", {"code": 0, "name": "X", "sender_name": "ACME"}, "code"),
        (
            "post",
            "/api/providers/",
            {"code": "x", "name": "X", "sender_name": "ACME", "installations": ["1"]},
            "installations",
        ),
        (
            "post",
            "/api/sender-name-groups/",
            {
                "brands": ["MTS"],
                "all_brands": 0,
                "common_type": "SERVICE",
                "date_from": "2030-01-31",
                "sender_name": "ACME",
                "counteragent_name": "ООО Акме",
                "counteragent_inn": "7707083893",
            },
            "all_brands",
        ),
        ("patch", "/api/portals/{portal}/", {"quota_monthly_parts": "5"}, "quota_monthly_parts"),
        ("patch", "/api/portals/{portal}/", {"quota_warning_percent": 80.0}, "quota_warning_percent"),
        ("post", "/api/tariffs/", {"price_per_part": 0.45, "valid_from": "2030-01-01"}, "price_per_part"),
        (
            "post",
            "/api/sender-names/",
            {
                "brand": 1,
                "common_type": "SERVICE",
                "date_from": "2030-01-31",
                "sender_name": "ACME",
                "counteragent_name": "ООО Акме",
                "counteragent_inn": "7707083893",
            },
            "brand",
        ),
    ],
)
def test_a_json_value_of_another_type_than_the_schema_says_is_a_400(api_client, rows, method, url, body, field):
    """DRF alone would read 0 as the text "0", "5" as 5, 0 as false, 0.45 as a decimal."""
    response = getattr(api_client, method)(url.format(portal=rows[0].pk), body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Provider.objects.filter(code="0").exists()
    rows[0].refresh_from_db()
    assert rows[0].quota_monthly_parts is None and rows[0].quota_warning_percent == 80
