"""idgtl.client: error mapping, retry rules, multipart, secrets kept out of logs and errors."""

import email.parser
import email.policy
import io
import json
import logging
import socket
from datetime import UTC
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from idgtl.client import (
    IdgtlClient,
    IdgtlConfigurationError,
    IdgtlError,
    IdgtlNotFound,
    IdgtlOutcomeUnknown,
    IdgtlTransientError,
    IdgtlValidationError,
)

KEY = "c2VjcmV0OmtleS12YWx1ZS05ODc2"  # base64-looking, as i-dgtl issues them


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def client(server, sleeps):
    c = IdgtlClient(server.url, KEY, max_retries=2)
    c._sleep = sleeps.append
    yield c
    c.close()


def envelope(code, msg):
    return json.dumps({"error": {"code": code, "msg": msg}})


def test_sends_basic_auth_with_the_key_unchanged(server, client):
    server.answer(200, '{"RUB": 10.5}')
    assert client.get_balance() == {"RUB": 10.5}
    method, path, headers, _ = server.received[0]
    assert (method, path) == ("GET", "/api/v1/balance")
    assert headers["Authorization"] == f"Basic {KEY}"


@pytest.mark.parametrize(
    "status, code, msg, error_cls",
    [
        (401, 4010, "Not Authenticated", IdgtlConfigurationError),
        (401, 4012, "Bad credentials", IdgtlConfigurationError),
        (403, 4030, "Access Denied", IdgtlConfigurationError),
        (422, 4220, "Duplicates with existing name (id = 1161)", IdgtlValidationError),
        (404, 4040, "Not Found", IdgtlNotFound),
        (400, 4000, "Bad Request", IdgtlError),
    ],
)
def test_error_envelope_maps_to_typed_errors_without_retry(server, client, sleeps, status, code, msg, error_cls):
    server.answer(status, envelope(code, msg))
    with pytest.raises(error_cls) as info:
        client.get_sender_name(5)
    assert type(info.value) is error_cls
    assert (info.value.http_status, info.value.code, info.value.message) == (status, code, msg)
    assert len(server.received) == 1 and sleeps == []


def test_validation_message_is_verbatim_on_post(server, client):
    server.answer(422, envelope(4220, "Unknown brand NEW_BRAND"))
    with pytest.raises(IdgtlValidationError) as info:
        client.create_sender_name({"brand": "NEW_BRAND"}, [])
    assert info.value.message == "Unknown brand NEW_BRAND"
    assert "Unknown brand NEW_BRAND" in str(info.value)


def test_non_json_error_body_is_tolerated(server, client):
    server.answer(403, "<html>Forbidden by proxy</html>", {"Content-Type": "text/html"})
    with pytest.raises(IdgtlConfigurationError) as info:
        client.get_balance()
    assert info.value.code is None and "Forbidden by proxy" in info.value.message


def test_get_retries_transient_errors_then_succeeds(server, client, sleeps):
    server.answer(500, "oops", {"Content-Type": "text/plain"})
    server.answer(502, "")
    server.answer(200, '{"total": 0, "items": []}')
    assert client.list_sender_names(status="REVIEW") == {"total": 0, "items": []}
    assert len(server.received) == 3
    # exponential backoff with jitter: attempt n waits backoff * 2**n * [0.5, 1.5)
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.3
    assert 0.5 * client.backoff <= sleeps[0] < 1.5 * client.backoff


def test_get_gives_up_after_bounded_retries(server, client, sleeps):
    for _ in range(5):
        server.answer(503, envelope(5030, "Service Unavailable"))
    with pytest.raises(IdgtlTransientError) as info:
        client.get_balance()
    assert type(info.value) is IdgtlTransientError
    assert info.value.http_status == 503
    assert len(server.received) == 3  # 1 + max_retries
    assert len(sleeps) == 2


def test_retry_after_is_honoured(server, client, sleeps):
    server.answer(429, envelope(4290, "Too Many Requests"), {"Retry-After": "2"})
    server.answer(200, '{"errors": false, "items": []}')
    client.send_messages([{"channelType": "SMS", "senderName": "Shop", "destination": "79990000001", "content": "x"}])
    assert sleeps == [2.0]
    assert len(server.received) == 2


