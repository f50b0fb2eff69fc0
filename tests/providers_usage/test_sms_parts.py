"""SMS parts: GSM-7 (the extension table counts two), UCS-2 (emoji count two), the 160/153 and 70/67
boundaries, and the HANDLER's limit (a longer text is a 400 and nothing is stored)."""

import pytest

from common.errors import error_text
from providers.handler_form import HandlerFormError, handler_form_parse
from providers.models import Message
from providers.sms_parts import GSM7, UCS2, sms_max_units, sms_parts
from tests.providers_usage.conftest import crm_fields, encode

FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    "text, encoding, units, parts",
    [
        ("Your code: 1234", GSM7, 15, 1),
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),
        ("a" * 306, GSM7, 306, 2),  # 2 × 153
        ("a" * 307, GSM7, 307, 3),
        ("a" * 1530, GSM7, 1530, 10),
        (
            "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà\r\n",
            GSM7,
            64,
            1,
        ),  # symbols of the default alphabet
        ("я" * 70, UCS2, 70, 1),
        ("я" * 71, UCS2, 71, 2),
        ("я" * 134, UCS2, 134, 2),  # 2 × 67
        ("я" * 135, UCS2, 135, 3),
        ("Ваш код: 1234", UCS2, 13, 1),
        ("tab\tmakes it UCS-2", UCS2, 18, 1),
        ("`grave accent`", UCS2, 14, 1),  # not in GSM 03.38
    ],
)
def test_encoding_units_and_parts(text, encoding, units, parts):
    assert sms_parts(text) == (sms_parts(text).__class__(encoding, units, parts))


@pytest.mark.parametrize("character", list("{}[]~\\|^€"))
def test_extension_characters_count_as_two(character):
    assert sms_parts(character) == sms_parts("ab").__class__(GSM7, 2, 1)
    assert sms_parts(character * 80).parts == 1  # 160 septets
    assert sms_parts(character * 81).parts == 2  # 162


def test_an_escape_sequence_is_never_split_between_parts():
    # 152 + € (2) does not fit 153: the euro sign starts part 2, which then overflows into a third.
    text = "a" * 152 + "€" + "a" * 152
    assert sms_parts(text).units == 306
    assert sms_parts(text).parts == 3
    assert sms_parts("a" * 151 + "€" + "a" * 153).parts == 2  # the pair fits at the end of part 1


def test_emoji_are_two_units_and_never_split():
    assert sms_parts("😀" * 35) == sms_parts("x").__class__(UCS2, 70, 1)
    assert sms_parts("😀" * 36).parts == 2
    assert sms_parts("Привет 😀").units == 9
    text = "я" * 66 + "😀" + "я" * 66  # 134 units, but the pair cannot close part 1
    assert sms_parts(text).units == 134
    assert sms_parts(text).parts == 3


def test_max_units_of_the_limit():
    assert sms_max_units(GSM7, 10) == 1530
    assert sms_max_units(UCS2, 10) == 670
    assert sms_max_units(GSM7, 1) == 160


def test_the_form_parser_counts_once_and_refuses_more_than_the_limit(settings):
    form = handler_form_parse(encode(crm_fields(message_body="Привет!")))
    assert (form.encoding, form.parts) == (UCS2, 1)
    assert handler_form_parse(encode(crm_fields(message_body="я" * 670))).parts == 10
    with pytest.raises(HandlerFormError) as refused:
        handler_form_parse(encode(crm_fields(message_body="я" * 671)))
    assert refused.value.field == "message_body"
    assert "11" in str(refused.value.message) and "670" in str(refused.value.message)
    settings.MESSAGES_MAX_PARTS = 2
    assert handler_form_parse(encode(crm_fields(message_body="a" * 306))).parts == 2
    with pytest.raises(HandlerFormError):
        handler_form_parse(encode(crm_fields(message_body="a" * 307)))


def test_handler_stores_encoding_and_parts(client, installation, provider, no_send):
    body = encode(crm_fields(message_body="a" * 161))
    response = client.post(f"/b24/handler/{installation.handler_secret}/", data=body, content_type=FORM)
    assert response.status_code == 200
    message = Message.objects.get()
    assert (message.encoding, message.parts) == (GSM7, 2)


def test_handler_refuses_a_text_over_the_limit_and_stores_nothing(client, installation, provider, no_send):
    body = encode(crm_fields(message_body="€" * 766))  # 1532 septets: 11 parts
    response = client.post(f"/b24/handler/{installation.handler_secret}/", data=body, content_type=FORM)
    assert response.status_code == 400
    assert "message_body" in response.json()
    assert "1530" in error_text(response.json())
    assert not Message.objects.exists()


def test_a_message_stored_another_way_gets_its_parts_on_save(installation, provider):
    from tests.providers_usage.conftest import make_message

    message = make_message(installation, provider, text="Ё" * 71)
    message.refresh_from_db()
    assert (message.encoding, message.parts) == (UCS2, 2)
