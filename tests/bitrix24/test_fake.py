"""The fake Bitrix24 itself: routes, validation order and exact strings of the contract, OAuth, outbound posts."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
import qs_codec
import requests


@pytest.fixture
def portal(bitrix24):
    return bitrix24.add_portal(client_id="local.fake01.1", client_secret="fake-secret")


def rest(portal, method, params=None, *, token=None, form=False, http="POST", url=None):
    params = dict(params or {})
    if token is not False:
        params.setdefault("auth", token or portal.admin_access_token)
    target = url or portal.client_endpoint + method
    if http == "GET":
        response = requests.get(target, params=params, timeout=10)
    elif form:
        response = requests.post(target, data=params, timeout=10)
    else:
        response = requests.post(target, json=params, timeout=10)
    return response.status_code, response.json()


def error_of(answer):
    status, body = answer
    return status, body.get("error"), body.get("error_description")


class Receiver:
    """A tiny HTTP server recording form POSTs (stands in for our install/handler endpoints)."""

    def __init__(self, status=200):
        self.posts = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                receiver.posts.append(
                    {
                        "path": self.path,
                        "query": dict(parse_qsl(urlsplit(self.path).query)),
                        "raw": body,
                        "form": qs_codec.decode(body),
                        "content_type": self.headers.get("Content-Type"),
                    }
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


SENDER = {"CODE": "prov1", "TYPE": "SMS", "HANDLER": "https://sms.example.com/h", "NAME": "Prov"}


@pytest.mark.parametrize(
    "params,expected",
    [
        ({}, ("ERROR_SENDER_VALIDATION_FAILURE", "Empty data!")),
        ({"TYPE": "SMS"}, ("ERROR_SENDER_VALIDATION_FAILURE", "Empty sender code!")),
        ({**SENDER, "CODE": "bad code!"}, ("ERROR_SENDER_VALIDATION_FAILURE", "Wrong sender code!")),
        (
            {**SENDER, "CODE": "bad code!", "HANDLER": "nope", "NAME": ""},
            ("ERROR_SENDER_VALIDATION_FAILURE", "Wrong sender code!"),
        ),
        ({**SENDER, "HANDLER": "not a url", "NAME": ""}, ("ERROR_WRONG_HANDLER_URL", "Wrong handler URL")),
        ({**SENDER, "HANDLER": "https://nodot/h"}, ("ERROR_WRONG_HANDLER_URL", "Wrong handler URL")),
        (
            {**SENDER, "HANDLER": "ftp://files.example.com/h", "NAME": ""},
            ("ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol"),
        ),
        ({**SENDER, "NAME": "", "TYPE": ""}, ("ERROR_SENDER_VALIDATION_FAILURE", "Empty sender NAME!")),
        ({**SENDER, "TYPE": ""}, ("ERROR_SENDER_VALIDATION_FAILURE", "Empty sender message TYPE!")),
        ({**SENDER, "TYPE": "sms"}, ("ERROR_SENDER_VALIDATION_FAILURE", "Unknown sender message TYPE!")),
        ({**SENDER, "CODE": "x" * 129}, ("ERROR_SENDER_ADD_FAILURE", "Sender save error!")),
        (
            {**SENDER, "HANDLER": "https://h.example.com/" + "x" * 1000},
            ("ERROR_SENDER_ADD_FAILURE", "Sender save error!"),
        ),
    ],
)
def test_sender_add_validation_order_and_strings(bitrix24, portal, params, expected):
    assert error_of(rest(portal, "messageservice.sender.add", params)) == (400, *expected)
    assert portal.providers == {}


def test_sender_add_then_duplicate_and_admin_only(bitrix24, portal):
    assert (
        rest(portal, "messageservice.sender.add", {**SENDER, "NAME": {"EN": "Prov", "de": "Prov DE"}})[1]["result"]
        is True
    )
    assert portal.providers["prov1"]["NAME"] == {"en": "Prov", "de": "Prov DE"}
    assert error_of(rest(portal, "messageservice.sender.add", SENDER)) == (
        400,
        "ERROR_SENDER_ALREADY_INSTALLED",
        "Sender already installed!",
    )
    user = bitrix24.user_token(portal, 5)
    for method in (
        "messageservice.sender.add",
        "messageservice.sender.list",
        "messageservice.sender.delete",
        "messageservice.sender.update",
    ):
        assert error_of(rest(portal, method, {"CODE": "prov1"}, token=user)) == (403, "ACCESS_DENIED", "Access denied!")


def test_parameters_by_form_query_and_any_case(bitrix24, portal):
    form = {"code": "p-form", "type": "SMS", "handler": "https://a.example.com/h", "name[en]": "E", "name[ru]": "R"}
    assert rest(portal, "messageservice.sender.add.json", form, form=True)[1]["result"] is True
    assert portal.providers["p-form"]["NAME"] == {"en": "E", "ru": "R"}
    assert rest(portal, "MessageService.Sender.List", {}, http="GET")[1]["result"] == ["p-form"]
    status, body = rest(portal, "messageservice.sender.list", {"access_token": portal.admin_access_token}, token=False)
    assert body["result"] == ["p-form"]
    multipart = requests.post(
        portal.client_endpoint + "messageservice.sender.add",
        timeout=10,
        files={
            "auth": (None, portal.admin_access_token),
            "CODE": (None, "p-multi"),
            "TYPE": (None, "SMS"),
            "HANDLER": (None, "https://m.example.com/h"),
            "NAME[de]": (None, "Größe"),
        },
    )
    assert multipart.json()["result"] is True and portal.providers["p-multi"]["NAME"] == {"de": "Größe"}
    response = requests.post(
        portal.client_endpoint + "messageservice.sender.list",
        json={},
        headers={"Authorization": f"Bearer {portal.admin_access_token}"},
        timeout=10,
    )
    assert response.json()["result"] == ["p-form", "p-multi"]


def test_sender_update_list_delete(bitrix24, portal):
    rest(portal, "messageservice.sender.add", SENDER)
    assert error_of(rest(portal, "messageservice.sender.update", {})) == (
        400,
        "ERROR_SENDER_CODE_REQUIRED",
        "CODE is required!",
    )
    assert error_of(rest(portal, "messageservice.sender.update", {"CODE": "prov1"})) == (
        400,
        "ERROR_SENDER_OTHER_PARAMS_REQUIRED",
        "At least one other parameter is required!",
    )
    assert error_of(rest(portal, "messageservice.sender.update", {"CODE": "zz", "NAME": "N"})) == (
        400,
        "ERROR_SENDER_NOT_FOUND",
        "Sender not found!",
    )
    assert error_of(rest(portal, "messageservice.sender.update", {"CODE": "prov1", "NAME": "x" * 501})) == (
        400,
        "ERROR_SENDER_UPDATE_FAILURE",
        "Sender update error!",
    )
    assert rest(portal, "messageservice.sender.update", {"CODE": "prov1", "HANDLER": "https://b.example.com/h"})[1][
        "result"
    ]
    assert portal.providers["prov1"]["HANDLER"] == "https://b.example.com/h"
    assert error_of(rest(portal, "messageservice.sender.delete", {})) == (
        400,
        "ERROR_SENDER_VALIDATION_FAILURE",
        "Empty sender code!",
    )
    assert error_of(rest(portal, "messageservice.sender.delete", {"CODE": "a b"})) == (
        400,
        "ERROR_SENDER_VALIDATION_FAILURE",
        "Wrong sender code!",
    )
    assert error_of(rest(portal, "messageservice.sender.delete", {"CODE": "zz"})) == (
        400,
        "ERROR_SENDER_NOT_FOUND",
        "Sender not found!",
    )
    assert rest(portal, "messageservice.sender.delete", {"CODE": "prov1"})[1]["result"] is True
    assert rest(portal, "messageservice.sender.list")[1]["result"] == []


def test_status_update_order_and_recording(bitrix24, portal):
    rest(portal, "messageservice.sender.add", SENDER)
    mid = bitrix24.record_message(portal, "prov1", author_user_id=9)
    cases = [
        ({"MESSAGE_ID": mid, "STATUS": "bogus"}, ("ERROR_SENDER_VALIDATION_FAILURE", "Empty sender code!")),
        ({"CODE": "a b", "STATUS": "bogus"}, ("ERROR_SENDER_VALIDATION_FAILURE", "Wrong sender code!")),
        ({"CODE": "prov1", "STATUS": "bogus"}, ("ERROR_MESSAGE_NOT_FOUND", "Message not found!")),
        (
            {"CODE": "prov1", "MESSAGE_ID": "unknown", "STATUS": "bogus"},
            ("ERROR_MESSAGE_STATUS_INCORRECT", "Message status incorrect!"),
        ),
        (
            {"CODE": "prov1", "MESSAGE_ID": mid, "STATUS": "Delivered"},
            ("ERROR_MESSAGE_STATUS_INCORRECT", "Message status incorrect!"),
        ),
        (
            {"CODE": "prov1", "MESSAGE_ID": "unknown", "STATUS": "sent"},
            ("ERROR_MESSAGE_NOT_FOUND", "Message not found!"),
        ),
        ({"CODE": "other", "MESSAGE_ID": mid, "STATUS": "sent"}, ("ERROR_MESSAGE_NOT_FOUND", "Message not found!")),
    ]
    for params, expected in cases:
        assert error_of(rest(portal, "messageservice.message.status.update", params)) == (400, *expected)
    stranger = bitrix24.user_token(portal, 5)
    assert (
        error_of(
            rest(
                portal,
                "messageservice.message.status.update",
                {"CODE": "prov1", "MESSAGE_ID": mid, "STATUS": "sent"},
                token=stranger,
            )
        )[0]
        == 403
    )
    author = bitrix24.user_token(portal, 9)
    for status, token in (("queued", author), ("sent", None), ("delivered", None), ("delivered", None)):
        assert (
            rest(
                portal,
                "messageservice.message.status.update",
                {"code": "prov1", "message_id": mid, "status": status},
                token=token,
            )[1]["result"]
            is True
        )
    assert portal.message_statuses[mid] == ["queued", "sent", "delivered", "delivered"]


def test_auth_errors(bitrix24, portal):
    assert error_of(rest(portal, "app.info", token=False)) == (401, "NO_AUTH_FOUND", "Wrong authorization data")
    assert error_of(rest(portal, "app.info", token="nope"))[:2] == (401, "invalid_token")
    assert error_of(rest(portal, "no.such.method"))[:2] == (404, "ERROR_METHOD_NOT_FOUND")
    bitrix24.expire_access_tokens(portal)
    assert error_of(rest(portal, "app.info")) == (401, "expired_token", "The access token provided has expired")
    other = bitrix24.add_portal(client_id="local.fake01.1", client_secret="fake-secret")
    assert error_of(rest(portal, "app.info", token=other.admin_access_token))[:2] == (401, "invalid_token")
    bitrix24.set_scope(other, "crm")
    assert error_of(rest(other, "messageservice.sender.list"))[:2] == (403, "insufficient_scope")
    assert rest(other, "app.info")[1]["result"]["CODE"] == "local.fake01.1"


def test_webhook_route_refuses_messageservice(bitrix24, portal):
    url = portal.client_endpoint + "1/abcdef123/messageservice.sender.add.json"
    assert error_of(rest(portal, "", SENDER, url=url)) == (403, "ACCESS_DENIED", "Application context required")


def test_leaky_bucket_answers_query_limit_exceeded(bitrix24, portal):
    bitrix24.set_rate_limit(burst=3, drain_per_second=0.05)  # 20 s per request: a slow machine cannot drain one
    statuses = [rest(portal, "app.info")[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 503]
    assert error_of(rest(portal, "app.info")) == (503, "QUERY_LIMIT_EXCEEDED", "Too many requests")


def test_operation_time_limit_switch(bitrix24, portal):
    bitrix24.set_operation_time_limit("messageservice.sender.list", reset_in=20)
    status, body = rest(portal, "messageservice.sender.list")
    assert (status, body["error"]) == (429, "OPERATION_TIME_LIMIT") and body["time"]["operating_reset_at"]
    assert rest(portal, "app.info")[0] == 200
    bitrix24.set_operation_time_limit("messageservice.sender.list", reset_in=0)
    assert rest(portal, "messageservice.sender.list")[0] == 200


def test_batch_shapes_and_limits(bitrix24, portal):
    status, body = rest(portal, "batch", {"halt": 0, "cmd": {"a": "messageservice.sender.delete?CODE=zz"}})
    assert status == 200 and body["result"]["result"] == [] and body["result"]["result_total"] == []
    assert body["result"]["result_error"] == {
        "a": {"error": "ERROR_SENDER_NOT_FOUND", "error_description": "Sender not found!"}
    }
    status, body = rest(portal, "batch", {"cmd": {"a": "app.info", "b": "batch?cmd[x]=app.info"}})
    assert body["result"]["result_error"]["b"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert body["result"]["result"]["a"]["CODE"] == "local.fake01.1"
    status, body = rest(portal, "batch", {"halt": 1, "cmd": {"a": "no.such", "b": "app.info"}})
    assert body["result"]["result"] == [] and list(body["result"]["result_error"]) == ["a"]
    cmds = [
        f"messageservice.sender.add?CODE=c{i}&TYPE=SMS&HANDLER=https%3A%2F%2Fh.example.com%2F&NAME%5Ben%5D=N%20{i}"
        for i in range(2)
    ]
    status, body = rest(portal, "batch", {"cmd": cmds})
    assert body["result"]["result"] == [True, True] and body["result"]["result_error"] == []
    assert portal.providers["c1"]["NAME"] == {"en": "N 1"}
    assert error_of(rest(portal, "batch", {"cmd": {str(i): "app.info" for i in range(51)}}))[:2] == (
        400,
        "ERROR_BATCH_LENGTH_EXCEEDED",
    )


def test_oauth_refresh_rotates_and_rejects_reuse(bitrix24, portal):
    params = {
        "grant_type": "refresh_token",
        "client_id": "local.fake01.1",
        "client_secret": "fake-secret",
        "refresh_token": portal.admin_refresh_token,
    }
    first = requests.get(bitrix24.oauth_url, params=params, timeout=10)
    assert first.status_code == 200
    tokens = first.json()
    assert tokens["refresh_token"] != params["refresh_token"] and tokens["member_id"] == portal.member_id
    assert tokens["client_endpoint"] == portal.client_endpoint and tokens["expires_in"] == 3600
    assert rest(portal, "app.info", token=tokens["access_token"])[0] == 200
    reused = requests.get(bitrix24.oauth_url, params=params, timeout=10)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    wrong = requests.get(bitrix24.oauth_url, params={**params, "client_secret": "x"}, timeout=10)
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert bitrix24.refresh_count == 1


def test_rename_answers_302_from_the_old_address(bitrix24, portal):
    old = portal.client_endpoint
    bitrix24.rename_portal(portal)
    response = requests.post(
        old + "app.info", json={"auth": portal.admin_access_token}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 302 and response.headers["Location"] == portal.client_endpoint + "app.info"
    assert portal.domain == urlsplit(portal.client_endpoint).netloc


def test_install_event_and_page(bitrix24, portal, receiver):
    assert bitrix24.install(portal, receiver.url).status_code == 200
    form = receiver.posts[0]["form"]
    assert form["event"] == "ONAPPINSTALL" and form["data"]["INSTALLED"] == "Y"
    auth = form["auth"]
    assert (auth["access_token"], auth["refresh_token"]) == (portal.admin_access_token, portal.admin_refresh_token)
    assert auth["member_id"] == portal.member_id and auth["client_endpoint"] == portal.client_endpoint
    assert auth["application_token"] == portal.application_token and auth["domain"] == portal.domain
    assert auth["user_id"] == "1" and "messageservice" in auth["scope"].split(",")
    bitrix24.install(portal, receiver.url, mode="page")
    page = receiver.posts[1]
    assert page["query"]["DOMAIN"] == portal.domain and page["query"]["PROTOCOL"] == "0"
    assert (
        page["form"]["AUTH_ID"] == portal.admin_access_token
        and page["form"]["REFRESH_ID"] == portal.admin_refresh_token
    )
    assert (
        page["form"]["APPLICATION_TOKEN"] == portal.application_token and page["form"]["member_id"] == portal.member_id
    )


def test_uninstall_goes_to_the_bound_handler_only(bitrix24, portal, receiver):
    with pytest.raises(AssertionError):
        bitrix24.uninstall(portal)
    assert rest(portal, "event.bind", {"event": "ONAPPUNINSTALL", "handler": receiver.url})[1]["result"] is True
    assert error_of(rest(portal, "event.bind", {"event": "NOPE", "handler": receiver.url})) == (
        400,
        "ERROR_EVENT_NOT_FOUND",
        "Event not found",
    )
    assert rest(portal, "event.get")[1]["result"][0]["handler"] == receiver.url
    rest(portal, "messageservice.sender.add", SENDER)
    bitrix24.uninstall(portal)
    form = receiver.posts[0]["form"]
    assert form["event"] == "ONAPPUNINSTALL" and form["data"]["CLEAN"] == "1"
    assert form["auth"]["application_token"] == portal.application_token and "access_token" not in form["auth"]
    assert portal.providers == {} and rest(portal, "app.info")[0] == 401


@pytest.mark.parametrize("module_id", ["crm", "bizproc"])
def test_send_sms_posts_the_handler_form(bitrix24, portal, receiver, module_id):
    rest(portal, "messageservice.sender.add", {**SENDER, "HANDLER": receiver.url})
    message_id, response = bitrix24.send_sms(portal, "prov1", "+79990000000", "Code: 1234", module_id=module_id)
    assert response.status_code == 200
    post = receiver.posts[0]
    assert post["content_type"] == "application/x-www-form-urlencoded" and "%5B" in post["raw"]
    form = post["form"]
    assert form["module_id"] == module_id and form["code"] == "prov1" and form["message_id"] == message_id
    assert form["message_to"] == "+79990000000" and form["message_body"] == "Code: 1234" and form["type"] == "SMS"
    assert form["properties"] == {"phone_number": "+79990000000", "message_text": "Code: 1234"}
    if module_id == "crm":
        assert form["bindings"] == [{"OWNER_TYPE_ID": "3", "OWNER_ID": "123"}] and "workflow_id" not in form
    else:
        assert form["document_id"] == ["crm", "CCrmDocumentLead", "LEAD_98"] and form["workflow_id"]
    auth = form["auth"]
    assert auth["application_token"] == portal.application_token and auth["member_id"] == portal.member_id
    assert "refresh_token" not in auth
    assert (
        rest(
            portal,
            "messageservice.message.status.update",
            {"CODE": "prov1", "MESSAGE_ID": message_id, "STATUS": "delivered"},
            token=auth["access_token"],
        )[0]
        == 200
    )


def test_send_sms_without_auth_and_with_a_forged_token(bitrix24, portal, receiver):
    rest(portal, "messageservice.sender.add", {**SENDER, "HANDLER": receiver.url})
    bitrix24.send_sms(portal, "prov1", "+7999", "t", module_id="bizproc", with_auth=False)
    bitrix24.send_sms(portal, "prov1", "+7999", "t", application_token="forged")
    assert "auth" not in receiver.posts[0]["form"]
    assert receiver.posts[1]["form"]["auth"]["application_token"] == "forged"


# --- application update and legacy portals (docs/contracts/bitrix24.md §4.6, §2.2) -------------------


def test_update_application_deletes_the_providers_then_posts_onappupdate_to_bound_handlers(bitrix24, portal, receiver):
    assert rest(portal, "event.bind", {"event": "ONAPPUPDATE", "handler": receiver.url})[1]["result"] is True
    assert ("ONAPPUPDATE", receiver.url) in [(b["event"], b["handler"]) for b in rest(portal, "event.get")[1]["result"]]
    rest(portal, "messageservice.sender.add", SENDER)
    rest(portal, "messageservice.sender.add", {**SENDER, "CODE": "prov2"})

    response = bitrix24.update_application(portal)

    assert response.status_code == 200
    assert rest(portal, "messageservice.sender.list")[1]["result"] == []
    form = receiver.posts[0]["form"]
    assert form["event"] == "ONAPPUPDATE" and form["data"]["VERSION"] == "2"
    auth = form["auth"]
    assert auth["application_token"] == portal.application_token and auth["member_id"] == portal.member_id
    assert auth["domain"] == portal.domain and auth["client_endpoint"] == portal.client_endpoint
    assert rest(portal, "app.info", token=auth["access_token"])[0] == 200  # the tokens keep working
    assert [b["event"] for b in portal.event_bindings] == ["ONAPPUPDATE"]  # kept unless told
    bitrix24.update_application(portal, application_token="forged", unbind_events=True)
    assert receiver.posts[1]["form"]["auth"]["application_token"] == "forged"
    assert receiver.posts[1]["form"]["data"]["VERSION"] == "3"
    assert portal.event_bindings == []


def test_update_application_without_a_bound_handler_only_deletes(bitrix24, portal, receiver):
    rest(portal, "event.bind", {"event": "ONAPPUNINSTALL", "handler": receiver.url})
    rest(portal, "messageservice.sender.add", SENDER)

    assert bitrix24.update_application(portal) is None

    assert portal.providers == {} and receiver.posts == []
    state = requests.post(f"{bitrix24.url}/__fake__/portals/{portal.member_id}/update_application", timeout=10).json()
    assert state == {"version": 3, "handler_status": None}


def test_a_legacy_portal_answers_sender_update_as_an_unknown_method(bitrix24):
    legacy = bitrix24.add_portal(client_id="local.legacy.1", client_secret="legacy-secret", legacy=True)
    unknown = error_of(rest(legacy, "no.such.method"))
    assert unknown == (404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
    assert rest(legacy, "messageservice.sender.add", SENDER)[0] == 200

    assert error_of(rest(legacy, "messageservice.sender.update", {"CODE": "prov1", "NAME": "New"})) == unknown
    assert (
        error_of(rest(legacy, "messageservice.sender.update.json", {"CODE": "prov1", "NAME": "New"}, form=True))
        == unknown
    )
    status, body = rest(legacy, "batch", {"cmd": {"u": "messageservice.sender.update?CODE=prov1&NAME=New"}})
    assert status == 200 and body["result"]["result_error"]["u"] == {
        "error": "ERROR_METHOD_NOT_FOUND",
        "error_description": "Method not found!",
    }
    assert rest(legacy, "messageservice.sender.delete", {"CODE": "prov1"})[0] == 200
    assert legacy.providers == {}
    assert bitrix24.portal_state(legacy)["has_sender_update"] is False

    legacy.has_sender_update = True  # the portal is upgraded
    rest(legacy, "messageservice.sender.add", SENDER)
    assert rest(legacy, "messageservice.sender.update", {"CODE": "prov1", "NAME": "New"})[0] == 200
    assert legacy.providers["prov1"]["NAME"] == {"": "New"}
