"""The Bitrix24 client with a token store of its own (bitrix24/tokens.py): no model involved.

What the client asks of a store and tells it: the tokens to call with, a refresh (the grant it got from
the OAuth server, or nothing when another worker rotated the tokens first), the address of a renamed
portal, and the errors its owner must see.
"""

import time
from dataclasses import replace

import pytest

from bitrix24.client import Bitrix24Client, Bitrix24NeedsReinstall, Bitrix24RedirectRefused, InstallationInactive
from bitrix24.tokens import PortalAccess, RefreshCredentials
from tests.bitrix24.stub import err, ok, stub_session

pytestmark = pytest.mark.django_db  # the rate limiter and the method pauses use the cache (a database table here)


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.B24_RETRY_BACKOFF = 0.001
    settings.B24_MAX_RETRIES = 2
    settings.B24_OAUTH_URL = "https://oauth.test/oauth/token/"
    settings.B24_ALLOWED_PORTAL_DOMAINS = [".bitrix24.test"]
    settings.REDIS_URL = ""
    from django.core.cache import cache

    cache.clear()


class MemoryStore:
    """A token store in memory, recording what the client told it."""

    def __init__(self, **access):
        self.access = PortalAccess(
            **{
                "key": f"memory-{time.monotonic_ns()}",
                "domain": "acme.bitrix24.test",
                "client_endpoint": "https://acme.bitrix24.test/rest/",
                "access_token": "old-access",
                "rate_limit_key": f"memory-{time.monotonic_ns()}",
                "rate_limit_burst": 50,
                "rate_limit_drain_per_second": 2.0,
                **access,
            }
        )
        self.refresh_token = "old-refresh"
        self.grants, self.moves, self.failures, self.refreshes = [], [], [], []

    def load(self):
        return self.access

    def refresh(self, *, failed_access_token, exchange):
        self.refreshes.append(failed_access_token)
        if self.access.access_token != failed_access_token:
            return  # rotated meanwhile
        grant = exchange(
            RefreshCredentials(
                client_id="app.1",
                client_secret="app-secret",
                refresh_token=self.refresh_token,
                domain=self.access.domain,
                client_endpoint=self.access.client_endpoint,
            )
        )
        self.grants.append(grant)
        self.access = replace(self.access, access_token=grant.access_token)

    def endpoint_moved(self, *, client_endpoint, domain):
        self.moves.append((client_endpoint, domain))
        self.access = replace(self.access, client_endpoint=client_endpoint, domain=domain)

    def call_failed(self, error):
        self.failures.append(error)


def test_an_expired_token_is_rotated_through_the_store_and_the_call_retried():
    store = MemoryStore()

    def answer(seen):
        if seen.path == "/oauth/token/":
            assert seen.query["refresh_token"] == "old-refresh" and seen.query["client_secret"] == "app-secret"
            return (
                200,
                {
                    "access_token": "new-access",
                    "refresh_token": "new-refresh",
                    "expires_in": 3600,
                    "client_endpoint": "https://acme.bitrix24.test/rest/",
                    "scope": "crm",
                },
                {},
            )
        return ok(True) if seen.json["auth"] == "new-access" else err(401, "expired_token")

    session, stub = stub_session(answer)
    assert Bitrix24Client(store, session=session).app_info() is True
    assert store.refreshes == ["old-access"]
    [grant] = store.grants
    assert (grant.access_token, grant.refresh_token, grant.scope) == ("new-access", "new-refresh", "crm")
    assert grant.client_endpoint is None  # the same address: nothing to change
    assert grant.expires_at.timestamp() > time.time() + 3500
    assert len(stub.seen) == 3


def test_a_renamed_portal_is_handed_to_the_store_and_a_refused_redirect_reported():
    store = MemoryStore()

    def answer(seen):
        if seen.url.startswith("https://acme."):
            return 302, None, {"Location": "https://acme2.bitrix24.test/rest/app.info"}
        if seen.url.startswith("https://acme2."):
            return 302, None, {"Location": "https://evil.example.com/rest/app.info"}
        raise AssertionError(seen.url)

    session, _stub = stub_session(answer)
    with pytest.raises(Bitrix24RedirectRefused):
        Bitrix24Client(store, session=session).app_info()
    assert store.moves == [("https://acme2.bitrix24.test/rest/", "acme2.bitrix24.test")]
    assert [type(error) for error in store.failures] == [Bitrix24RedirectRefused]


def test_an_application_gone_from_the_portal_is_reported_to_the_store_and_raised():
    store = MemoryStore()
    session, _stub = stub_session(lambda seen: err(401, "APPLICATION_NOT_FOUND"))
    with pytest.raises(Bitrix24NeedsReinstall):
        Bitrix24Client(store, session=session).app_info()
    assert [error.error for error in store.failures] == ["APPLICATION_NOT_FOUND"]


def test_an_inactive_portal_is_never_called():
    store = MemoryStore(inactive="acme.bitrix24.test is Removed")
    session, stub = stub_session(lambda seen: ok(True))
    with pytest.raises(InstallationInactive) as info:
        Bitrix24Client(store, session=session).app_info()
    assert info.value.description == "acme.bitrix24.test is Removed" and stub.seen == []
