"""Uploads as an attacker sends them: a file that only starts like a document, and one too large to store.

A document is typed by its whole content (pypdf reads a PDF's trailer, cross-reference table and
pages; Pillow verifies a PNG and decodes a JPEG), not by its first bytes. The admin drops an
oversized file while it arrives, before it is written anywhere.
"""

import pytest
from django.core.exceptions import ValidationError
from django.core.files import uploadhandler
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from sendernames import validation
from sendernames.models import SenderNameApplication, SenderNameDocument
from tests.fixtures.documents import JPEG_BYTES, PDF_BYTES, PNG_BYTES, pdf_bytes
from tests.sendernames.conftest import application_fields

ADD = "admin:sendernames_sendernameapplication_add"
GARBAGE = bytes(range(256)) * 64

FORGED = {
    "PDF header, garbage body": ("contract.pdf", b"%PDF-1.7\n" + GARBAGE),
    "PDF header, HTML body": (
        "contract.pdf",
        b"%PDF-1.4\n<html><script>alert(document.cookie)</script></html>\n%%EOF\n",
    ),
    "PDF with its trailer cut off": ("contract.pdf", PDF_BYTES[: PDF_BYTES.index(b"trailer")]),
    "PNG signature, garbage chunks": ("logo.png", b"\x89PNG\r\n\x1a\n" + GARBAGE),
    "PNG with a corrupted chunk": ("logo.png", PNG_BYTES[:40] + bytes([PNG_BYTES[40] ^ 0xFF]) + PNG_BYTES[41:]),
    "JPEG signature, garbage body": ("scan.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + GARBAGE),
    "truncated JPEG": ("scan.jpg", JPEG_BYTES[: len(JPEG_BYTES) // 2]),
}


def add_form(**overrides):
    data = application_fields(**overrides)
    data["date_from"] = data["date_from"].isoformat()
    data["account"] = ""
    return data


def nothing_stored(settings) -> bool:
    media = settings.MEDIA_ROOT
    return (
        not SenderNameApplication.objects.exists()
        and not SenderNameDocument.objects.exists()
        and (not media.exists() or not any(p.is_file() for p in media.rglob("*")))
    )


@pytest.fixture
def admin_client(client, staff_user, account):
    client.force_login(staff_user)
    return client


@pytest.mark.parametrize("name, content", FORGED.values(), ids=FORGED.keys())
def test_a_file_that_only_starts_like_a_document_is_refused(name, content):
    with pytest.raises(ValidationError, match="damaged or not one"):
        validation.detect_document_type(SimpleUploadedFile(name, content))


@pytest.mark.parametrize(
    "content, mime",
    [
        (PDF_BYTES, "application/pdf"),
        (pdf_bytes(3), "application/pdf"),
        (PNG_BYTES, "image/png"),
        (JPEG_BYTES, "image/jpeg"),
    ],
)
def test_real_documents_pass_and_the_file_is_left_at_its_start(content, mime):
    upload = SimpleUploadedFile("document", content)
    assert validation.detect_document_type(upload) == mime
    assert upload.tell() == 0 and upload.read() == content


def test_an_image_bomb_is_refused(settings):
    from PIL import Image

    from tests.fixtures.documents import image_bytes

    big = image_bytes("PNG", size=(2000, 2000))  # 4 Mpx, a few KB compressed
    original = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1_000_000
    try:
        with pytest.raises(ValidationError, match="damaged or not one"):
            validation.detect_document_type(SimpleUploadedFile("bomb.png", big))
    finally:
        Image.MAX_IMAGE_PIXELS = original


def test_a_forged_pdf_is_refused_by_the_admin_and_the_api(admin_client, api_client, settings):
    forged = b"%PDF-1.7\n" + GARBAGE
    response = admin_client.post(
        reverse(ADD), {**add_form(common_type="PROMO"), "new_documents": [SimpleUploadedFile("contract.pdf", forged)]}
    )
    assert response.status_code == 200
    assert "contract.pdf starts like a PDF file but is damaged" in str(response.context["adminform"].form.errors)
    data = {**application_fields(common_type="PROMO"), "file1": SimpleUploadedFile("contract.pdf", forged)}
    data["date_from"] = str(data["date_from"])
    response = api_client.post("/api/sender-names/", data, format="multipart")
    assert response.status_code == 400 and "damaged" in response.json()["file1"][0]
    assert nothing_stored(settings)


@pytest.fixture
def stored_bytes(monkeypatch):
    """Bytes Django's own upload handlers kept (held in memory, or written to a temporary file)."""
    received = {"bytes": 0}
    for handler in (uploadhandler.MemoryFileUploadHandler, uploadhandler.TemporaryFileUploadHandler):
        original = handler.receive_data_chunk

        def counting(self, raw_data, start, _original=original):
            if getattr(self, "activated", True):  # the memory handler passes chunks on when not activated
                received["bytes"] += len(raw_data)
            return _original(self, raw_data, start)

        monkeypatch.setattr(handler, "receive_data_chunk", counting)
    return received


def test_an_oversized_upload_is_dropped_as_it_arrives_not_stored_then_refused(admin_client, settings, stored_bytes):
    settings.SENDER_NAME_MAX_DOCUMENT_SIZE = 100_000
    huge = SimpleUploadedFile("huge.pdf", PDF_BYTES + b"%" * 5_000_000)  # 5 MB
    response = admin_client.post(
        reverse(ADD),
        {**add_form(common_type="PROMO"), "new_documents": [huge, SimpleUploadedFile("ok.pdf", PDF_BYTES)]},
    )
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors["new_documents"])
    assert "huge.pdf is more than 100000 bytes; a document may be at most 100000 bytes." in errors
    # Django's handlers saw at most the chunks before the limit (64 KiB each) of the huge file, plus ok.pdf.
    assert stored_bytes["bytes"] <= 100_000 + len(PDF_BYTES)
    assert nothing_stored(settings)
    # The fields after the dropped file still arrived: the form names only the document.
    assert set(response.context["adminform"].form.errors) == {"new_documents"}


def test_documents_within_the_limit_are_still_accepted(admin_client, settings):
    settings.SENDER_NAME_MAX_DOCUMENT_SIZE = 100_000
    response = admin_client.post(
        reverse(ADD), {**add_form(common_type="PROMO"), "new_documents": [SimpleUploadedFile("ok.pdf", PDF_BYTES)]}
    )
    assert response.status_code == 302
    assert SenderNameApplication.objects.get().documents.count() == 1


def test_the_guarded_admin_views_still_check_csrf(staff_user, account):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    url = reverse(ADD)
    data = {**add_form(common_type="PROMO"), "new_documents": [SimpleUploadedFile("ok.pdf", PDF_BYTES)]}
    assert client.post(url, data).status_code == 403
    client.get(url)
    data["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value
    data["new_documents"] = [SimpleUploadedFile("ok.pdf", PDF_BYTES)]
    assert client.post(url, data).status_code == 302
    application = SenderNameApplication.objects.get()
    change = reverse("admin:sendernames_sendernameapplication_change", args=[application.pk])
    assert (
        client.post(change, {**add_form(common_type="PROMO", sender_name="Other")}, HTTP_X_CSRFTOKEN="").status_code
        == 403
    )


def test_a_request_with_more_file_parts_than_any_application_needs_is_refused_unread(admin_client, settings):
    assert settings.DATA_UPLOAD_MAX_NUMBER_FILES == max(20, 2 * settings.SENDER_NAME_MAX_DOCUMENTS)
    files = [SimpleUploadedFile(f"{n}.pdf", PDF_BYTES) for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)]
    response = admin_client.post(reverse(ADD), {**add_form(common_type="PROMO"), "new_documents": files})
    assert response.status_code == 400
    assert nothing_stored(settings)