@pytest.mark.parametrize("value", ["inf", "nan", "1e999", "soon"])
def test_a_retry_after_that_is_not_a_delay_is_ignored(server, client, sleeps, value):
    server.answer(503, envelope(None, "busy"), {"Retry-After": value})
    server.answer(200, '{"RUB": 1}')
    assert client.get_balance() == {"RUB": 1}
    assert len(sleeps) == 1 and 0 < sleeps[0] < 10  # the normal backoff, not an endless wait


def test_retry_after_longer_than_the_cap_ends_retries(server, client, sleeps):
    server.answer(429, envelope(4290, "Too Many Requests"), {"Retry-After": "600"})
    with pytest.raises(IdgtlTransientError) as info:
        client.get_balance()
    assert info.value.retry_after == 600.0 and not isinstance(info.value, IdgtlOutcomeUnknown)
    assert sleeps == [] and len(server.received) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_post_that_may_have_been_processed_is_not_retried(server, client, sleeps, status):
    server.answer(status, "")
    with pytest.raises(IdgtlOutcomeUnknown) as info:
        client.send_messages([{"channelType": "SMS"}])
    assert info.value.http_status == status
    assert len(server.received) == 1 and sleeps == []


@pytest.mark.parametrize("status", [429, 503])
def test_post_is_retried_when_surely_not_processed(server, client, sleeps, status):
    server.answer(status, envelope(status * 10, "busy"))
    server.answer(status, envelope(status * 10, "busy"))
    server.answer(status, envelope(status * 10, "busy"))
    with pytest.raises(IdgtlTransientError) as info:
        client.stop_messages(["u1"])
    assert not isinstance(info.value, IdgtlOutcomeUnknown)
    assert len(server.received) == 3


def test_post_connection_dropped_after_sending_is_outcome_unknown(server, client, sleeps):
    server.drop()
    with pytest.raises(IdgtlOutcomeUnknown):
        client.send_messages([{"channelType": "SMS"}])
    assert len(server.received) == 1 and sleeps == []


def test_get_connection_dropped_is_retried(server, client):
    server.drop()
    server.answer(200, '{"RUB": 1}')
    assert client.get_balance() == {"RUB": 1}
    assert len(server.received) == 2


def test_post_connection_refused_is_retried_then_transient(sleeps):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    c = IdgtlClient(f"http://127.0.0.1:{port}/api/v1", KEY, max_retries=2)
    c._sleep = sleeps.append
    with pytest.raises(IdgtlTransientError) as info:
        c.send_messages([{"channelType": "SMS"}])
    assert not isinstance(info.value, IdgtlOutcomeUnknown)
    assert len(sleeps) == 2


def test_post_2xx_body_that_is_not_json_is_outcome_unknown(server, client):
    server.answer(200, "<html>ok</html>", {"Content-Type": "text/html"})
    with pytest.raises(IdgtlOutcomeUnknown):
        client.send_messages([{"channelType": "SMS"}])


