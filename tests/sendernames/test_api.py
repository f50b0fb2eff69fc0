"""The REST API: shapes, filters, actions and every kind of bad input (4xx naming the field)."""

import json
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from idgtl.client import IdgtlConfigurationError
from sendernames.models import SenderNameApplication, SenderNameDocument, SubmissionState
from tests.sendernames.conftest import PDF_BYTES, PNG_BYTES, ZIP_BYTES, application_fields, pdf, png, remote_record

URL = "/api/sender-names/"


def payload(**overrides):
    data = application_fields(**overrides)
    data["date_from"] = str(data["date_from"])
    return data


@pytest.fixture
def api(api_client, account):
    return api_client


def nothing_stored():
    return not SenderNameApplication.objects.exists() and not SenderNameDocument.objects.exists()


def test_create_as_json_without_files(api):
    response = api.post(URL, payload(), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["sender_name"] == "MyShop" and body["submission_state"] == "draft"
    assert body["date_from"].endswith("T00:00:00+03:00")
    assert body["documents"] == [] and body["history"] == [] and body["last_error"] is None
    assert set(body) >= {
        "channel_type",
        "common_type",
        "brand",
        "date_from",
        "sender_name",
        "counteragent_name",
        "counteragent_inn",
        "status",
        "fee",
        "remote_id",
        "documents",
        "history",
    }


def test_create_as_multipart_with_two_files(api):
    response = api.post(
        URL, {**payload(common_type="PROMO"), "file2": png("b.png"), "file1": pdf("a.pdf")}, format="multipart"
    )
    assert response.status_code == 201, response.content
    documents = response.json()["documents"]
    assert [(d["original_name"], d["content_type"], d["position"]) for d in documents] == [
        ("a.pdf", "application/pdf", 1),
        ("b.png", "image/png", 2),
    ]
    download = api.get(documents[0]["download_url"])
    assert download.status_code == 200 and b"".join(download.streaming_content) == PDF_BYTES
    assert 'filename="a.pdf"' in download["Content-Disposition"]


@pytest.mark.parametrize(
    "data, field",
    [
        ({"brand": "NEW_BRAND"}, "brand"),
        ({"common_type": "ADS"}, "common_type"),
        ({"channel_type": "VIBER"}, "channel_type"),
        ({"sender_name": "Магазин"}, "sender_name"),
        ({"sender_name": "AB"}, "sender_name"),
        ({"date_from": "2001-01-01"}, "date_from"),
        ({"date_from": "soon"}, "date_from"),
        ({"counteragent_inn": "123451729124"}, "counteragent_inn"),
        ({"counteragent_inn": "12345"}, "counteragent_inn"),
        ({"common_type": "PROMO"}, "documents"),
        ({"account": 999999}, "account"),
    ],
)
def test_bad_fields_are_named(api, data, field):
    response = api.post(URL, payload(**data), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert nothing_stored()


def test_missing_fields_are_named(api):
    response = api.post(URL, {"brand": "MTS"}, format="json")
    assert response.status_code == 400
    assert {"common_type", "date_from", "sender_name", "counteragent_name", "counteragent_inn"} <= set(response.json())


def test_wrong_file_type_is_named_by_part(api):
    bad = SimpleUploadedFile("contract.pdf", ZIP_BYTES, content_type="application/pdf")
    response = api.post(URL, {**payload(common_type="PROMO"), "file1": pdf(), "file2": bad}, format="multipart")
    assert response.status_code == 400
    assert "not a PDF, PNG or JPEG" in response.json()["file2"][0]
    assert nothing_stored()


def test_oversized_upload_is_refused(api, settings):
    settings.SENDER_NAME_MAX_DOCUMENT_SIZE = 1024
    big = SimpleUploadedFile("big.pdf", PDF_BYTES + b"0" * 2048, content_type="application/pdf")
    response = api.post(URL, {**payload(common_type="PROMO"), "file1": big}, format="multipart")
    assert response.status_code == 400 and "at most 1024 bytes" in response.json()["file1"][0]
    assert nothing_stored()


def test_too_many_files_and_unknown_parts(api, settings):
    settings.SENDER_NAME_MAX_DOCUMENTS = 1
    response = api.post(URL, {**payload(), "file1": pdf(), "file2": png(), "attachment": pdf()}, format="multipart")
    assert response.status_code == 400
    assert set(response.json()) == {"documents", "attachment"}
    assert nothing_stored()


def test_malformed_json_is_a_400(api):
    response = api.post(URL, data='{"brand": "MTS",', content_type="application/json")
    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "42", "null"])
