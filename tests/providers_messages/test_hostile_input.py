"""Hostile input on the inbound endpoints: always a 4xx JSON naming the problem, never a 500, nothing stored.

These matter most on PostgreSQL (a NUL in text or jsonb, a value longer than its column or an integer
out of range are database errors there): run them with the integration DATABASE_URL too.
"""
import json
import urllib.parse

import pytest

from providers.models import Message, MessageState, MessageStatusChange

from .conftest import bizproc_fields, crm_fields, encode, make_message
from .test_delivery import callback, event, sent_message  # noqa: F401 (fixture)
from .test_handler import FORM, post


@pytest.fixture(autouse=True)
def no_send(monkeypatch):
    monkeypatch.setattr("providers.services.sending.sending_schedule", lambda: None)


def assert_refused(response, status, field=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]
    if field is not None:
        assert body["field"] == field
    assert not Message.objects.exists()
    assert not MessageStatusChange.objects.exists()


BAD_SECRETS = ["ab%00cd", "ab%01cd", "a%20b", "%C3%A9" * 3, "a" * 65, "a.b", "a%0Ab"]


@pytest.mark.parametrize("secret", BAD_SECRETS)
def test_handler_refuses_a_malformed_secret_before_any_query(client, installation, provider, secret,
                                                             django_assert_max_num_queries):
    with django_assert_max_num_queries(0):
        response = client.post(f"/b24/handler/{secret}/", data=encode(crm_fields()), content_type=FORM)
    assert_refused(response, 403)


@pytest.mark.parametrize("secret", BAD_SECRETS)
def test_callback_refuses_a_malformed_secret_before_any_query(client, installation, sent_message, secret,
                                                              django_assert_max_num_queries):
    with django_assert_max_num_queries(0):
        response = client.post(f"/idgtl/callback/{secret}/", data=json.dumps([event()]),
                               content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT


HANDLER_FIELDS = ["code", "message_id", "message_to", "message_body", "module_id", "type", "ts",
                  "bindings[0][OWNER_ID]", "properties[message_text]", "auth[application_token]",
                  "auth[member_id]", "auth[user_id]", "auth[domain]", "extra_header"]


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


@pytest.mark.parametrize("name,length", [("message_id", 129), ("message_to", 65), ("code", 129),
                                         ("module_id", 33), ("auth[user_id]", 33)])
def test_values_longer_than_their_column_are_400(client, installation, provider, name, length):
    response = post(client, installation, encode(crm_fields(**{name: "1" * length})))
    assert_refused(response, 400, name)


def test_workflow_id_longer_than_its_column_is_400(client, installation, provider):
    assert_refused(post(client, installation, encode(bizproc_fields(workflow_id="w" * 65))), 400, "workflow_id")


@pytest.mark.parametrize("body", [
    b"code=provider1&message_id=1&message_to=%2B79990000001&message_body=\xff\xfe",  # raw non-UTF-8 bytes
    b"code=provider1&message_id=%C3&message_to=%2B79990000001&message_body=x",  # truncated UTF-8
    b"code=provider1&message_id=%ED%A0%80&message_to=%2B79990000001&message_body=x",  # encoded surrogate
])
def test_non_utf8_is_400(client, installation, provider, body):
    assert_refused(post(client, installation, body), 400)


@pytest.mark.parametrize("content_type,body", [
    ("application/json", json.dumps(crm_fields())),
    ("application/json", b"[1, 2]"),
    ("text/plain", b"\x00\x00\x00"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\np\r\n--xyz--"),
])
def test_wrong_content_types_are_400(client, installation, provider, content_type, body):
    response = client.post(f"/b24/handler/{installation.handler_secret}/", data=body, content_type=content_type)
    assert_refused(response, 400)


def test_a_body_over_the_upload_limit_is_400(client, settings, installation, provider):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert_refused(post(client, installation, encode(crm_fields(message_body="x" * 2000))), 400)


def test_a_field_given_twice_is_400(client, installation, provider):
    body = encode(crm_fields()) + b"&message_id=other"
    assert_refused(post(client, installation, body), 400, "message_id")


# --- i-dgtl callback ---------------------------------------------------------------------------------
@pytest.mark.parametrize("body,field", [
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
])
def test_malformed_callback_events_are_400_naming_the_event(client, installation, sent_message, body, field):
    response = callback(client, installation, body)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    sent_message.refresh_from_db()
    assert sent_message.state == MessageState.SENT  # the valid first event is not applied either


@pytest.mark.parametrize("body", [b"[" * 100000, b"null", b"123", b'{"items": []}', b"", "[\"\x00\"]".encode()])
def test_callback_bodies_that_are_not_arrays_of_events_are_400(client, installation, sent_message, body):
    response = callback(client, installation, body)
    assert response.status_code == 400 and response.json()["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_callback_with_another_content_type_is_judged_by_its_body(client, installation, sent_message, content_type):
    response = client.post(f"/idgtl/callback/{installation.callback_secret}/",
                           data=urllib.parse.urlencode({"a": "b"}), content_type=content_type)
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
