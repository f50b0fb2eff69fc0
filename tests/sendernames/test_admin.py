"""The admin: filing with documents, actions that report per application, read-only once submitted."""

import datetime as dt
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from idgtl.client import IdgtlConfigurationError
from sendernames.models import SenderNameApplication, SenderNameDocument, SubmissionState
from tests.sendernames.conftest import PDF_BYTES, ZIP_BYTES, application_fields, pdf, png, remote_record

CHANGELIST = "admin:sendernames_sendernameapplication_changelist"


@pytest.fixture
def admin_client(client, staff_user, account):
    client.force_login(staff_user)
    return client


def add_form(**overrides):
    data = application_fields(**overrides)
    data["date_from"] = data["date_from"].isoformat()
    data.pop("account", None)
    data["account"] = ""
    return data


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_add_with_several_documents(admin_client):
    url = reverse("admin:sendernames_sendernameapplication_add")
    assert admin_client.get(url).status_code == 200
    data = {**add_form(common_type="PROMO"), "new_documents": [pdf("a.pdf"), png("b.png")]}
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    application = SenderNameApplication.objects.get()
    assert [d.original_name for d in application.documents.all()] == ["a.pdf", "b.png"]
    assert application.created_by is not None


def test_add_validates_documents_by_content_and_stores_nothing(admin_client):
    url = reverse("admin:sendernames_sendernameapplication_add")
    data = {**add_form(common_type="PROMO"), "new_documents": [SimpleUploadedFile("fake.pdf", ZIP_BYTES)]}
    response = admin_client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "not a PDF, PNG or JPEG" in str(errors["new_documents"])
    assert not SenderNameApplication.objects.exists() and not SenderNameDocument.objects.exists()


def test_add_form_shows_a_message_per_field(admin_client):
    url = reverse("admin:sendernames_sendernameapplication_add")
    data = add_form(
        sender_name="Имя", counteragent_inn="123451729124", common_type="PROMO", date_from=dt.date(2001, 1, 1)
    )
    errors = admin_client.post(url, data).context["adminform"].form.errors
    assert {"sender_name", "counteragent_inn", "date_from", "new_documents"} <= set(errors)
    assert "check digits" in str(errors["counteragent_inn"])


