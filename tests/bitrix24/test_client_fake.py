"""Bitrix24Client (with an Installation's token store) against the fake portal over real HTTP: tokens, renames,
limits, batch."""

import logging
import time

import pytest

from bitrix24.client import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24MethodError,
    Bitrix24NeedsReinstall,
    Bitrix24OperationTimeLimit,
    Bitrix24RedirectRefused,
    Bitrix24TransientError,
    InstallationInactive,
    oauth_token_refresh,
)
from providers.models import Installation, InstallationState
from providers.services.portal_access import installation_tokens_refresh, portal_client
from tests.concurrency import run_together


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.B24_RETRY_BACKOFF = 0.01
    settings.B24_MAX_RETRIES = 3


@pytest.fixture
def portal(bitrix24):
    return bitrix24.add_portal(client_id="local.abc123.456", client_secret="app-secret-xyz")


@pytest.mark.django_db
def test_register_a_provider_and_report_statuses(bitrix24, portal, installation_factory):
    client = portal_client(installation_factory(portal))
    handler = "https://sms.example.com/b24/handler/s3cret/"
    assert client.sender_add("acme", handler, {"en": "Acme SMS", "ru": "Акме"}, "Gateway") is True
    with pytest.raises(Bitrix24MethodError) as info:
        client.sender_add("acme", handler, "Acme SMS")
    assert info.value.error == "ERROR_SENDER_ALREADY_INSTALLED"
    assert client.sender_update("acme", name="Acme 2") is True
    assert client.sender_list() == ["acme"]
    assert portal.providers["acme"]["NAME"] == {"": "Acme 2"}
    message_id = bitrix24.record_message(portal, "acme")
    assert client.message_status_update("acme", message_id, "delivered") is True
    assert portal.message_statuses[message_id] == ["delivered"]
    assert client.app_info()["CODE"] == "local.abc123.456"
    assert client.sender_delete("acme") is True and client.sender_list() == []


@pytest.mark.django_db
def test_expired_token_is_refreshed_once_then_the_call_retried(bitrix24, portal, installation_factory):
    inst = installation_factory(portal)
    old_refresh = inst.refresh_token
    bitrix24.expire_access_tokens(portal)
    assert portal_client(inst).sender_list() == []
    assert bitrix24.refresh_count == 1
    stored = Installation.objects.get(pk=inst.pk)
    assert stored.access_token == portal.admin_access_token and stored.refresh_token == portal.admin_refresh_token
    assert stored.refresh_token != old_refresh  # rotated, stored with the new access token
    assert [c[0] for c in portal.calls] == ["messageservice.sender.list"] * 2


@pytest.mark.integration  # SQLite's in-memory test database cannot take concurrent writers
@pytest.mark.django_db(transaction=True)
def test_two_threads_with_an_expired_token_refresh_only_once(bitrix24, portal, installation_factory):
    inst = installation_factory(portal)
    bitrix24.expire_access_tokens(portal)
    bitrix24.oauth_delay = 0.3
    clients = [portal_client(Installation.objects.get(pk=inst.pk)) for _ in range(2)]  # both hold the expired token
    results = run_together(lambda: clients.pop().app_info()["CODE"])
    assert results == ["local.abc123.456"] * 2
    assert bitrix24.refresh_count == 1
    assert len(bitrix24.oauth_requests) == 1


@pytest.mark.django_db
def test_reused_refresh_token_means_reinstall(bitrix24, portal, installation_factory):
    inst = installation_factory(portal)
    bitrix24.revoke_refresh_tokens(portal)
    bitrix24.expire_access_tokens(portal)
    with pytest.raises(Bitrix24NeedsReinstall) as info:
        portal_client(inst).app_info()
    assert info.value.error == "invalid_grant"
    stored = Installation.objects.get(pk=inst.pk)
    assert stored.state == InstallationState.NEEDS_REINSTALL and stored.last_error
    calls = len(portal.calls)
    with pytest.raises(InstallationInactive):
        portal_client(stored).app_info()
    assert len(portal.calls) == calls


@pytest.mark.django_db
def test_unknown_token_refreshes_and_a_wrong_secret_is_an_auth_error(bitrix24, portal, installation_factory):
    inst = installation_factory(portal, access_token="not-a-token")
    assert portal_client(inst).app_info()["INSTALLED"] is True  # invalid_token -> refresh -> retry
    inst.application.client_secret = "wrong"
    inst.application.save()
    inst = Installation.objects.select_related("application").get(pk=inst.pk)
    bitrix24.expire_access_tokens(portal)
    with pytest.raises(Bitrix24AuthError) as info:
        portal_client(inst).app_info()
    assert info.value.error == "invalid_client"
    assert Installation.objects.get(pk=inst.pk).state == InstallationState.ACTIVE


@pytest.mark.django_db
def test_refresh_is_skipped_when_another_worker_rotated_the_tokens(bitrix24, portal, installation_factory):
    inst = installation_factory(portal)
    first = Installation.objects.get(pk=inst.pk)
    installation_tokens_refresh(first)
    assert bitrix24.refresh_count == 1
    installation_tokens_refresh(inst)  # inst still holds the old access token: the stored pair is reused
    assert bitrix24.refresh_count == 1 and inst.access_token == first.access_token


