"""Every validation rule, as the admin form, the API and the services see it."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from sendernames import validation
from sendernames.validation import MOSCOW
from tests.sendernames.conftest import (
    JPEG_BYTES,
    VALID_INN,
    VALID_INN_12,
    ZIP_BYTES,
    application_fields,
    jpeg,
    pdf,
    png,
)


def messages(exc_info):
    return " ".join(exc_info.value.messages)


@pytest.mark.parametrize("name", ["abc", "MyShop", "A.B*C+D-E", "Shop 24", "ABCDEFGHIJK", "a_b^c"])
def test_sender_names_allowed_for_mts(name):
    assert validation.validate_sender_name(name, "MTS") == name


@pytest.mark.parametrize("name", ["Ab", "ABCDEFGHIJKL", ""])
def test_sender_name_length_is_3_to_11(name):
    with pytest.raises(ValidationError, match="3 to 11 characters"):
        validation.validate_sender_name(name, "MTS")


@pytest.mark.parametrize("name", ["Магазин", "Shop@home", "Shop#1"])
def test_sender_name_outside_the_alphabet_is_refused(name):
    with pytest.raises(ValidationError, match="may contain only"):
        validation.validate_sender_name(name, "MTS")


@pytest.mark.parametrize("brand", ["MEGAFON", "YOTA"])
def test_megafon_pattern_differs(brand):
    assert validation.validate_sender_name("Shop!", brand) == "Shop!"
    for name in ["Shop 24", "Shop+1"]:  # space and + are allowed for others, not for MegaFon
        with pytest.raises(ValidationError, match="may contain only"):
            validation.validate_sender_name(name, brand)
    with pytest.raises(ValidationError):
        validation.validate_sender_name("Shop!", "MTS")  # ! is MegaFon's only


def test_date_from_tomorrow_is_normalised_to_the_start_of_the_moscow_day():
    now = dt.datetime(2030, 3, 10, 20, 30, tzinfo=dt.UTC)  # 23:30 in Moscow, 10 March
    start = validation.normalise_date_from("2030-03-11T15:45:00+03:00", now=now)
    assert start == dt.datetime(2030, 3, 11, tzinfo=MOSCOW)
    assert start.tzinfo is not None
    assert validation.date_from_for_idgtl(start) == "2030-03-10T21:00:00Z"


def test_date_from_uses_moscow_day_boundaries():
    now = dt.datetime(2030, 3, 10, 21, 30, tzinfo=dt.UTC)  # already 11 March 00:30 in Moscow
    with pytest.raises(ValidationError, match="2030-03-12 or later"):
        validation.normalise_date_from(dt.date(2030, 3, 11), now=now)
    assert validation.normalise_date_from(dt.date(2030, 3, 12), now=now) == dt.datetime(2030, 3, 12, tzinfo=MOSCOW)


@pytest.mark.parametrize("value", [dt.date(2030, 3, 10), "2030-03-09", "2030-03-10T12:00:00Z"])
def test_date_from_today_or_earlier_is_refused(value):
    now = dt.datetime(2030, 3, 10, 9, 0, tzinfo=dt.UTC)
    with pytest.raises(ValidationError, match="no earlier than the next day"):
        validation.normalise_date_from(value, now=now)


@pytest.mark.parametrize("value", ["tomorrow", "2030-13-40", "", None])
def test_date_from_garbage_is_refused(value):
    with pytest.raises(ValidationError):
        validation.normalise_date_from(value)


def test_naive_datetime_is_read_as_moscow_time():
    now = dt.datetime(2030, 3, 10, 9, 0, tzinfo=dt.UTC)
    assert validation.normalise_date_from(dt.datetime(2030, 3, 12, 1, 0), now=now) == dt.datetime(
        2030, 3, 12, tzinfo=MOSCOW
    )


@pytest.mark.parametrize("inn", [VALID_INN, VALID_INN_12])
def test_valid_inns(inn):
    assert validation.validate_inn(inn) == inn


@pytest.mark.parametrize(
    "inn, text",
    [
        ("123451729124", "check digits"),  # the seed's placeholder fails them
        ("7707083894", "check digits"),
        ("77070838", "10 digits"),
        ("77070838931", "10 digits"),
        ("77O7083893", "digits only"),
        ("", "digits only"),
    ],
)
def test_invalid_inns(inn, text):
    with pytest.raises(ValidationError) as exc_info:
        validation.validate_inn(inn)
    assert text in messages(exc_info)


@pytest.mark.parametrize("upload, mime", [(pdf, "application/pdf"), (png, "image/png"), (jpeg, "image/jpeg")])
def test_documents_are_judged_by_content(upload, mime):
    assert validation.detect_document_type(upload()) == mime


def test_a_misnamed_document_is_judged_by_content():
    assert validation.detect_document_type(SimpleUploadedFile("photo.pdf", JPEG_BYTES)) == "image/jpeg"
    with pytest.raises(ValidationError, match="not a PDF, PNG or JPEG"):
        validation.detect_document_type(SimpleUploadedFile("contract.pdf", ZIP_BYTES))
    with pytest.raises(ValidationError, match="not a PDF, PNG or JPEG"):
        validation.detect_document_type(SimpleUploadedFile("notes.pdf", b"just text, not a pdf"))


def test_empty_document_is_refused():
    with pytest.raises(ValidationError, match="empty"):
        validation.detect_document_type(SimpleUploadedFile("empty.pdf", b""))


def test_document_size_limit_comes_from_settings(settings):
    settings.SENDER_NAME_MAX_DOCUMENT_SIZE = 20
    with pytest.raises(ValidationError, match="at most 20 bytes"):
        validation.detect_document_type(pdf())


def test_document_count_limit_comes_from_settings(settings):
    settings.SENDER_NAME_MAX_DOCUMENTS = 2
    assert validation.validate_documents([pdf(), png()]) == ["application/pdf", "image/png"]
    with pytest.raises(ValidationError, match="At most 2 documents"):
        validation.validate_documents([pdf(), png(), jpeg()])


def test_promo_needs_a_document():
    validation.validate_documents_required("SERVICE", 0)
    validation.validate_documents_required("PROMO", 1)
    with pytest.raises(ValidationError, match="at least one document"):
        validation.validate_documents_required("PROMO", 0)


@pytest.mark.django_db
def test_application_validate_names_every_bad_field(account):
    fields = application_fields(
        common_type="PROMO",
        brand="NEW_BRAND",
        date_from="2000-01-01",
        counteragent_inn="123",
        counteragent_name=" ",
        channel_type="VIBER",
    )
    with pytest.raises(ValidationError) as exc_info:
        validation.application_validate(account_id=account.pk, document_count=0, **fields)
    errors = exc_info.value.message_dict
    assert set(errors) == {"brand", "date_from", "counteragent_inn", "counteragent_name", "documents", "channel_type"}
    assert "NEW_BRAND" in errors["brand"][0]


@pytest.mark.django_db
def test_duplicate_of_a_live_application_points_to_it(account, make_application):
    existing = make_application(sender_name="MyShop")
    fields = application_fields(sender_name="myshop")
    with pytest.raises(ValidationError) as exc_info:
        validation.application_validate(account_id=account.pk, document_count=0, **fields)
    assert f"application #{existing.pk}" in exc_info.value.message_dict["sender_name"][0]
    # Another operator or a rejected/canceled application is no duplicate.
    validation.application_validate(
        account_id=account.pk, document_count=0, **application_fields(sender_name="MyShop", brand="BEELINE")
    )
    for status in ("REJECTED", "CANCELED"):
        existing.status = status
        existing.save()
        validation.application_validate(account_id=account.pk, document_count=0, **fields)