def test_draft_can_be_edited_and_gets_more_documents(admin_client, make_application):
    application = make_application(common_type="PROMO")
    url = reverse("admin:sendernames_sendernameapplication_change", args=[application.pk])
    data = {
        **add_form(common_type="PROMO", sender_name="NewName"),
        "new_documents": [png()],
        **{
            f"{prefix}-{key}": value
            for prefix in ("documents", "history")
            for key, value in {"TOTAL_FORMS": 0, "INITIAL_FORMS": 0}.items()
        },
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    application.refresh_from_db()
    assert application.sender_name == "NewName" and application.documents.count() == 2


def test_submitted_application_is_read_only(admin_client, make_application):
    application = make_application()
    SenderNameApplication.objects.filter(pk=application.pk).update(
        submission_state=SubmissionState.SUBMITTED, remote_id=3, status="REVIEW"
    )
    url = reverse("admin:sendernames_sendernameapplication_change", args=[application.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and b'name="sender_name"' not in page.content
    response = admin_client.post(url, add_form(sender_name="Changed"))
    assert response.status_code == 403
    application.refresh_from_db()
    assert application.sender_name == "MyShop"


def test_change_page_shows_documents_history_and_no_key(admin_client, make_application, account):
    application = make_application(common_type="PROMO")
    application.history.create(previous_status="", status="PRE_REVIEW", cause="submission")
    page = admin_client.get(
        reverse("admin:sendernames_sendernameapplication_change", args=[application.pk])
    ).content.decode()
    download = reverse("admin:sendernames_document_download", args=[application.pk, application.documents.get().pk])
    assert download in page and "charter.pdf" in page and "Pre-review" in page  # the status's label
    assert account.sender_names_key not in page
    response = admin_client.get(download)
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF_BYTES


def test_document_download_is_staff_only(client, make_application, django_user_model):
    application = make_application(common_type="PROMO")
    download = reverse("admin:sendernames_document_download", args=[application.pk, application.documents.get().pk])
    assert client.get(download).status_code == 302  # to the login page
    django_user_model.objects.create_user(username="plain", password="plain-pass-123")
    client.login(username="plain", password="plain-pass-123")
    assert client.get(download).status_code == 302


def test_changelist_colours_status_filters_and_search(admin_client, make_application):
    a = make_application(sender_name="Alpha", counteragent_name="Alpha LLC")
    b = make_application(sender_name="Beta")
    SenderNameApplication.objects.filter(pk=a.pk).update(status="APPROVED", submission_state="submitted", remote_id=1)
    SenderNameApplication.objects.filter(pk=b.pk).update(status="WEIRD_NEW", submission_state="submitted", remote_id=2)
    url = reverse(CHANGELIST)
    page = admin_client.get(url).content.decode()
    assert "#198754" in page and "WEIRD_NEW" in page and "#fd7e14" in page
    for query, names in [
        ({"status": "APPROVED"}, ["Alpha"]),
        ({"status": "WEIRD_NEW"}, ["Beta"]),
        ({"q": "Alpha LLC"}, ["Alpha"]),
        ({"q": "7707083893"}, ["Alpha", "Beta"]),
        ({"brand": "MTS", "common_type": "SERVICE"}, ["Alpha", "Beta"]),
        ({"submission_state": "submitted"}, ["Alpha", "Beta"]),
    ]:
        result = admin_client.get(url, query)
        assert sorted(o.sender_name for o in result.context["cl"].result_list) == names


def test_submit_action_reports_per_application(admin_client, make_application, django_capture_on_commit_callbacks):
    draft = make_application(sender_name="Draft")
    done = make_application(sender_name="Done")
    SenderNameApplication.objects.filter(pk=done.pk).update(submission_state="submitted", remote_id=8)
    stale = make_application(sender_name="Stale")
    SenderNameApplication.objects.filter(pk=stale.pk).update(date_from=dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
    with (
        mock.patch("sendernames.tasks.submit_application.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client.post(
            reverse(CHANGELIST),
            {"action": "submit_to_idgtl", "_selected_action": [draft.pk, done.pk, stale.pk]},
            follow=True,
        )
    text = messages_of(response)
    assert any("Draft" in m and "Queued" in m for m in text)
    assert any("Done" in m and "Already submitted (i-dgtl id 8)" in m for m in text)
    assert any("Stale" in m and "not submitted" in m and "next day" in m for m in text)
    delay.assert_called_once_with(draft.pk)


def test_refresh_action_reports_per_application(admin_client, make_application, monkeypatch):
    draft = make_application(sender_name="Draft")
    moved = make_application(sender_name="Moved")
    SenderNameApplication.objects.filter(pk=moved.pk).update(
        submission_state="submitted", remote_id=8, status="PRE_REVIEW"
    )
    broken = make_application(sender_name="Broken")
    SenderNameApplication.objects.filter(pk=broken.pk).update(
        submission_state="submitted", remote_id=9, status="PRE_REVIEW"
    )
    moved.refresh_from_db()

    class Client:
        def get_sender_name(self, remote_id):
            if remote_id == 9:
                raise IdgtlConfigurationError("Bad credentials", http_status=401, code=4012)
            return remote_record(moved, remote_id=8, status="APPROVED")

    monkeypatch.setattr("sendernames.services.remote.client_for", lambda account: Client())
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "refresh_status", "_selected_action": [draft.pk, moved.pk, broken.pk]},
        follow=True,
    )
    text = messages_of(response)
    assert any("Draft" in m and "not been submitted" in m for m in text)
    assert any("Moved" in m and "Pre-review → Approved" in m for m in text)
    assert any("Broken" in m and "configuration problem" in m for m in text)


def test_bulk_delete_refuses_submitted_applications(admin_client, make_application):
    draft = make_application(sender_name="Draft")
    sent = make_application(sender_name="Sent")
    SenderNameApplication.objects.filter(pk=sent.pk).update(submission_state="submitted", remote_id=8, status="REVIEW")
    for extra in ({}, {"post": "yes"}):  # the confirmation page, and the confirmed delete
        response = admin_client.post(
            reverse(CHANGELIST),
            {"action": "delete_selected", "_selected_action": [draft.pk, sent.pk], **extra},
            follow=True,
        )
        assert any("Nothing was deleted" in m and "Sent (MTS)" in m for m in messages_of(response))
    assert SenderNameApplication.objects.count() == 2


def test_deleting_drafts_removes_their_files(admin_client, make_application, django_capture_on_commit_callbacks):
    application = make_application(common_type="PROMO", documents=[pdf("a.pdf"), png("b.png")])
    paths = [document.file.path for document in application.documents.all()]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse(CHANGELIST),
            {"action": "delete_selected", "_selected_action": [application.pk], "post": "yes"},
            follow=True,
        )
    assert any("Successfully deleted 1" in m for m in messages_of(response))
    assert not SenderNameApplication.objects.exists() and not SenderNameDocument.objects.exists()
    assert not any(__import__("os").path.exists(path) for path in paths)


def test_changelist_queries_do_not_grow_with_rows(admin_client, make_application, django_assert_max_num_queries):
    for n in range(3):
        make_application(sender_name=f"Name{n}", common_type="PROMO")
    with django_assert_max_num_queries(12) as few:
        admin_client.get(reverse(CHANGELIST))
    for n in range(3, 30):
        make_application(sender_name=f"Name{n}", common_type="PROMO")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(reverse(CHANGELIST))
    assert response.context["cl"].result_count == 30


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"date_from": "31/01/2030"}, "date_from", "Enter a valid date"),
        ({"date_from": "9999-99-99"}, "date_from", "Enter a valid date"),
        ({"sender_name": "My\u2003Shop"}, "sender_name", "may contain only"),
        ({"sender_name": "x" * 5000}, "sender_name", "at most 11"),
        ({"counteragent_name": "x" * 5000}, "counteragent_name", "at most 255"),
        ({"counteragent_inn": "7" * 5000}, "counteragent_inn", "at most 12"),
        ({"brand": "NOKIA"}, "brand", "valid choice"),
        ({"common_type": ""}, "common_type", "required"),
        ({"account": "999999"}, "account", "valid choice"),
    ],
)
def test_add_form_odd_values_are_named_and_nothing_is_stored(admin_client, overrides, field, message):
    response = admin_client.post(reverse("admin:sendernames_sendernameapplication_add"), {**add_form(), **overrides})
    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])
    assert not SenderNameApplication.objects.exists()