@pytest.mark.django_db
def test_renamed_portal_is_followed_with_post_and_saved(bitrix24, portal, installation_factory):
    inst = installation_factory(portal)
    old_endpoint = inst.client_endpoint
    bitrix24.rename_portal(portal)
    assert portal_client(inst).sender_add("p1", "https://h.example.com/x", "P1") is True
    assert "p1" in portal.providers  # the POST body arrived at the new address
    redirected = [r for r in bitrix24.requests if r.status == 302]
    assert len(redirected) == 1 and redirected[0].http_method == "POST"
    stored = Installation.objects.get(pk=inst.pk)
    assert stored.client_endpoint == portal.client_endpoint != old_endpoint
    assert stored.domain == portal.domain
    portal_client(stored).sender_list()
    assert len([r for r in bitrix24.requests if r.status == 302]) == 1  # the new address is used directly


@pytest.mark.django_db
def test_renamed_portal_to_a_refused_address_is_not_followed(bitrix24, portal, installation_factory, settings):
    inst = installation_factory(portal)
    old = (inst.domain, inst.client_endpoint)
    bitrix24.rename_portal(portal)
    settings.B24_REQUIRE_HTTPS = True  # the fake's new address is http
    with pytest.raises(Bitrix24RedirectRefused) as info:
        portal_client(inst).sender_add("p1", "https://h.example.com/x", "P1")
    assert "https" in str(info.value)
    assert [r.status for r in bitrix24.requests] == [302] and portal.providers == {}  # nothing reached the new host
    stored = Installation.objects.get(pk=inst.pk)
    assert (stored.domain, stored.client_endpoint) == old and "redirect refused" in stored.last_error


@pytest.mark.django_db
def test_tokens_and_secret_stay_out_of_logs_errors_and_reprs(bitrix24, portal, installation_factory, caplog):
    """Every way a token could leak, over real HTTP: refresh, rotation, invalid_grant, network errors."""
    caplog.set_level(logging.DEBUG)
    inst = installation_factory(portal)
    secrets = {portal.admin_access_token, portal.admin_refresh_token, portal.client_secret}
    texts = []
    bitrix24.expire_access_tokens(portal)
    client = portal_client(inst)
    client.app_info()  # refreshed and retried
    secrets |= {inst.access_token, inst.refresh_token}
    texts += [repr(client), repr(inst), str(inst)]
    bitrix24.expire_access_tokens(portal)
    bitrix24.revoke_refresh_tokens(portal)
    with pytest.raises(Bitrix24NeedsReinstall) as reinstall:
        client.app_info()
    stopped = installation_factory(
        portal,
        member_id="other",
        client_endpoint="http://127.0.0.1:9/rest/",
        access_token="SECRET-A",
        refresh_token="SECRET-R",
    )
    secrets |= {"SECRET-A", "SECRET-R"}
    with pytest.raises(Bitrix24TransientError) as network:
        portal_client(stopped).app_info()
    for exc in (reinstall.value, network.value):
        texts += [str(exc), repr(exc), str(exc.__cause__ or ""), str(exc.__context__ or "")]
    texts += [caplog.text, Installation.objects.get(pk=inst.pk).last_error]
    text = "\n".join(texts)
    assert "app.info" in caplog.text and "oauth.refresh" in caplog.text
    leaked = [secret for secret in secrets if secret in text]
    assert leaked == []


@pytest.mark.django_db
def test_query_limit_exceeded_is_retried(bitrix24, portal, installation_factory):
    inst = installation_factory(portal)
    bitrix24.fail_next(2)
    assert portal_client(inst).sender_list() == []
    assert [r.status for r in bitrix24.requests] == [503, 503, 200]
    bitrix24.fail_next(10, error="INTERNAL_SERVER_ERROR", status=500)
    with pytest.raises(Bitrix24TransientError):
        portal_client(inst).sender_list()


@pytest.mark.django_db
def test_client_limiter_keeps_under_the_portal_bucket(bitrix24, portal, installation_factory, settings):
    # The portal's bucket holds one request more than ours: 0.1 s of network jitter on a loaded machine
    # (two requests reaching it closer together than we sent them) is tolerated. Without the client's
    # limiter the fifteen calls would be refused from the seventh on.
    bitrix24.set_rate_limit(burst=6, drain_per_second=10.0)
    inst = installation_factory(portal, rate_limit_burst=5, rate_limit_drain_per_second=10.0)
    client = portal_client(inst)
    started = time.monotonic()
    for _ in range(15):
        client.app_info()
    assert all(r.status == 200 for r in bitrix24.requests)  # never a QUERY_LIMIT_EXCEEDED
    assert time.monotonic() - started >= (15 - 5) / 10.0 - 0.01