def test_a_body_that_is_not_an_object_is_a_400(api, body):
    response = api.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "non_field_errors" in response.json()
    assert nothing_stored()


def test_duplicate_points_to_the_existing_application(api):
    first = api.post(URL, payload(), format="json").json()
    response = api.post(URL, payload(sender_name="MYSHOP"), format="json")
    assert response.status_code == 400
    assert f"#{first['id']}" in response.json()["sender_name"][0]
    assert SenderNameApplication.objects.count() == 1


def test_list_filters(api, make_application):
    make_application(sender_name="One", brand="MTS", common_type="SERVICE")
    b = make_application(sender_name="Two", brand="BEELINE", common_type="PROMO")
    SenderNameApplication.objects.filter(pk=b.pk).update(status="APPROVED")
    assert api.get(URL).json()["count"] == 2
    assert [r["sender_name"] for r in api.get(URL, {"brand": "BEELINE"}).json()["results"]] == ["Two"]
    assert [r["sender_name"] for r in api.get(URL, {"common_type": "SERVICE"}).json()["results"]] == ["One"]
    assert [r["sender_name"] for r in api.get(URL, {"status": "APPROVED"}).json()["results"]] == ["Two"]
    assert api.get(URL, {"brand": "NOPE"}).status_code == 400


def test_detail_has_documents_and_history(api, make_application, account):
    application = make_application(common_type="PROMO")
    application.history.create(previous_status="", status="PRE_REVIEW", cause="submission")
    response = api.get(f"{URL}{application.pk}/")
    assert account.sender_names_key not in response.content.decode()
    body = response.json()
    assert len(body["documents"]) == 1 and body["history"][0]["status"] == "PRE_REVIEW"
    assert api.get(f"{URL}999999/").status_code == 404


