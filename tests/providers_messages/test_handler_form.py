import pytest

from providers.handler_form import HandlerFormError, handler_form_parse
from tests.providers_messages.conftest import APPLICATION_TOKEN, bizproc_fields, crm_fields, encode, without_auth


@pytest.mark.parametrize("raw_brackets", [False, True])
def test_crm_message_with_auth(raw_brackets):
    form = handler_form_parse(encode(crm_fields(), raw_brackets=raw_brackets))
    assert form.module_id == "crm"
    assert form.code == "provider1"
    assert form.message_id == "65575980fa531ac284c2ee68f81ebebd"
    assert form.message_to == "+7 999 000-00-01"
    assert form.message_body == "Your code: 1234"
    assert form.bindings == [{"OWNER_TYPE_ID": "3", "OWNER_ID": "123"}]
    assert form.workflow_id == "" and form.document_id == []
    assert form.auth.application_token == APPLICATION_TOKEN
    assert form.auth.user_id == "1"
    assert form.ts.year == 2025


def test_bizproc_message_without_auth():
    form = handler_form_parse(encode(without_auth(bizproc_fields())))
    assert form.module_id == "bizproc"
    assert form.auth is None
    assert form.bindings == []
    assert form.workflow_id == "59ce38567ff2a5.26351167"
    assert form.document_id == ["crm", "CCrmDocumentLead", "LEAD_98"]
    assert form.document_type == ["crm", "CCrmDocumentLead", "LEAD"]


def test_several_bindings_keep_their_order():
    fields = crm_fields(**{"bindings[1][OWNER_TYPE_ID]": "2", "bindings[1][OWNER_ID]": "7"})
    assert handler_form_parse(encode(fields)).bindings == [
        {"OWNER_TYPE_ID": "3", "OWNER_ID": "123"},
        {"OWNER_TYPE_ID": "2", "OWNER_ID": "7"},
    ]


def test_text_with_ampersands_plus_and_cyrillic_survives():
    form = handler_form_parse(encode(crm_fields(message_body="Код: 1+1 & всё")))
    assert form.message_body == "Код: 1+1 & всё"


def test_legacy_properties_stand_in_for_missing_fields():
    form = handler_form_parse(encode(crm_fields(message_to=None, message_body=None)))
    assert form.message_to == "+7 999 000-00-01"
    assert form.message_body == "Your code: 1234"


@pytest.mark.parametrize(
    "body, field",
    [
        (b"", ""),
        (encode(crm_fields(code=None)), "code"),
        (encode(crm_fields(message_id=None)), "message_id"),
        (encode(crm_fields(message_id="x" * 129)), "message_id"),
        (encode(crm_fields(**{"message_to": None, "properties[phone_number]": None})), "message_to"),
        (encode(crm_fields(**{"code": None, "code[0]": "a"})), "code"),
        (encode(crm_fields(ts="yesterday")), "ts"),
        (
            encode(crm_fields(**{"auth[application_token][x]": "1", "auth[application_token]": None})),
            "auth[application_token]",
        ),
        (b"message_body=%FF%FE&code=p&message_id=1&message_to=1", ""),
        (b"\xff\xfe\x00garbage", ""),
    ],
)
def test_malformed_bodies_name_the_problem(body, field):
    with pytest.raises(HandlerFormError) as error:
        handler_form_parse(body)
    assert error.value.field == field
    assert str(error.value)


@pytest.mark.parametrize("code", [*range(0x20), 0x7F])
@pytest.mark.parametrize("spelling", ["upper", "lower", "raw"])
def test_every_control_character_however_spelled_is_refused_but_tabs_and_breaks_in_the_text(code, spelling):
    escape = {"upper": f"%{code:02X}", "lower": f"%{code:02x}", "raw": chr(code)}[spelling]
    body = encode(crm_fields(message_body=None)) + f"&message_body=a{escape}b".encode()
    if chr(code) in "\t\n\r":
        assert handler_form_parse(body).message_body == f"a{chr(code)}b"
        with pytest.raises(HandlerFormError) as error:  # but never in an identifier
            handler_form_parse(encode(crm_fields(message_id=None)) + f"&message_id=a{escape}b".encode())
        assert error.value.field == "message_id"
    else:
        with pytest.raises(HandlerFormError) as error:
            handler_form_parse(body)
        assert error.value.field == "message_body"