class StubSession:
    """A session whose request() raises or answers from a list, recording the timeout it got."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self):
        pass


def json_response(status, payload):
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(payload).encode()
    response.headers["Content-Type"] = "application/json"
    return response


def test_read_timeout_on_post_is_outcome_unknown_and_uses_timeouts(settings, sleeps):
    session = StubSession([requests.ReadTimeout("read timed out")])
    c = IdgtlClient("https://direct.example/api/v1", KEY, session=session, timeout=70)
    c._sleep = sleeps.append
    with pytest.raises(IdgtlOutcomeUnknown):
        c.send_messages([{"channelType": "SMS"}])
    assert len(session.calls) == 1 and sleeps == []
    assert session.calls[0][2]["timeout"] == (settings.IDGTL_CONNECT_TIMEOUT, 70)


def test_read_timeout_on_get_is_retried(sleeps):
    session = StubSession([requests.ReadTimeout("read timed out"), json_response(200, {"RUB": 3})])
    c = IdgtlClient("https://direct.example/api/v1", KEY, session=session, max_retries=1)
    c._sleep = sleeps.append
    assert c.get_balance() == {"RUB": 3}
    assert len(sleeps) == 1


def test_connect_timeout_on_post_is_retried(sleeps):
    session = StubSession(
        [requests.ConnectTimeout("connect timed out"), json_response(200, {"errors": False, "items": []})]
    )
    c = IdgtlClient("https://direct.example/api/v1", KEY, session=session, max_retries=1)
    c._sleep = sleeps.append
    assert c.send_messages([{"channelType": "SMS"}]) == {"errors": False, "items": []}


def test_missing_key_is_a_configuration_error_without_a_call():
    session = StubSession([])
    with pytest.raises(IdgtlConfigurationError):
        IdgtlClient("https://direct.example/api/v1", "", session=session).get_balance()
    assert session.calls == []


def test_key_with_header_breaking_characters_is_refused_without_echoing_it():
    bad = KEY + "\nX-Evil: 1"
    with pytest.raises(IdgtlConfigurationError) as info:
        IdgtlClient("https://direct.example/api/v1", "key ū" + bad, session=StubSession([])).get_balance()
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_key_never_in_logs_errors_or_repr(server, client, caplog):
    caplog.set_level(logging.DEBUG)
    server.answer(401, envelope(4012, "Bad credentials"))
    with pytest.raises(IdgtlConfigurationError) as info:
        client.get_balance()
    server.drop()
    with pytest.raises(IdgtlOutcomeUnknown) as unknown:
        client.send_messages([{"channelType": "SMS"}])
    texts = [caplog.text, str(info.value), repr(info.value), str(unknown.value), repr(unknown.value), repr(client)]
    assert all(KEY not in t for t in texts)
    assert repr(client).endswith("'••••ODc2')")
    # each call is logged with method, path and status
    assert "GET /balance -> 401" in caplog.text


def test_create_sender_name_sends_body_part_as_json_and_files(server, client):
    server.answer(200, json.dumps({"id": 7, "status": "PRE_REVIEW", "fee": 2000}))
    body = {
        "channelType": "SMS",
        "commonType": "PROMO",
        "brand": "MTS",
        "dateFrom": "2030-01-01T21:00:00Z",
        "senderName": "MyShop",
        "counteragentName": "Контрагент, ООО",
        "counteragentInn": "7707083893",
    }
    result = client.create_sender_name(
        body, [("letter.pdf", b"%PDF-1.4 x", "application/pdf"), ("logo.png", io.BytesIO(b"\x89PNG\r\n"), "image/png")]
    )
    assert result["id"] == 7
    _, path, headers, raw = server.received[0]
    assert path == "/api/v1/sender-names"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + raw
    )
    parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
    assert list(parts) == ["body", "file1", "file2"]
    assert parts["body"].get_content_type() == "application/json"
    assert json.loads(parts["body"].get_payload(decode=True)) == body
    assert parts["file1"].get_filename() == "letter.pdf" and parts["file1"].get_payload(decode=True) == b"%PDF-1.4 x"
    assert (
        parts["file2"].get_content_type() == "image/png" and parts["file2"].get_payload(decode=True) == b"\x89PNG\r\n"
    )


def test_get_messages_repeats_multi_value_filters(server, client):
    from datetime import datetime

    server.answer(200, '{"total": 0, "items": []}')
    client.get_messages(
        message_uuids=["a", "b"],
        statuses=["sent"],
        external_message_ids=["42"],
        time_from=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        page=2,
        per_page=50,
    )
    query = parse_qs(urlsplit(server.received[0][1]).query)
    assert query == {
        "message_uuid": ["a", "b"],
        "status": ["sent"],
        "external_message_id": ["42"],
        "time_from": ["2026-01-02T03:04:05Z"],
        "page": ["2"],
        "per_page": ["50"],
    }


def test_send_messages_refuses_a_batch_out_of_range(client):
    with pytest.raises(ValueError):
        client.send_messages([])
    with pytest.raises(ValueError):
        client.send_messages([{}] * 1001)


def test_for_sender_names_and_for_messages_use_the_right_key():
    class Account:
        api_url = "https://direct.example/api/v1/"
        sender_names_key = "TOKEN-TWO-abcd"
        messages_key = "TOKEN-ONE-wxyz"

    assert IdgtlClient.for_sender_names(Account())._key == "TOKEN-TWO-abcd"
    assert IdgtlClient.for_messages(Account())._key == "TOKEN-ONE-wxyz"
    assert IdgtlClient.for_messages(Account()).api_url == "https://direct.example/api/v1"


def test_tls_handshake_failure_on_post_is_retried(sleeps):
    session = StubSession([requests.exceptions.SSLError("handshake failed"), json_response(200, {"errors": False})])
    c = IdgtlClient("https://direct.example/api/v1", KEY, session=session, max_retries=1)
    c._sleep = sleeps.append
    assert c.send_messages([{"channelType": "SMS"}]) == {"errors": False}
