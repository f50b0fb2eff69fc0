"""Hostile input on the inbound endpoints: always a 4xx JSON naming the problem, never a 500, nothing stored.

These matter most on PostgreSQL (a NUL in text or jsonb, a value longer than its column or an integer
out of range are database errors there): run them with the integration DATABASE_URL too.
"""

import json
import urllib.parse

import pytest

from common.errors import error_text
from providers.models import Message, MessageState, MessageStatusChange
from tests.providers_messages.conftest import bizproc_fields, crm_fields, encode, make_message
from tests.providers_messages.test_delivery import callback, event, sent_message  # noqa: F401 (fixture)
from tests.providers_messages.test_handler import FORM, post


@pytest.fixture(autouse=True)
def no_send(monkeypatch):
    monkeypatch.setattr("providers.services.sending.sending_schedule", lambda: None)


def assert_refused(response, status, field=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert error_text(body)
    if field is not None:
        assert field in body
    assert not Message.objects.exists()
    assert not MessageStatusChange.objects.exists()


BAD_SECRETS = ["ab%00cd", "ab%01cd", "a%20b", "%C3%A9" * 3, "a" * 65, "a.b", "a%0Ab"]


@pytest.mark.parametrize("secret", BAD_SECRETS)
def test_handler_refuses_a_malformed_secret_before_any_query(
    client, installation, provider, secret, django_assert_max_num_queries
):
    with django_assert_max_num_queries(0):
        response = client.post(f"/b24/handler/{secret}/", data=encode(crm_fields()), content_type=FORM)
    assert_refused(response, 403)


@pytest.mark.parametrize("secret", BAD_SECRETS)
def test_callback_refuses_a_malformed_secret_before_any_query(
    client, installation, sent_message, secret, django_assert_max_num_queries
):
    with django_assert_max_num_queries(0):
        response = client.post(
            f"/idgtl/callback/{secret}/", data=json.dumps([event()]), content_type="application/json"
        )
    assert response.status_code == 403 and error_text(response.json())
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT


HANDLER_FIELDS = [
    "code",
    "message_id",
    "message_to",
    "message_body",
    "module_id",
    "type",
    "ts",
    "bindings[0][OWNER_ID]",
    "properties[message_text]",
    "auth[application_token]",
    "auth[member_id]",
    "auth[user_id]",
    "auth[domain]",
    "extra_header",
]


def _top(name):
    return name.split("[", 1)[0]


@pytest.mark.parametrize("name", HANDLER_FIELDS)
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f"])
def test_a_control_character_in_any_field_is_400_naming_it(client, installation, provider, name, char):
    fields = crm_fields(**{name: "ab" + char + "cd"})
    response = post(client, installation, encode(fields))
    assert_refused(response, 400, _top(name))


@pytest.mark.parametrize("name", ["workflow_id", "document_id[1]", "document_type[0]"])
def test_a_nul_in_bizproc_fields_is_400(client, installation, provider, name):
    response = post(client, installation, encode(bizproc_fields(**{name: "x\x00"})))
    assert_refused(response, 400, _top(name))


def test_a_nul_in_a_field_name_is_400(client, installation, provider):
    body = encode(crm_fields()) + b"&bindings[0][OWN%00ER]=1"
    assert_refused(post(client, installation, body), 400, "bindings")
    body = encode(crm_fields()) + b"&na%00me=1"
    assert_refused(post(client, installation, body), 400)


@pytest.mark.parametrize("name", ["code", "message_id", "message_to"])
def test_a_line_break_in_an_identifier_is_400(client, installation, provider, name):
    assert_refused(post(client, installation, encode(crm_fields(**{name: "ab\ncd"}))), 400, name)


def test_line_breaks_and_tabs_in_the_text_are_kept(client, installation, provider):
    response = post(client, installation, encode(crm_fields(message_body="line 1\r\nline\t2")))
    assert response.status_code == 200
    assert Message.objects.get().text == "line 1\r\nline\t2"


@pytest.mark.parametrize(
    "name,length", [("message_id", 129), ("message_to", 65), ("code", 129), ("module_id", 33), ("auth[user_id]", 33)]
)
def test_values_longer_than_their_column_are_400(client, installation, provider, name, length):
    response = post(client, installation, encode(crm_fields(**{name: "1" * length})))
    assert_refused(response, 400, name)


def test_workflow_id_longer_than_its_column_is_400(client, installation, provider):
    assert_refused(post(client, installation, encode(bizproc_fields(workflow_id="w" * 65))), 400, "workflow_id")


@pytest.mark.parametrize(
    "body",
    [
        b"code=provider1&message_id=1&message_to=%2B79990000001&message_body=\xff\xfe",  # raw non-UTF-8 bytes
        b"code=provider1&message_id=%C3&message_to=%2B79990000001&message_body=x",  # truncated UTF-8
        b"code=provider1&message_id=%ED%A0%80&message_to=%2B79990000001&message_body=x",  # encoded surrogate
    ],
)
def test_non_utf8_is_400(client, installation, provider, body):
    assert_refused(post(client, installation, body), 400)


@pytest.mark.parametrize(
    "content_type,body",
    [
        ("application/json", json.dumps(crm_fields())),
        ("application/json", b"[1, 2]"),
        ("text/plain", b"\x00\x00\x00"),
        ("text/plain", encode(crm_fields())),  # a valid form under another type
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="code"\r\n\r\np\r\n--xyz--',
        ),
        ("", encode(crm_fields())),  # no Content-Type at all
        ("application/x-www-form-urlencoded; charset=windows-1251", encode(crm_fields())),
    ],
)
def test_a_body_of_another_content_type_is_415(client, installation, provider, content_type, body):
    response = client.post(f"/b24/handler/{installation.handler_secret}/", data=body, content_type=content_type)
    assert_refused(response, 415)
    assert "application/x-www-form-urlencoded" in error_text(response.json()) or "UTF-8" in error_text(response.json())


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=UTF-8",
        "Application/X-WWW-Form-Urlencoded",
        "application/x-www-form-urlencoded;charset=utf-8",
    ],
)
def test_the_form_content_type_with_or_without_a_charset_is_accepted(client, installation, provider, content_type):
    response = client.post(
        f"/b24/handler/{installation.handler_secret}/", data=encode(crm_fields()), content_type=content_type
    )
    assert response.status_code == 200, response.content
    assert Message.objects.count() == 1


