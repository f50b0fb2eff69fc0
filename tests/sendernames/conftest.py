"""Test data for sender-name applications."""

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from sendernames.validation import MOSCOW
from tests.fixtures.documents import JPEG_BYTES, PDF_BYTES, PNG_BYTES  # noqa: F401  (real, parseable files)

VALID_INN = "7707083893"  # a real INN with valid check digits (10 digits, legal entity)
VALID_INN_12 = "500100732259"  # 12 digits, individual entrepreneur

ZIP_BYTES = b"PK\x03\x04" + b"\x00" * 60


def pdf(name="charter.pdf"):
    return SimpleUploadedFile(name, PDF_BYTES, content_type="application/pdf")


def png(name="logo.png"):
    return SimpleUploadedFile(name, PNG_BYTES, content_type="image/png")


def jpeg(name="scan.jpg"):
    return SimpleUploadedFile(name, JPEG_BYTES, content_type="image/jpeg")


def tomorrow_moscow():
    return (timezone.localtime(timezone.now(), MOSCOW) + dt.timedelta(days=1)).date()


def application_fields(**overrides):
    fields = {
        "channel_type": "SMS",
        "common_type": "SERVICE",
        "brand": "MTS",
        "date_from": tomorrow_moscow() + dt.timedelta(days=2),
        "sender_name": "MyShop",
        "counteragent_name": "Shop, LLC",
        "counteragent_inn": VALID_INN,
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def account(db, settings):
    from idgtl.services import account_get_default

    account = account_get_default()
    account.sender_names_key = "c2VuZGVyOm5hbWVzLXNlY3JldC1rZXk="
    account.api_url = "http://127.0.0.1:9/api/v1"
    account.save()
    return account


@pytest.fixture
def make_application(account):
    from sendernames.services import application_create

    def make(documents=None, **overrides):
        fields = application_fields(**overrides)
        if documents is None:
            documents = [pdf()] if fields["common_type"] == "PROMO" else []
        return application_create(account=account, documents=documents, **fields)

    return make


def remote_record(application, *, remote_id=101, status="PRE_REVIEW", fee=2000, **extra):
    from sendernames.services.remote import application_remote_body

    return {"id": remote_id, **application_remote_body(application), "status": status, "fee": fee, **extra}
