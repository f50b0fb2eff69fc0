"""One error body for every endpoint b24sms serves (common/errors.py, the API's ``Error`` schema component):
``{"detail": "message"}`` or ``{"<field>": ["message", ...]}`` — the HANDLER, the i-dgtl callback, the
install and event endpoints and the REST API alike."""

import pytest

from tests.providers_messages.conftest import crm_fields, encode
from tests.providers_messages.test_handler import post

FORM = "application/x-www-form-urlencoded"


def assert_error_shape(response, status):
    assert response.status_code == status, response.content
    body = response.json()
    assert isinstance(body, dict) and body, body
    if "detail" in body:
        assert set(body) == {"detail"} and isinstance(body["detail"], str) and body["detail"], body
    else:
        for field, messages in body.items():
            assert isinstance(field, str) and field, body
            assert isinstance(messages, list) and messages and all(isinstance(m, str) and m for m in messages), body
    return body


@pytest.fixture(autouse=True)
def no_send(monkeypatch):
    monkeypatch.setattr("providers.services.sending.sending_schedule", lambda: None)


@pytest.mark.django_db
def test_every_inbound_endpoint_and_the_api_answer_errors_in_one_shape(client, installation, provider, admin_client):
    # HANDLER: a field, a wrong secret, another content type, an unknown provider code
    assert "message_id" in assert_error_shape(post(client, installation, encode(crm_fields(message_id=""))), 400)
    assert_error_shape(post(client, installation, encode(crm_fields()), secret="x" * 43), 403)
    assert_error_shape(
        client.post(f"/b24/handler/{installation.handler_secret}/", data="{}", content_type="application/json"), 415
    )
    assert_error_shape(post(client, installation, encode(crm_fields(code="nope"))), 404)
    # i-dgtl callback: not JSON, an event's field, a wrong secret
    url = f"/idgtl/callback/{installation.callback_secret}/"
    assert_error_shape(client.post(url, data="not json", content_type="application/json"), 400)
    body = assert_error_shape(
        client.post(url, data='[{"callback_event": "delivered"}]', content_type="application/json"), 400
    )
    assert "[0].message_uuid" in body
    assert_error_shape(
        client.post("/idgtl/callback/" + "y" * 43 + "/", data="[]", content_type="application/json"), 403
    )
    # install and application events: a form that is not one, a wrong secret, a missing field
    assert_error_shape(client.post("/b24/install/", data=b"\xff\xfe", content_type=FORM), 400)
    event = "/b24/event/" + "z" * 43 + "/"
    assert "auth" in assert_error_shape(client.post(event, data="event=ONAPPUPDATE", content_type=FORM), 400)
    forged = "event=ONAPPUPDATE&auth[application_token]=forged&auth[member_id]=" + installation.member_id
    assert_error_shape(client.post(event, data=forged, content_type=FORM), 403)
    assert_error_shape(client.post("/b24/install/", data="event=ONAPPINSTALL", content_type=FORM), 400)
    # the REST API
    assert_error_shape(admin_client.get("/api/messages/?portal=99999999999999999999"), 400)
    assert_error_shape(admin_client.get("/api/portals/999999/"), 404)