def test_a_body_over_the_upload_limit_is_413(client, settings, installation, provider):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert_refused(post(client, installation, encode(crm_fields(message_body="x" * 2000))), 413)


def test_a_field_given_twice_is_400(client, installation, provider):
    body = encode(crm_fields()) + b"&message_id=other"
    assert_refused(post(client, installation, body), 400, "message_id")


# --- bounds: what Bitrix24 sends is accepted, anything beyond is a 4xx naming the field -----------------
def test_a_body_over_the_handler_limit_is_413_before_it_is_read(client, installation, provider):
    from providers.handler_form import handler_body_max_bytes

    limit = handler_body_max_bytes()
    assert limit == 51128  # the default MESSAGES_MAX_PARTS = 10: 2 × 1530 × 6 bytes + 32 KiB (README)
    body = encode(crm_fields(extra_header="x" * limit))
    response = post(client, installation, body)
    assert_refused(response, 413)
    assert str(limit) in error_text(response.json())


@pytest.mark.parametrize("text", ["é" * 1530, "中" * 670, "€" * 760, "😀" * 330])
def test_the_longest_text_at_its_worst_encoding_fits_the_body_limit(client, installation, provider, text):
    """10 parts of the characters that take the most bytes percent-encoded, in message_body and again in
    properties[message_text], as Bitrix24 sends them."""
    body = encode(crm_fields(message_body=text, **{"properties[message_text]": text}))
    response = post(client, installation, body)
    assert response.status_code == 200, response.content
    assert Message.objects.get().parts == 10


@pytest.mark.parametrize("module_id", ["NaN", "{}", "CRM", "crm module", "1crm", "crm;drop", "-", "crm\u00e9"])
def test_a_module_id_that_is_not_a_module_name_is_400(client, installation, provider, module_id):
    response = post(client, installation, encode(crm_fields(module_id=module_id)))
    assert_refused(response, 400, "module_id")


@pytest.mark.parametrize("module_id", ["crm", "bizproc", "vendor.sms_module", "m" * 32])
def test_module_names_are_accepted(client, installation, provider, module_id):
    response = post(client, installation, encode(crm_fields(module_id=module_id)))
    assert response.status_code == 200, response.content
    assert Message.objects.get().module_id == module_id


