"""Bitrix24Client against scripted answers: error mapping, retries, refresh, redirects, batch parsing.

The client is built as providers builds it (an Installation's token store, providers/services/portal_access.py),
so what a refresh, a rename or a reinstall leaves in the row is checked too."""

import logging
import time
from datetime import UTC

import pytest
import requests

from bitrix24 import client as b24
from bitrix24.client import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24MethodError,
    Bitrix24NeedsReinstall,
    Bitrix24OperationTimeLimit,
    Bitrix24RedirectRefused,
    Bitrix24TransientError,
    InstallationInactive,
    php_query,
)
from providers.models import Installation, InstallationState
from providers.services.portal_access import portal_client
from tests.bitrix24.stub import err, ok, stub_session

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.B24_RETRY_BACKOFF = 0.001
    settings.B24_MAX_RETRIES = 2
    settings.B24_OAUTH_URL = "https://oauth.test/oauth/token/"
    settings.REDIS_URL = ""  # the cache-backed limiter; its own tests cover Redis
    from django.core.cache import cache

    cache.clear()


@pytest.mark.parametrize(
    "status,code,cls",
    [
        (401, "NO_AUTH_FOUND", Bitrix24AuthError),
        (401, "authorization_error", Bitrix24AuthError),
        (401, "APPLICATION_NOT_FOUND", Bitrix24NeedsReinstall),
        (500, "PORTAL_DELETED", Bitrix24NeedsReinstall),
        (403, "ACCESS_DENIED", Bitrix24AccessDenied),
        (403, "insufficient_scope", Bitrix24AccessDenied),
        (401, "INSUFFICIENT_SCOPE", Bitrix24AccessDenied),
        (403, "INVALID_CREDENTIALS", Bitrix24AccessDenied),
        (403, "user_access_error", Bitrix24AccessDenied),
        (404, "ERROR_METHOD_NOT_FOUND", Bitrix24MethodError),
        (400, "ERROR_SENDER_ALREADY_INSTALLED", Bitrix24MethodError),
        (400, "ERROR_MESSAGE_NOT_FOUND", Bitrix24MethodError),
        (400, "INVALID_REQUEST", Bitrix24MethodError),
        (503, "QUERY_LIMIT_EXCEEDED", Bitrix24TransientError),
        (503, "OVERLOAD_LIMIT", Bitrix24TransientError),
        (500, "INTERNAL_SERVER_ERROR", Bitrix24TransientError),
        (502, "SOMETHING_NEW", Bitrix24TransientError),
        (429, "OPERATION_TIME_LIMIT", Bitrix24OperationTimeLimit),
    ],
)
def test_error_envelope_maps_to_typed_error(installation_factory, status, code, cls):
    inst = installation_factory()
    session, stub = stub_session(lambda seen: err(status, code, "described"))
    with pytest.raises(cls) as info:
        portal_client(inst, session=session).call("messageservice.sender.list")
    assert type(info.value) is cls
    assert info.value.error == code and info.value.description == "described" and info.value.http_status == status


def test_call_posts_json_with_auth_to_the_endpoint(installation_factory):
    inst = installation_factory(client_endpoint="https://acme.bitrix24.test/rest/", access_token="tok-1")
    session, stub = stub_session(lambda seen: ok(["p1", "p2"]))
    assert portal_client(inst, session=session).sender_list() == ["p1", "p2"]
    (seen,) = stub.seen
    assert seen.method == "POST" and seen.url == "https://acme.bitrix24.test/rest/messageservice.sender.list"
    assert seen.json == {"auth": "tok-1"}