def test_submit_twice_queues_once(api, make_application, django_capture_on_commit_callbacks):
    application = make_application()
    with (
        mock.patch("sendernames.tasks.submit_application.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        first = api.post(f"{URL}{application.pk}/submit/")
        second = api.post(f"{URL}{application.pk}/submit/")
    assert first.status_code == 202 and first.json()["application"]["submission_state"] == "queued"
    assert second.status_code == 200 and "nothing was sent again" in second.json()["detail"]
    delay.assert_called_once_with(application.pk)


def test_refresh(api, make_application, monkeypatch):
    application = make_application()
    assert api.post(f"{URL}{application.pk}/refresh/").status_code == 400  # not submitted
    SenderNameApplication.objects.filter(pk=application.pk).update(
        submission_state=SubmissionState.SUBMITTED, remote_id=5, status="PRE_REVIEW"
    )

    class Client:
        answer = remote_record(application, remote_id=5, status="APPROVED")

        def get_sender_name(self, remote_id):
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    monkeypatch.setattr("sendernames.services.remote.client_for", lambda account: Client())
    response = api.post(f"{URL}{application.pk}/refresh/")
    assert response.status_code == 200 and response.json()["application"]["status"] == "APPROVED"
    assert response.json()["application"]["history"][0]["cause"] == "manual_refresh"
    Client.answer = IdgtlConfigurationError("Bad credentials", http_status=401, code=4012)
    response = api.post(f"{URL}{application.pk}/refresh/")
    assert response.status_code == 502 and "configuration problem" in response.json()["detail"]
    assert response.json()["application"]["last_error"]["kind"] == "configuration"


def test_api_is_for_staff_with_token_or_session(db, account, django_user_model):
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    anonymous = APIClient()
    assert anonymous.get(URL).status_code in (401, 403)
    plain = django_user_model.objects.create_user(username="plain", password="x-pass-123456")
    token = Token.objects.create(user=plain)
    assert APIClient(HTTP_AUTHORIZATION=f"Token {token.key}").get(URL).status_code == 403
    staff = django_user_model.objects.create_user(username="staff", password="x-pass-123456", is_staff=True)
    token = Token.objects.create(user=staff)
    assert (
        APIClient(HTTP_AUTHORIZATION=f"Token {token.key}").get(URL).status_code == 403
    )  # staff without view permission
    staff.groups.add(Group.objects.get(name="Viewer"))
    assert APIClient(HTTP_AUTHORIZATION=f"Token {token.key}").get(URL).status_code == 200


def test_schema_documents_the_endpoints(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert {
        "/api/sender-names/",
        "/api/sender-names/{id}/",
        "/api/sender-names/{id}/submit/",
        "/api/sender-names/{id}/refresh/",
    } <= set(paths)
    create = paths["/api/sender-names/"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(create["requestBody"]["content"])
    ref = create["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    multipart = schema["components"]["schemas"][ref]["properties"]
    assert {
        "channel_type",
        "common_type",
        "brand",
        "date_from",
        "sender_name",
        "counteragent_name",
        "counteragent_inn",
    } <= set(multipart)
    assert [name for name in multipart if name.startswith("file")] == [f"file{n}" for n in range(1, 11)]
    assert multipart["file1"]["format"] == "binary" and "PDF, PNG or JPEG" in multipart["file1"]["description"]
    errors = create["responses"]["400"]["content"]["application/json"]
    assert errors["schema"]["allOf"] == [{"$ref": "#/components/schemas/Error"}]  # the API's one error body
    assert schema["components"]["schemas"]["Error"]["additionalProperties"] == {
        "$ref": "#/components/schemas/ErrorMessages"
    }
    assert "sender_name" in str(errors["examples"])


def test_more_file_parts_than_django_accepts_is_a_400(api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    files = {f"file{n}": pdf(f"{n}.pdf") for n in range(1, 6)}
    response = api.post(URL, {**payload(common_type="PROMO"), **files}, format="multipart")
    assert response.status_code == 400 and "DATA_UPLOAD_MAX_NUMBER_FILES" in response.json()["detail"]
    assert nothing_stored()


def test_a_json_body_over_the_size_limit_is_a_4xx(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post(URL, payload(counteragent_name="x" * 5000), format="json")
    assert response.status_code == 413, response.content
    assert nothing_stored()


def test_submit_with_the_broker_down_still_queues(api, make_application, django_capture_on_commit_callbacks):
    application = make_application()
    with (
        mock.patch("sendernames.tasks.submit_application.delay", side_effect=ConnectionError("broker down")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = api.post(f"{URL}{application.pk}/submit/")
    assert response.status_code == 202  # the stalled-submission sweep of the beat job enqueues it later
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.QUEUED


def raw_multipart(fields: dict, files: list[tuple[str, str, bytes]]):
    """A multipart body built by hand, for part names and contents a test client would not send."""
    boundary = "b24sms-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    for part, filename, content in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{part}"; filename="{filename}"\r\n'
            f"Content-Type: application/pdf\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"date_from": "9999-12-31T23:00:00-05:00"}, "date_from", "out of range"),
        ({"date_from": "0001-01-01T00:00:00+05:00"}, "date_from", "out of range"),
        ({"date_from": "2030-02-30"}, "date_from", "Enter a date"),
        ({"date_from": "31.01.2030"}, "date_from", "Enter a date"),
        ({"date_from": True}, "date_from", "Not a valid string"),
        ({"date_from": "2" * 100_000}, "date_from", "Enter a date"),
        ({"sender_name": "My\u2003Shop"}, "sender_name", "may contain only"),
        ({"sender_name": "My\u00a0Shop"}, "sender_name", "may contain only"),
        ({"sender_name": ["MyShop"]}, "sender_name", "Not a valid string"),
        ({"sender_name": "x" * 100_000}, "sender_name", "no more than"),
        ({"sender_name": None}, "sender_name", "may not be null"),
        ({"brand": ["MTS"]}, "brand", "not a valid choice"),
        ({"common_type": {"a": 1}}, "common_type", "not a valid choice"),
        ({"counteragent_name": "x" * 100_000}, "counteragent_name", "no more than 255"),
        ({"counteragent_name": "Shop\x00LLC"}, "counteragent_name", "Null characters"),
        ({"counteragent_name": "   "}, "counteragent_name", "may not be blank"),
        ({"counteragent_inn": ["7707083893"]}, "counteragent_inn", "Not a valid string"),
        ({"account": "first"}, "account", "Incorrect type"),
        ({"file1": "a document as text"}, "file1", "as files in a multipart/form-data request"),
    ],
)
def test_wrong_types_and_odd_values_are_named(api, data, field, message):
    body = {**payload(), **data}
    response = api.post(URL, json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()[field])
    assert nothing_stored()


@pytest.mark.parametrize(
    "filename, content, message",
    [
        ("empty.pdf", b"", "empty.pdf is empty."),
        (
            "setup.pdf",
            b"MZ\x90\x00" + b"\x00" * 200,
            "setup.pdf is not a PDF, PNG or JPEG file (judged by its content, not its name).",
        ),
        (
            "notes.pdf",
            b"just some text",
            "notes.pdf is not a PDF, PNG or JPEG file (judged by its content, not its name).",
        ),
    ],
)
def test_bad_file_contents_are_named_by_part(api, filename, content, message):
    body, content_type = raw_multipart(
        payload(common_type="PROMO"), [("file1", "ok.pdf", PDF_BYTES), ("file2", filename, content)]
    )
    response = api.generic("POST", URL, body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert response.json() == {"file2": [message]}
    assert nothing_stored()


def test_a_png_named_pdf_is_stored_as_the_png_it_is(api):
    body, content_type = raw_multipart(payload(common_type="PROMO"), [("file1", "scan.pdf", PNG_BYTES)])
    response = api.generic("POST", URL, body, content_type=content_type)
    assert response.status_code == 201, response.content
    assert [(d["original_name"], d["content_type"]) for d in response.json()["documents"]] == [
        ("scan.pdf", "image/png")
    ]


def test_field_and_file_errors_are_reported_together(api):
    bad = SimpleUploadedFile("contract.pdf", ZIP_BYTES, content_type="application/pdf")
    response = api.post(URL, {**payload(common_type="PROMO", brand="NOKIA"), "file1": bad}, format="multipart")
    assert response.status_code == 400
    assert set(response.json()) == {"brand", "file1"}
    assert nothing_stored()


def test_a_very_long_file_name_is_kept_within_the_column(api):
    body, content_type = raw_multipart(payload(common_type="PROMO"), [("file1", "a" * 400 + ".pdf", PDF_BYTES)])
    response = api.generic("POST", URL, body, content_type=content_type)
    assert response.status_code == 201, response.content
    name = response.json()["documents"][0]["original_name"]
    assert name.endswith(".pdf") and len(name) <= 255


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_an_application_cannot_be_changed_or_deleted_through_the_api(api, make_application, method):
    application = make_application()
    SenderNameApplication.objects.filter(pk=application.pk).update(
        submission_state=SubmissionState.SUBMITTED, remote_id=3, status="REVIEW"
    )
    response = getattr(api, method)(f"{URL}{application.pk}/", {"sender_name": "Changed"}, format="json")
    assert response.status_code == 405
    application.refresh_from_db()
    assert application.sender_name == "MyShop"


def test_list_and_detail_queries_do_not_grow_with_rows(api, make_application, django_assert_max_num_queries):
    for n in range(12):
        application = make_application(sender_name=f"Name{n}", common_type="PROMO", documents=[pdf(), png()])
        application.history.create(previous_status="", status="PRE_REVIEW", cause="submission")
        application.history.create(previous_status="PRE_REVIEW", status="REVIEW", cause="periodic_sync")
    with django_assert_max_num_queries(6):  # session/token user, count, page, documents, history
        response = api.get(URL)
    assert response.json()["count"] == 12
    assert all(len(r["documents"]) == 2 and len(r["history"]) == 2 for r in response.json()["results"])
    with django_assert_max_num_queries(5):
        assert api.get(f"{URL}{application.pk}/").status_code == 200


def test_an_oversized_upload_is_refused_while_it_streams(api, settings, monkeypatch):
    settings.SENDER_NAME_MAX_DOCUMENT_SIZE = 100_000
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10_000  # larger parts would go to a temporary file ...
    written = []
    from django.core.files import uploadhandler

    original = uploadhandler.TemporaryFileUploadHandler.receive_data_chunk
    monkeypatch.setattr(
        uploadhandler.TemporaryFileUploadHandler,
        "receive_data_chunk",
        lambda self, raw, start: written.append(len(raw)) or original(self, raw, start),
    )
    big = SimpleUploadedFile("big.pdf", PDF_BYTES + b"0" * 5_000_000, content_type="application/pdf")
    response = api.post(URL, {**payload(common_type="PROMO"), "file1": big}, format="multipart")
    assert response.status_code == 400, response.content
    assert response.json() == {"file1": ["big.pdf is more than 100000 bytes; a document may be at most 100000 bytes."]}
    assert sum(written) <= 100_000  # ... but reading stopped at the limit
    assert nothing_stored()


def test_a_document_missing_from_storage_is_a_404_not_a_500(api, make_application):
    application = make_application(common_type="PROMO")
    document = application.documents.get()
    document.file.storage.delete(document.file.name)
    assert api.get(f"{URL}{application.pk}/documents/{document.pk}/").status_code == 404