@pytest.mark.parametrize("ts", ["1e9", " 1742895600", "+1742895600", "1_742_895_600", "\u0661\u0662\u0663", "1" * 13])
def test_a_ts_that_is_not_unix_seconds_is_400(client, installation, provider, ts):
    assert_refused(post(client, installation, encode(crm_fields(ts=ts))), 400, "ts")


def test_a_type_longer_than_bitrix24_allows_is_400(client, installation, provider):
    assert_refused(post(client, installation, encode(crm_fields(type="S" * 31))), 400, "type")


def _bindings(count, **extra):
    fields = {}
    for i in range(count):
        fields[f"bindings[{i}][OWNER_TYPE_ID]"] = "3"
        fields[f"bindings[{i}][OWNER_ID]"] = str(100 + i)
    return {**fields, **extra}


def test_fifty_bindings_are_accepted_and_more_are_400(client, installation, provider):
    response = post(client, installation, encode(crm_fields(**_bindings(50))))
    assert response.status_code == 200, response.content
    assert len(Message.objects.get().bindings) == 50
    Message.objects.all().delete()
    MessageStatusChange.objects.all().delete()
    response = post(client, installation, encode(crm_fields(message_id="2", **_bindings(51))))
    assert_refused(response, 400, "bindings")


@pytest.mark.parametrize(
    "extra",
    [
        {"bindings[0][OWNER_ID]": "1" * 129},  # a value beyond JSON_STRING_MAX_LENGTH
        {"bindings[0][" + "K" * 129 + "]": "1"},  # a key beyond it
        {f"bindings[0][K{i}]": "1" for i in range(8)},  # more than BINDING_KEYS_MAX keys (with the two given)
        {"bindings[0][OWNER_ID][x]": "1"},  # nested deeper than a binding
    ],
)
def test_oversized_bindings_are_400(client, installation, provider, extra):
    response = post(client, installation, encode(crm_fields(**extra)))
    assert response.status_code == 400, response.content
    assert "bindings" in response.json()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "name,extra",
    [
        ("document_id", {"document_id[3]": "x"}),
        ("document_id", {"document_id[2]": "L" * 129}),
        ("document_type", {"document_type[3]": "x"}),
        ("document_type", {"document_type[1]": "C" * 129}),
    ],
)
def test_oversized_document_ids_are_400(client, installation, provider, name, extra):
    assert_refused(post(client, installation, encode(bizproc_fields(**extra))), 400, name)


def test_a_body_of_more_than_300_fields_is_400(client, installation, provider):
    fields = crm_fields(**{f"x{i}": "1" for i in range(300)})
    response = post(client, installation, encode(fields))
    assert_refused(response, 400)
    assert "300" in error_text(response.json())


def test_the_parser_limits_are_the_columns_widths():
    """A value the parser lets through fits its column on PostgreSQL (where a longer one is an error, or is
    cut by the HANDLER's one statement)."""
    from providers import handler_form

    width = {f.name: f.max_length for f in Message._meta.concrete_fields if getattr(f, "max_length", None)}
    assert handler_form.MESSAGE_ID_MAX_LENGTH == width["message_id"]
    assert handler_form.MESSAGE_TO_MAX_LENGTH == width["message_to"]
    assert handler_form.MODULE_ID_MAX_LENGTH == width["module_id"]
    assert handler_form.WORKFLOW_ID_MAX_LENGTH == width["workflow_id"]
    assert handler_form.AUTH_USER_ID_MAX_LENGTH == width["author_user_id"]


EXACT_LIMITS = {"message_id": "i" * 128, "message_to": "7" * 64, "module_id": "m" * 32, "auth[user_id]": "9" * 32}
OVER_LIMITS = [
    ("message_id", "i" * 129),
    ("message_to", "7" * 65),
    ("module_id", "m" * 33),
    ("auth[user_id]", "9" * 33),
    ("code", "c" * 129),
    ("type", "S" * 31),
]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name,value", OVER_LIMITS)
def test_on_postgresql_a_value_over_its_column_is_400_not_a_500(installation, provider, name, value):
    """On PostgreSQL through the HANDLER's one statement (which would cut a longer value to its column)."""
    from django.db import connection
    from django.test import Client

    assert connection.vendor == "postgresql"
    assert_refused(post(Client(), installation, encode(crm_fields(**{name: value}))), 400, name)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_values_at_their_column_width_are_stored_whole(installation, provider):
    from django.db import connection
    from django.test import Client

    assert connection.vendor == "postgresql"
    response = post(Client(), installation, encode(bizproc_fields(workflow_id="w" * 64, **EXACT_LIMITS)))
    assert response.status_code == 200, response.content
    message = Message.objects.get()
    assert (message.message_id, message.message_to, message.module_id, message.author_user_id, message.workflow_id) == (
        "i" * 128,
        "7" * 64,
        "m" * 32,
        "9" * 32,
        "w" * 64,
    )