def test_transient_errors_are_retried_with_backoff_then_raised(installation_factory):
    inst = installation_factory()
    session, stub = stub_session(lambda seen: err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
    stub.answer(*err(503, "QUERY_LIMIT_EXCEEDED")).answer(requests.ConnectionError("boom"))
    stub.answer(*ok(True))
    assert portal_client(inst, session=session).sender_delete("p1") is True
    assert len(stub.seen) == 3
    with pytest.raises(Bitrix24TransientError):
        portal_client(inst, session=session).sender_delete("p1")
    assert len(stub.seen) == 3 + 3  # 1 + B24_MAX_RETRIES


def test_overload_limit_is_not_hammered(installation_factory):
    inst = installation_factory()
    session, stub = stub_session(lambda seen: err(503, "OVERLOAD_LIMIT"))
    with pytest.raises(Bitrix24TransientError) as info:
        portal_client(inst, session=session).app_info()
    assert not info.value.retryable and len(stub.seen) == 1


def _oauth_or(rest_handler, oauth_answers):
    def handler(seen):
        if seen.path == "/oauth/token/":
            return oauth_answers.pop(0)
        return rest_handler(seen)

    return handler


def test_expired_token_refreshes_once_and_retries(installation_factory):
    inst = installation_factory(access_token="old-access", refresh_token="old-refresh")
    tokens = {"old-access": "expired", "new-access": "ok"}

    def rest(seen):
        return (
            ok(True)
            if tokens[seen.json["auth"]] == "ok"
            else err(401, "expired_token", "The access token provided has expired")
        )

    session, stub = stub_session(
        _oauth_or(
            rest,
            [
                (
                    200,
                    {
                        "access_token": "new-access",
                        "refresh_token": "new-refresh",
                        "expires": int(time.time()) + 3600,
                        "expires_in": 3600,
                        "client_endpoint": inst.client_endpoint,
                        "scope": "crm,messageservice",
                    },
                    {},
                )
            ],
        )
    )
    assert portal_client(inst, session=session).message_status_update("p1", "m" * 32, "delivered") is True
    assert [s.path.rsplit("/", 1)[-1] or s.path for s in stub.seen] == [
        "messageservice.message.status.update",
        "/oauth/token/",
        "messageservice.message.status.update",
    ]
    refresh = stub.seen[1]
    assert refresh.method == "GET" and refresh.query == {
        "grant_type": "refresh_token",
        "client_id": inst.application.client_id,
        "client_secret": inst.application.client_secret,
        "refresh_token": "old-refresh",
    }
    stored = Installation.objects.get(pk=inst.pk)
    assert (stored.access_token, stored.refresh_token) == ("new-access", "new-refresh")
    assert stored.access_token_expires_at.timestamp() > time.time() + 3500


def test_expired_again_after_refresh_is_an_auth_error(installation_factory):
    inst = installation_factory()
    session, stub = stub_session(
        _oauth_or(
            lambda s: err(401, "expired_token"),
            [(200, {"access_token": "a2", "refresh_token": "r2", "expires_in": 3600}, {})],
        )
    )
    with pytest.raises(Bitrix24AuthError) as info:
        portal_client(inst, session=session).app_info()
    assert info.value.error == "expired_token" and len(stub.seen) == 3


def test_invalid_grant_marks_needs_reinstall(installation_factory):
    inst = installation_factory()
    session, stub = stub_session(
        _oauth_or(
            lambda s: err(401, "invalid_token"),
            [(400, {"error": "invalid_grant", "error_description": "Invalid grant"}, {})],
        )
    )
    with pytest.raises(Bitrix24NeedsReinstall):
        portal_client(inst, session=session).app_info()
    stored = Installation.objects.get(pk=inst.pk)
    assert stored.state == InstallationState.NEEDS_REINSTALL and "invalid_grant" in stored.last_error
    with pytest.raises(InstallationInactive):
        portal_client(stored, session=session).app_info()
    assert len(stub.seen) == 2  # nothing sent for an inactive installation


def test_refresh_reuses_tokens_another_worker_rotated(installation_factory):
    inst = installation_factory(access_token="old-access")
    stale = Installation.objects.get(pk=inst.pk)
    Installation.objects.filter(pk=inst.pk).update(access_token="rotated", refresh_token="rotated-refresh")

    def rest(seen):
        return ok({"CODE": "x"}) if seen.json["auth"] == "rotated" else err(401, "expired_token")

    session, stub = stub_session(rest)
    assert portal_client(stale, session=session).app_info() == {"CODE": "x"}
    assert [s.path for s in stub.seen if "oauth" in s.path] == []
    assert stale.access_token == "rotated"


def test_secrets_never_logged_even_when_the_oauth_server_is_down(installation_factory, caplog):
    inst = installation_factory(access_token="SECRET-ACCESS", refresh_token="SECRET-REFRESH")
    session, stub = stub_session(
        _oauth_or(
            lambda s: err(401, "expired_token"),
            [
                (
                    requests.ConnectionError(
                        "https://oauth.test/oauth/token/?client_secret=" + inst.application.client_secret
                    ),
                    None,
                    {},
                )
            ]
            * 3,
        )
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Bitrix24TransientError) as info:
        portal_client(inst, session=session).app_info()
    text = caplog.text + str(info.value) + repr(info.value) + str(info.value.__cause__ or "")
    for secret in ("SECRET-ACCESS", "SECRET-REFRESH", inst.application.client_secret):
        assert secret not in text
    assert "app.info" in caplog.text and inst.domain in caplog.text


def test_redirect_is_reposted_and_new_domain_saved(installation_factory):
    inst = installation_factory(domain="old.bitrix24.test", client_endpoint="https://old.bitrix24.test/rest/")

    def rest(seen):
        if seen.url.startswith("https://old."):
            return 302, None, {"Location": "https://new.bitrix24.test/rest/app.info"}
        return ok({"CODE": "x"})

    session, stub = stub_session(rest)
    portal_client(inst, session=session).app_info()
    assert [(s.method, s.url, s.json) for s in stub.seen] == [
        ("POST", "https://old.bitrix24.test/rest/app.info", {"auth": inst.access_token}),
        ("POST", "https://new.bitrix24.test/rest/app.info", {"auth": inst.access_token}),
    ]
    stored = Installation.objects.get(pk=inst.pk)
    assert (stored.domain, stored.client_endpoint) == ("new.bitrix24.test", "https://new.bitrix24.test/rest/")


def test_redirect_within_the_allowed_domains_is_followed(installation_factory, settings):
    settings.B24_ALLOWED_PORTAL_DOMAINS = [".bitrix24.test"]
    settings.B24_REQUIRE_HTTPS = True
    inst = installation_factory(domain="old.bitrix24.test", client_endpoint="https://old.bitrix24.test/rest/")
    session, stub = stub_session(
        lambda seen: (
            (302, None, {"Location": "/rest/app.info"})
            if len(stub.seen) == 1
            else (302, None, {"Location": "https://new.bitrix24.test/rest/app.info"})
            if seen.url.startswith("https://old.")
            else ok({"CODE": "x"})
        )
    )
    assert portal_client(inst, session=session).app_info() == {"CODE": "x"}
    assert [s.url for s in stub.seen] == ["https://old.bitrix24.test/rest/app.info"] * 2 + [
        "https://new.bitrix24.test/rest/app.info"
    ]
    assert Installation.objects.get(pk=inst.pk).domain == "new.bitrix24.test"


@pytest.mark.parametrize(
    "allowed,https,location",
    [
        ([".bitrix24.test"], False, "https://evil.example/rest/app.info"),
        (["old.bitrix24.test"], False, "https://new.bitrix24.test/rest/app.info"),
        ([".bitrix24.test"], False, "https://evilbitrix24.test/rest/app.info"),
        ([], True, "http://new.bitrix24.test/rest/app.info"),
        ([], False, "https://user:pw@new.bitrix24.test/rest/app.info"),
        ([], False, "ftp://new.bitrix24.test/rest/app.info"),
    ],
)
def test_redirect_to_a_disallowed_address_is_refused_and_nothing_saved(
    installation_factory, settings, allowed, https, location
):
    settings.B24_ALLOWED_PORTAL_DOMAINS = allowed
    settings.B24_REQUIRE_HTTPS = https
    inst = installation_factory(
        domain="old.bitrix24.test", client_endpoint="https://old.bitrix24.test/rest/", access_token="SECRET-ACCESS"
    )
    session, stub = stub_session(lambda seen: (302, None, {"Location": location}))
    with pytest.raises(Bitrix24RedirectRefused) as info:
        portal_client(inst, session=session).app_info()
    assert [s.url for s in stub.seen] == ["https://old.bitrix24.test/rest/app.info"]  # nothing sent there
    assert info.value.error == "REDIRECT_REFUSED" and not isinstance(info.value, Bitrix24TransientError)
    assert "SECRET-ACCESS" not in str(info.value) + repr(info.value)
    stored = Installation.objects.get(pk=inst.pk)
    assert (stored.domain, stored.client_endpoint, stored.state) == (
        "old.bitrix24.test",
        "https://old.bitrix24.test/rest/",
        InstallationState.ACTIVE,
    )
    assert "redirect refused" in stored.last_error


def test_refresh_keeps_the_tokens_but_not_a_disallowed_client_endpoint(installation_factory, settings):
    settings.B24_ALLOWED_PORTAL_DOMAINS = [".bitrix24.test"]
    inst = installation_factory(
        domain="a.bitrix24.test", client_endpoint="https://a.bitrix24.test/rest/", access_token="old-access"
    )

    def rest(seen):
        return ok(True) if seen.json["auth"] == "new-access" else err(401, "expired_token")

    session, stub = stub_session(
        _oauth_or(
            rest,
            [
                (
                    200,
                    {
                        "access_token": "new-access",
                        "refresh_token": "new-refresh",
                        "expires_in": 3600,
                        "client_endpoint": "https://evil.example/rest/",
                    },
                    {},
                )
            ],
        )
    )
    assert portal_client(inst, session=session).app_info() is True
    assert stub.seen[-1].url == "https://a.bitrix24.test/rest/app.info"
    stored = Installation.objects.get(pk=inst.pk)
    assert (stored.access_token, stored.refresh_token) == ("new-access", "new-refresh")
    assert (stored.domain, stored.client_endpoint) == ("a.bitrix24.test", "https://a.bitrix24.test/rest/")


def test_operation_time_limit_pauses_the_method_for_all_clients(installation_factory):
    inst = installation_factory()
    reset_at = int(time.time()) + 120
    session, stub = stub_session(
        lambda seen: (
            (
                429,
                {
                    "error": "OPERATION_TIME_LIMIT",
                    "error_description": "blocked",
                    "time": {"operating_reset_at": reset_at},
                },
                {},
            )
            if seen.path.endswith("status.update")
            else ok(True)
        )
    )
    with pytest.raises(Bitrix24OperationTimeLimit) as info:
        portal_client(inst, session=session).message_status_update("p", "m1", "sent")
    assert int(info.value.reset_at.timestamp()) == reset_at
    other = portal_client(Installation.objects.get(pk=inst.pk), session=session)
    with pytest.raises(Bitrix24OperationTimeLimit):
        other.message_status_update("p", "m2", "sent")
    assert len(stub.seen) == 1  # the paused method makes no HTTP call
    assert other.app_info() is True  # other methods still go out
    assert len(stub.seen) == 2
    # the limit is per application: another application installed on the same portal is not paused
    second_app = installation_factory(
        member_id=inst.member_id, domain=inst.domain, client_endpoint=inst.client_endpoint
    )
    with pytest.raises(Bitrix24OperationTimeLimit):
        portal_client(second_app, session=session).message_status_update("p", "m3", "sent")
    assert len(stub.seen) == 3  # it made its call (and met the limit itself)


def test_batch_builds_url_encoded_commands_and_parses_both_map_shapes(installation_factory):
    inst = installation_factory()
    session, stub = stub_session()
    stub.answer(
        *ok(
            {
                "result": {"s1": True},
                "result_error": {"s2": {"error": "ERROR_MESSAGE_NOT_FOUND", "error_description": "Message not found!"}},
                "result_total": [],
                "result_next": [],
                "result_time": {},
            }
        )
    )
    stub.answer(*ok({"result": [], "result_error": [], "result_total": [], "result_next": [], "result_time": []}))
    stub.answer(*ok({"result": [True, True], "result_error": []}))
    client = portal_client(inst, session=session)
    out = client.batch(
        {
            "s1": ("messageservice.message.status.update", {"CODE": "p 1", "MESSAGE_ID": "a&b", "STATUS": "delivered"}),
            "s2": ("messageservice.sender.add", {"NAME": {"en": "A+B"}}),
        }
    )
    assert out.results == {"s1": True}
    assert isinstance(out.errors["s2"], Bitrix24MethodError) and out.errors["s2"].error == "ERROR_MESSAGE_NOT_FOUND"
    body = stub.seen[0].json
    assert body["halt"] == 0 and body["cmd"] == {
        "s1": "messageservice.message.status.update?CODE=p%201&MESSAGE_ID=a%26b&STATUS=delivered",
        "s2": "messageservice.sender.add?NAME[en]=A%2BB",
    }
    empty = client.batch({"x": ("app.info", {})}, halt=True)
    assert empty.results == {} and empty.errors == {} and stub.seen[1].json["halt"] == 1
    listed = client.batch({"0": ("app.info", {}), "1": ("app.info", {})})
    assert listed.results == {"0": True, "1": True}
    with pytest.raises(ValueError):
        client.batch({str(i): ("app.info", {}) for i in range(51)})


def test_php_query_encodes_nested_values():
    assert (
        php_query({"NAME": {"en": "a b", "de": "ü"}, "L": [1, 2], "F": True, "N": None})
        == "NAME[en]=a%20b&NAME[de]=%C3%BC&L[0]=1&L[1]=2&F=1"
    )


def test_errors_survive_pickling():
    import pickle
    from datetime import datetime

    when = datetime(2030, 1, 1, tzinfo=UTC)
    error = Bitrix24OperationTimeLimit("OPERATION_TIME_LIMIT", "blocked", reset_at=when, http_status=429, method="m")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is Bitrix24OperationTimeLimit and copy.reset_at == when and copy.method == "m"
    assert str(copy) == str(error) and not copy.retryable


def test_a_full_local_bucket_gives_up_after_the_timeout_without_calling(installation_factory, settings):
    settings.B24_TIMEOUT = 0.2
    inst = installation_factory(rate_limit_burst=3, rate_limit_drain_per_second=0.01)
    session, stub = stub_session(lambda seen: ok(True))
    client = portal_client(inst, session=session)
    with pytest.raises(Bitrix24TransientError) as info:
        for _ in range(5):
            client.app_info()
    assert info.value.error == "QUERY_LIMIT_EXCEEDED" and not info.value.retryable
    assert 1 <= len(stub.seen) <= 2  # burst 3 minus headroom and slot margin; never more than the bucket holds


def test_a_batch_of_a_paused_method_is_not_sent_and_reads_the_pause_once(installation_factory, monkeypatch):
    inst = installation_factory()
    reset_at = int(time.time()) + 120
    limit = {"error": "OPERATION_TIME_LIMIT", "error_description": "blocked", "time": {"operating_reset_at": reset_at}}
    session, stub = stub_session(lambda seen: (429, limit, {}) if seen.path.endswith("status.update") else ok(True))
    client = portal_client(inst, session=session)
    with pytest.raises(Bitrix24OperationTimeLimit):
        client.message_status_update("p", "m1", "sent")
    reads = []
    real_get = b24.cache.get
    monkeypatch.setattr(b24.cache, "get", lambda key, *a, **kw: reads.append(key) or real_get(key, *a, **kw))
    out = client.batch(
        {
            f"r{n}": (
                "messageservice.message.status.update",
                {"CODE": "p", "MESSAGE_ID": f"m{n}", "STATUS": "delivered"},
            )
            for n in range(50)
        }
    )
    assert sorted(out.errors) == sorted(f"r{n}" for n in range(50))
    assert all(isinstance(error, Bitrix24OperationTimeLimit) for error in out.errors.values())
    assert len(stub.seen) == 1  # the batch made no HTTP call
    assert len(reads) == 1  # one look at the pause for fifty commands of one method