@pytest.mark.parametrize(
    "files, message",
    [
        ([SimpleUploadedFile("empty.pdf", b"")], "The submitted file is empty"),
        ([SimpleUploadedFile("setup.pdf", b"MZ\x90\x00" + b"\x00" * 200)], "setup.pdf is not a PDF, PNG or JPEG"),
        ([pdf(f"{n}.pdf") for n in range(11)], "At most 10 documents"),
    ],
)
def test_add_form_bad_documents_store_nothing(admin_client, files, message, settings):
    response = admin_client.post(
        reverse("admin:sendernames_sendernameapplication_add"),
        {**add_form(common_type="PROMO"), "new_documents": files},
    )
    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors["new_documents"])
    assert not SenderNameApplication.objects.exists() and not SenderNameDocument.objects.exists()
    media = settings.MEDIA_ROOT
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_a_rule_broken_between_check_and_save_is_reported_not_a_500(admin_client, monkeypatch):
    from django.core.exceptions import ValidationError

    from sendernames import admin as sendernames_admin

    def create_after_someone_else(**kwargs):  # another operator filed the same name a moment earlier
        raise ValidationError({"sender_name": ["“MyShop” for MTS is already filed in application #7."]})

    monkeypatch.setattr(sendernames_admin, "application_create", create_after_someone_else)
    url = reverse("admin:sendernames_sendernameapplication_add")
    response = admin_client.post(url, {**add_form(common_type="PROMO"), "new_documents": [pdf()]}, follow=True)
    assert response.status_code == 200
    assert any("Nothing was saved" in m and "already filed in application #7" in m for m in messages_of(response))
    assert not SenderNameApplication.objects.exists() and not SenderNameDocument.objects.exists()


def test_a_submitted_application_cannot_be_deleted_from_its_page(admin_client, make_application):
    application = make_application()
    SenderNameApplication.objects.filter(pk=application.pk).update(
        submission_state=SubmissionState.SUBMITTING, remote_id=None
    )
    url = reverse("admin:sendernames_sendernameapplication_delete", args=[application.pk])
    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert SenderNameApplication.objects.filter(pk=application.pk).exists()