# --- a test SMS is checked as the HANDLER checks it, before anything is posted -------------------------
@pytest.fixture
def nothing_posted(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the test SMS was posted although its input is invalid")

    monkeypatch.setattr("providers.services.test_sms.requests.post", refuse)


@pytest.mark.parametrize(
    "phone,text,field",
    [
        ("+7900\u000c1234567", "Hi", "phone"),  # issue 10: was a 502 "the handler answered HTTP 400"
        ("+7900\x001234567", "Hi", "phone"),
        ("+7900\n1234567", "Hi", "phone"),
        ("+7 900", "Hi", "phone"),  # not a phone number: the send would fail
        ("hello", "Hi", "phone"),
        ("+79001234567", "Hi\x00there", "text"),
        ("+79001234567", "Hi\x1bthere", "text"),
        ("+79001234567", "Ж" * 671, "text"),  # 11 SMS parts: the HANDLER refuses it
    ],
)
def test_a_test_sms_the_handler_would_refuse_is_400_from_the_api(
    api_client, installation, provider, nothing_posted, phone, text, field
):
    response = api_client.post(f"/api/providers/{provider.pk}/test-sms/", {"phone": phone, "text": text}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field] and response.json()[field][0]
    assert not Message.objects.exists() and not MessageStatusChange.objects.exists()


def test_a_test_sms_with_a_control_character_is_a_form_error_in_the_admin(
    client, staff_user, installation, provider, nothing_posted
):
    client.force_login(staff_user)
    page = client.post(
        "/admin/providers/provider/",
        {
            "action": "send_test_sms",
            "_selected_action": [provider.pk],
            "send": "1",
            "phone": "+7900\u000c1234567",
            "text": "Hi",
            "installation": installation.pk,
        },
    )
    assert page.status_code == 200
    assert "The phone number contains a control character." in page.content.decode()
    assert not Message.objects.exists()


# --- i-dgtl callback ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body,field",
    [
        ([event(uuid="063474ec\x00-0001")], "[0].message_uuid"),
        ([event(uuid="\ud800")], "[0].message_uuid"),  # a lone surrogate cannot be encoded for the database
        ([event(uuid="é")], "[0].message_uuid"),
        ([event(uuid="u" * 65)], "[0].message_uuid"),
        ([event(uuid=["063474ec-0001"])], "[0].message_uuid"),
        ([event(status="deli\x00vered")], "[0].status"),
        ([event(status="s" * 33)], "[0].status"),
        ([event(), event(status=None)], "[1].status"),
        ([event(callback_event=None)], "[0].callback_event"),
        ([event(), "delivered"], "[1]"),
        ([[event()]], "[0]"),
    ],
)
def test_malformed_callback_events_are_400_naming_the_event(client, installation, sent_message, body, field):
    response = callback(client, installation, body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT  # the valid first event is not applied either


@pytest.mark.parametrize("body", [b"[" * 100000, b"null", b"123", b'{"items": []}', b"", b'["\x00"]'])
def test_callback_bodies_that_are_not_arrays_of_events_are_400(client, installation, sent_message, body):
    response = callback(client, installation, body)
    assert response.status_code == 400 and error_text(response.json())


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_callback_with_another_content_type_is_judged_by_its_body(client, installation, sent_message, content_type):
    response = client.post(
        f"/idgtl/callback/{installation.callback_secret}/",
        data=urllib.parse.urlencode({"a": "b"}),
        content_type=content_type,
    )
    assert response.status_code == 400


def test_out_of_range_error_code_and_odd_times_are_ignored_not_stored(client, installation, provider):
    message = make_message(installation, provider, 7, state=MessageState.SENT, idgtl_message_uuid="u-7")
    body = [event(uuid="u-7", status="undelivered", error_code=10**20, status_time="0001-01-01T00:00:00+14:00")]
    response = callback(client, installation, body)
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.state == MessageState.UNDELIVERED
    assert message.error_code is None
    assert message.idgtl_status_at is not None
