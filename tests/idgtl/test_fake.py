"""fakes.idgtl behaves as docs/contracts/idgtl.md §6 says, seen over real HTTP (mostly through idgtl.client)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests

from fakes.idgtl import FakeIdgtl
from idgtl.client import (
    IdgtlClient,
    IdgtlConfigurationError,
    IdgtlNotFound,
    IdgtlOutcomeUnknown,
    IdgtlValidationError,
)
from tests.idgtl.scripted_server import ScriptedServer
from tests.waiting import wait_until

PDF = b"%PDF-1.4\n%test document\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def future(days=2):
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def body(**overrides):
    data = {
        "channelType": "SMS",
        "commonType": "SERVICE",
        "brand": "MTS",
        "dateFrom": future(),
        "senderName": "MyShop",
        "counteragentName": "Контрагент, ООО",
        "counteragentInn": "7707083893",
    }
    data.update(overrides)
    return data


@pytest.fixture
def fake(fake_idgtl):
    fake_idgtl.reset()
    fake_idgtl.callback_backoff = 0.01
    yield fake_idgtl
    fake_idgtl.reset()


@pytest.fixture
def names(fake):
    client = IdgtlClient(fake.url, fake.sender_names_key, max_retries=2)
    client._sleep = lambda seconds: None
    return client


@pytest.fixture
def messages(fake):
    client = IdgtlClient(fake.url, fake.messages_key, max_retries=2)
    client._sleep = lambda seconds: None
    return client


@pytest.fixture
def receiver():
    srv = ScriptedServer()
    yield srv
    srv.stop()


def approved_name(fake, names, sender_name="MyShop"):
    created = names.create_sender_name(body(senderName=sender_name), [])
    fake.set_sender_name_status(created["id"], "APPROVED")
    fake.sender_names[created["id"]]["dateFrom"] = "2020-01-01T21:00:00Z"  # the start date has passed
    return created


def sms(**overrides):
    return {"channelType": "SMS", "senderName": "MyShop", "destination": "79991234567", "content": "Hello", **overrides}


# --- auth --------------------------------------------------------------------------------------------------
def test_auth_by_key_type(fake):
    url = fake.url
    cases = [
        ({}, "/sender-names/1", 401, 4010, "Not Authenticated"),
        ({"Authorization": "Basic bm90OmEta2V5"}, "/sender-names/1", 401, 4012, "Bad credentials"),
        ({"Authorization": f"Basic {fake.messages_key}"}, "/sender-names/1", 403, 4030, "Access Denied"),
        ({"Authorization": f"Basic {fake.sender_names_key}"}, "/message", 403, 4030, "Access Denied"),
        ({"Authorization": f"Token {fake.sender_names_key}"}, "/sender-names/1", 401, 4012, "Bad credentials"),
    ]
    for headers, path, status, code, msg in cases:
        response = requests.get(url + path, headers=headers, timeout=5)
        assert (response.status_code, response.json()) == (status, {"error": {"code": code, "msg": msg}}), path
    for key in (fake.sender_names_key, fake.messages_key):
        assert requests.get(url + "/balance", headers={"Authorization": f"Basic {key}"}, timeout=5).json() == {
            "RUB": 10000.0
        }
    bearer = requests.get(url + "/message", headers={"Authorization": f"Bearer {fake.messages_key}"}, timeout=5)
    assert bearer.status_code == 200


def test_client_maps_the_fakes_auth_errors(fake):
    with pytest.raises(IdgtlConfigurationError) as bad:
        IdgtlClient(fake.url, "bm90OmEta2V5").get_balance()
    assert (bad.value.http_status, bad.value.code) == (401, 4012)
    with pytest.raises(IdgtlConfigurationError) as wrong_type:
        IdgtlClient(fake.url, fake.messages_key).create_sender_name(body(), [])
    assert (wrong_type.value.http_status, wrong_type.value.code) == (403, 4030)
    assert fake.sender_names == {}


def test_unknown_routes_and_methods_use_the_envelope(fake):
    auth = {"Authorization": f"Basic {fake.sender_names_key}"}
    response = requests.get(fake.url + "/nowhere", headers=auth, timeout=5)
    assert (response.status_code, response.json()) == (404, {"error": {"code": 4040, "msg": "Not Found"}})
    assert requests.get(fake.url.replace("/api/v1", "/other"), timeout=5).json()["error"]["code"] == 4040
    for method in ("PUT", "PATCH", "DELETE"):
        response = requests.request(method, fake.url + "/sender-names/1", headers=auth, timeout=5)
        assert response.status_code == 405 and response.json()["error"]["code"] == 4050


# --- POST /sender-names --------------------------------------------------------------------------------------
def test_create_returns_pre_review_with_fee_and_records_files(fake, names):
    sent = body(commonType="PROMO")
    created = names.create_sender_name(sent, [("letter.pdf", PDF, "application/pdf"), ("logo.png", PNG, "image/png")])
    assert created == {**sent, "id": created["id"], "status": "PRE_REVIEW", "fee": 2000}
    recorded = fake.requests[-1]
    assert recorded.body_part == sent
    assert [(f["name"], f["filename"], f["size"], f["content_type"]) for f in recorded.files] == [
        ("file1", "letter.pdf", len(PDF), "application/pdf"),
        ("file2", "logo.png", len(PNG), "image/png"),
    ]
    import hashlib

    assert fake.sender_names[created["id"]]["files"][0]["sha256"] == hashlib.sha256(PDF).hexdigest()


def test_body_may_be_a_plain_form_field(fake):
    response = requests.post(
        fake.url + "/sender-names",
        headers={"Authorization": f"Basic {fake.sender_names_key}"},
        data={"body": json.dumps(body(commonType="PROMO"))},
        files={"file1": ("doc.pdf", PDF, "application/pdf")},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PRE_REVIEW"
    assert fake.requests[-1].files[0]["filename"] == "doc.pdf"


@pytest.mark.parametrize(
    "overrides, files, msg",
    [
        ({"channelType": "VIBER"}, [], "Invalid channel type"),
        ({"brand": "NEW_BRAND"}, [], "Unknown brand NEW_BRAND"),
        ({"commonType": "SPAM"}, [], "Unknown common type SPAM"),
        ({"senderName": "Магазин"}, [], "Sender name doesn't match pattern"),
        ({"senderName": "ab"}, [], "Sender name doesn't match pattern"),
        ({"senderName": "Shop+1", "brand": "MEGAFON"}, [], "Sender name doesn't match pattern"),
        ({"dateFrom": "2020-07-07T21:00:00Z"}, [], "Date from isn't greater than now"),
        ({"dateFrom": "tomorrow"}, [], "Invalid dateFrom format"),
        ({"counteragentInn": "12345"}, [], "Invalid counteragent INN"),
        ({"counteragentName": ""}, [], "counteragentName is required"),
        ({"commonType": "PROMO"}, [], "Files are required for PROMO names"),
        ({"commonType": "PROMO"}, [("a.exe", b"MZ\x90\x00", "application/pdf")], "File a.exe has an unsupported type"),
    ],
)
def test_create_validation_texts(fake, names, overrides, files, msg):
    with pytest.raises(IdgtlValidationError) as info:
        names.create_sender_name(body(**overrides), files)
    assert (info.value.http_status, info.value.code, info.value.message) == (422, 4220, msg)
    assert fake.sender_names == {}


def test_megafon_pattern_differs_from_the_others(names):
    assert names.create_sender_name(body(senderName="Shop+1", brand="MTS"), [])["status"] == "PRE_REVIEW"
    assert names.create_sender_name(body(senderName="Shop!1", brand="MEGAFON"), [])["status"] == "PRE_REVIEW"


def test_validation_order_channel_brand_type_name_date(names):
    everything_wrong = body(channelType="X", brand="Y", commonType="Z", senderName="!", dateFrom="2000-01-01T00:00:00Z")
    expected = [
        "Invalid channel type",
        "Unknown brand Y",
        "Unknown common type Z",
        "Sender name doesn't match pattern",
        "Date from isn't greater than now",
    ]
    fixes = [{"channelType": "SMS"}, {"brand": "MTS"}, {"commonType": "SERVICE"}, {"senderName": "MyShop"}]
    for msg, fix in zip(expected, fixes + [None], strict=False):
        with pytest.raises(IdgtlValidationError) as info:
            names.create_sender_name(everything_wrong, [])
        assert info.value.message == msg
        if fix:
            everything_wrong.update(fix)


def test_duplicates_of_live_names_are_refused(fake, names):
    first = names.create_sender_name(body(senderName="MyShop"), [])
    with pytest.raises(IdgtlValidationError) as info:
        names.create_sender_name(body(senderName="MYSHOP"), [])
    assert info.value.message == f"Duplicates with existing name (id = {first['id']})"
    assert names.create_sender_name(body(senderName="MyShop", brand="BEELINE"), [])["id"] != first["id"]
    fake.set_sender_name_status(first["id"], "REJECTED", "Bad documents")
    assert names.create_sender_name(body(senderName="MyShop"), [])["status"] == "PRE_REVIEW"


def test_body_part_missing_or_not_an_object(fake):
    auth = {"Authorization": f"Basic {fake.sender_names_key}"}
    for data in ({"other": "x"}, {"body": "[1, 2]"}, {"body": "{not json"}):
        response = requests.post(
            fake.url + "/sender-names",
            headers=auth,
            data=data,
            files={"file1": ("d.pdf", PDF, "application/pdf")},
            timeout=5,
        )
        assert response.status_code == 422 and response.json()["error"]["msg"] == "body is required"


# --- sender-name reads and the status hook --------------------------------------------------------------------
def test_get_list_and_status_hook(fake, names):
    first = names.create_sender_name(body(senderName="First"), [])
    second = names.create_sender_name(body(senderName="Second", brand="TELE2"), [])
    assert names.get_sender_name(first["id"])["status"] == "PRE_REVIEW"
    with pytest.raises(IdgtlNotFound) as info:
        names.get_sender_name(999)
    assert info.value.code == 4040
    hook = requests.post(
        fake.url.replace("/api/v1", "") + f"/__fake__/sender-names/{second['id']}/status",
        json={"status": "REJECTED", "comment": "Not allowed"},
        timeout=5,
    )
    assert hook.status_code == 200
    assert names.get_sender_name(second["id"])["comment"] == "Not allowed"
    assert names.list_sender_names(status="REJECTED") == {"total": 1, "items": [names.get_sender_name(second["id"])]}
    assert [i["id"] for i in names.list_sender_names(brand="MTS")["items"]] == [first["id"]]
    assert [i["id"] for i in names.list_sender_names(sender_name="second")["items"]] == [second["id"]]
    page2 = names.list_sender_names(page=2, per_page=1)
    assert page2["total"] == 2 and [i["id"] for i in page2["items"]] == [second["id"]]


def test_auto_review_moves_names_to_the_final_status():
    fake = FakeIdgtl(auto_review_after=0.05).start()
    try:
        client = IdgtlClient(fake.url, fake.sender_names_key)
        created = client.create_sender_name(body(), [])
        assert created["status"] == "PRE_REVIEW"
        wait_until(lambda: client.get_sender_name(created["id"])["status"] == "APPROVED", timeout=5)
    finally:
        fake.stop()


# --- POST /message ---------------------------------------------------------------------------------------------
def test_send_checks_each_item(fake, names, messages):
    approved_name(fake, names, "MyShop")
    future_name = names.create_sender_name(body(senderName="Later"), [])
    fake.set_sender_name_status(future_name["id"], "APPROVED")  # dateFrom not reached yet
    fake.allowed_sender_names.add("Outside")
    result = messages.send_messages(
        [
            sms(),
            sms(senderName="Later"),
            sms(destination="+79991234567"),
            sms(senderName="Outside"),
            sms(destination="123"),
            sms(ttl=10),
        ]
    )
    assert result["errors"] is True
    codes = [(i["code"], i.get("msg"), "messageUuid" in i) for i in result["items"]]
    assert codes == [
        (201, None, True),
        (4220, "senderName not found or not approved", False),
        (7401, "Invalid destination", False),
        (201, None, True),
        (7401, "Invalid destination", False),
        (4220, "ttl must be between 60 and 86400", False),
    ]
    assert fake.messages[result["items"][0]["messageUuid"]]["status"] == "sending"


def test_send_all_ok_has_errors_false(fake, names, messages):
    approved_name(fake, names)
    result = messages.send_messages([sms(externalMessageId="42")])
    assert result["errors"] is False and result["items"][0]["code"] == 201


def test_send_array_size_is_checked(fake):
    auth = {"Authorization": f"Basic {fake.messages_key}"}
    for payload in ([], [sms()] * 1001, {"not": "an array"}):
        response = requests.post(fake.url + "/message", headers=auth, json=payload, timeout=5)
        assert response.status_code == 422
        assert response.json()["error"] == {"code": 4220, "msg": "Array size must be between 1 and 1000"}
    response = requests.post(
        fake.url + "/message", headers={**auth, "Content-Type": "application/json"}, data=b"[{broken", timeout=5
    )
    assert response.status_code == 422 and response.json()["error"]["msg"] == "Invalid JSON"


def test_callbacks_are_delivered_with_retry(fake, names, messages, receiver):
    approved_name(fake, names)
    receiver.answer(500, "")
    receiver.answer(200, "")
    receiver.answer(200, "")
    callback = receiver.url.replace("/api/v1", "/idgtl/callback/s3cret/")
    result = messages.send_messages([sms(callbackUrl=callback, callbackEvents=["sent", "delivered"])])
    message_uuid = result["items"][0]["messageUuid"]
    fake.set_message_status(message_uuid, "sent")
    fake.set_message_status(message_uuid, "undelivered", error_code=6969)
    wait_until(lambda: len(receiver.received) == 3, timeout=5)
    assert [r[1] for r in receiver.received] == ["/idgtl/callback/s3cret/"] * 3
    events = [json.loads(r[3]) for r in receiver.received]
    assert events[0] == events[1]  # the first one was retried after the 500
    assert events[1][0] == {
        "message_uuid": message_uuid,
        "channel_type": "SMS",
        "callback_event": "sent",
        "status": "sent",
        "status_time": events[1][0]["status_time"],
    }
    assert events[2][0]["callback_event"] == "delivered" and events[2][0]["status"] == "undelivered"
    assert events[2][0]["error_code"] == 6969
    assert receiver.received[0][2]["Content-Type"] == "application/json"
    assert [c["attempts"] for c in fake.callbacks] == [[500, 200], [200]]


def test_callbacks_only_for_requested_events(fake, names, messages, receiver):
    approved_name(fake, names)
    callback = receiver.url + "/cb"
    uuid_ = messages.send_messages([sms(callbackUrl=callback)])["items"][0]["messageUuid"]  # default: delivered
    fake.set_message_status(uuid_, "sent")
    fake.set_message_status(uuid_, "delivered")
    wait_until(lambda: fake.callbacks and fake.callbacks[-1]["delivered"], timeout=5)
    assert [json.loads(r[3])[0]["status"] for r in receiver.received] == ["delivered"]


def test_callback_gives_up_after_the_retries(fake, names, messages, receiver):
    approved_name(fake, names)
    for _ in range(5):
        receiver.answer(503, "")
    uuid_ = messages.send_messages([sms(callbackUrl=receiver.url + "/cb")])["items"][0]["messageUuid"]
    fake.set_message_status(uuid_, "delivered")
    wait_until(lambda: fake.callbacks and len(fake.callbacks[0]["attempts"]) == 4, timeout=5)
    assert fake.callbacks[0]["delivered"] is False and len(receiver.received) == 4


def test_auto_deliver_and_undeliverable_numbers(receiver):
    fake = FakeIdgtl(auto_deliver_after=0.05, callback_backoff=0.01).start()
    try:
        fake.allowed_sender_names.add("MyShop")
        client = IdgtlClient(fake.url, fake.messages_key)
        items = client.send_messages([sms(destination="79991234567"), sms(destination="79990000000")])["items"]
        ok, bad = items[0]["messageUuid"], items[1]["messageUuid"]
        wait_until(
            lambda: {fake.messages[ok]["status"], fake.messages[bad]["status"]} == {"delivered", "undelivered"},
            timeout=5,
        )
        assert fake.messages[bad]["status"] == "undelivered" and fake.messages[bad]["errorCode"] == 6969
        assert [s for s, _ in fake.messages[ok]["history"]] == ["sending", "sent", "delivered"]
    finally:
        fake.stop()


# --- GET /message, stop, failures -------------------------------------------------------------------------------
def test_get_messages_filters_and_paging(fake, names, messages):
    approved_name(fake, names)
    items = messages.send_messages([sms(externalMessageId=str(n)) for n in range(3)])["items"]
    uuids = [i["messageUuid"] for i in items]
    fake.set_message_status(uuids[1], "delivered")
    both = messages.get_messages(message_uuids=[uuids[0], uuids[2]])
    assert both["total"] == 2 and [m["messageUuid"] for m in both["items"]] == [uuids[0], uuids[2]]
    delivered = messages.get_messages(statuses=["delivered"])
    assert [m["messageUuid"] for m in delivered["items"]] == [uuids[1]]
    assert set(delivered["items"][0]) == {
        "messageUuid",
        "channelType",
        "senderName",
        "destination",
        "status",
        "statusTime",
        "errorCode",
        "externalMessageId",
        "tags",
    }
    assert messages.get_messages(external_message_ids=["2"])["items"][0]["messageUuid"] == uuids[2]
    page = messages.get_messages(page=2, per_page=2)
    assert page["total"] == 3 and [m["messageUuid"] for m in page["items"]] == [uuids[2]]
    with pytest.raises(IdgtlValidationError):
        messages.get_messages(page=101, per_page=100)


def test_stop_messages(fake, names, messages):
    approved_name(fake, names)
    uuids = [i["messageUuid"] for i in messages.send_messages([sms(), sms()])["items"]]
    fake.set_message_status(uuids[1], "sent")
    result = messages.stop_messages([uuids[0], uuids[1], "nope"])
    assert result == {
        "errors": True,
        "items": [
            {"messageUuid": uuids[0], "code": 200},
            {"messageUuid": uuids[1], "code": 403},
            {"messageUuid": "nope", "code": 404},
        ],
    }
    wait_until(lambda: fake.messages[uuids[0]]["status"] == "unsent", timeout=5)


def test_fail_next_then_success_is_retried_by_the_client(fake, messages):
    fake.fail_next(2, 503)
    assert messages.get_balance() == {"RUB": 10000.0}
    assert [r.status for r in fake.requests] == [503, 503, 200]


def test_fail_next_500_on_post_is_outcome_unknown(fake, names, messages):
    approved_name(fake, names)
    fake.fail_next(1, 500, path_prefix="/message")
    with pytest.raises(IdgtlOutcomeUnknown):
        messages.send_messages([sms()])
    assert messages.send_messages([sms()])["errors"] is False


def test_fail_next_429_with_retry_after(fake, messages):
    fake.fail_next(1, 429, retry_after=0)
    assert messages.get_messages()["total"] == 0
    assert fake.requests[0].status == 429


def test_burst_auto_delivered_with_batched_callbacks(receiver):
    fake = FakeIdgtl(auto_deliver_after=0.01, callback_batch_max=100).start()
    try:
        fake.allowed_sender_names.add("MyShop")
        client = IdgtlClient(fake.url, fake.messages_key)
        result = client.send_messages(
            [sms(destination=f"7999{n:07d}", callbackUrl=receiver.url + "/cb") for n in range(1, 1001)]
        )
        assert result["errors"] is False
        wait_until(lambda: sum(len(json.loads(r[3])) for r in receiver.received) == 1000, timeout=20)
        events = [e for r in receiver.received for e in json.loads(r[3])]
        assert {e["status"] for e in events} == {"delivered"}
        assert len({e["message_uuid"] for e in events}) == 1000
        assert len(receiver.received) < 1000  # several events per POST
    finally:
        fake.stop()


def test_a_sandbox_keeps_only_the_latest_requests():
    fake = FakeIdgtl(max_recorded_requests=3).start()
    try:
        client = IdgtlClient(fake.url, fake.messages_key)
        for _ in range(5):
            client.get_balance()
        assert len(fake.requests) == 3
    finally:
        fake.stop()


def test_callback_url_with_userinfo_uses_basic_auth(fake, names, messages, receiver):
    import base64

    approved_name(fake, names)
    callback = receiver.url.replace("http://", "http://hook:pa55@") + "/cb"
    uuid_ = messages.send_messages([sms(callbackUrl=callback)])["items"][0]["messageUuid"]
    fake.set_message_status(uuid_, "delivered")
    wait_until(lambda: receiver.received, timeout=5)
    assert receiver.received[0][2]["Authorization"] == "Basic " + base64.b64encode(b"hook:pa55").decode()