@pytest.mark.django_db
def test_operation_time_limit_pauses_the_method(bitrix24, portal, installation_factory):
    inst = installation_factory(portal)
    bitrix24.set_operation_time_limit("messageservice.sender.list", reset_in=30)
    client = portal_client(inst)
    with pytest.raises(Bitrix24OperationTimeLimit) as info:
        client.sender_list()
    assert info.value.reset_at.timestamp() > time.time() + 25
    sent = len(portal.calls)
    with pytest.raises(Bitrix24OperationTimeLimit):
        portal_client(Installation.objects.get(pk=inst.pk)).sender_list()
    assert len(portal.calls) == sent  # paused: no HTTP call
    assert client.app_info()["INSTALLED"] is True  # other methods are not paused


@pytest.mark.django_db
def test_batch_of_status_updates(bitrix24, portal, installation_factory):
    client = portal_client(installation_factory(portal))
    client.sender_add("acme", "https://h.example.com/x", "Acme")
    ids = [bitrix24.record_message(portal, "acme") for _ in range(2)]
    out = client.batch(
        {
            "a": (
                "messageservice.message.status.update",
                {"CODE": "acme", "MESSAGE_ID": ids[0], "STATUS": "delivered"},
            ),
            "b": ("messageservice.message.status.update", {"CODE": "acme", "MESSAGE_ID": "nope", "STATUS": "failed"}),
            "c": (
                "messageservice.message.status.update",
                {"CODE": "acme", "MESSAGE_ID": ids[1], "STATUS": "undelivered"},
            ),
        }
    )
    assert out.results == {"a": True, "c": True}
    assert isinstance(out.errors["b"], Bitrix24MethodError) and out.errors["b"].error == "ERROR_MESSAGE_NOT_FOUND"
    assert portal.message_statuses == {ids[0]: ["delivered"], ids[1]: ["undelivered"]}
    empty = client.batch(
        {"x": ("messageservice.message.status.update", {"CODE": "acme", "MESSAGE_ID": "x", "STATUS": "sent"})}
    )
    assert empty.results == {} and set(empty.errors) == {"x"}  # the fake answered "result": []


@pytest.mark.django_db
def test_access_errors_from_the_portal(bitrix24, portal, installation_factory):
    inst = installation_factory(portal, access_token=bitrix24.user_token(portal, 7))
    with pytest.raises(Bitrix24AccessDenied) as info:
        portal_client(inst).sender_list()
    assert info.value.error == "ACCESS_DENIED" and info.value.http_status == 403
    inst.access_token = portal.admin_access_token
    bitrix24.set_scope(portal, "crm")
    with pytest.raises(Bitrix24AccessDenied) as info:
        portal_client(inst).sender_list()
    assert info.value.error == "insufficient_scope"


def test_the_oauth_server_says_whose_a_refresh_token_is(bitrix24, portal):
    first = portal.admin_refresh_token
    answer = oauth_token_refresh(client_id=portal.client_id, client_secret=portal.client_secret, refresh_token=first)
    assert (answer["member_id"], answer["client_endpoint"]) == (portal.member_id, portal.client_endpoint)
    for used_or_forged in (first, "forged"):  # each refresh token works once; a made-up one never
        with pytest.raises(Bitrix24NeedsReinstall):
            oauth_token_refresh(
                client_id=portal.client_id, client_secret=portal.client_secret, refresh_token=used_or_forged
            )
    with pytest.raises(Bitrix24AuthError) as info:
        oauth_token_refresh(client_id=portal.client_id, client_secret="wrong", refresh_token=answer["refresh_token"])
    assert info.value.error == "invalid_client"


WORKER_SCRIPT = """
import json, sys
import django
django.setup()
from providers.models import Installation
from providers.services.portal_access import portal_client
client = portal_client(Installation.objects.select_related("application").get(pk=int(sys.argv[1])))
print("ready", flush=True)
sys.stdin.readline()  # both processes hold the expired token before either calls
print(json.dumps(client.app_info()), flush=True)
"""


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_with_an_expired_token_refresh_only_once(bitrix24, portal, installation_factory):
    """The row lock (select_for_update) is what serialises refreshes across processes."""
    import json
    import os
    import subprocess
    import sys

    from django.conf import settings
    from django.db import connection

    from tests.fixtures.worker import ROOT, _database_url

    inst = installation_factory(portal)
    bitrix24.expire_access_tokens(portal)
    bitrix24.oauth_delay = 0.5
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "b24sms.settings.test",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "B24_OAUTH_URL": bitrix24.oauth_url,
        "LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, str(inst.pk)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:  # however slowly a loaded machine starts them
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:] if proc.poll() is not None else ""
    for proc in procs:  # released together: the two refreshes race for the row lock
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=False):
        assert proc.returncode == 0, err[-2000:]
        assert json.loads(out.strip().splitlines()[-1])["CODE"] == portal.client_id
    assert bitrix24.refresh_count == 1 and len(bitrix24.oauth_requests) == 1
    expired_answers = [r for r in bitrix24.requests if r.status == 401]
    assert len(expired_answers) == 2  # both processes met expired_token; only one refreshed
    stored = Installation.objects.get(pk=inst.pk)
    assert stored.access_token == portal.admin_access_token
    assert settings.B24_OAUTH_URL == bitrix24.oauth_url
