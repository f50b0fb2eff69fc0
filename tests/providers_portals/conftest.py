"""Unit-test fixtures: the Bitrix24 client replaced at its boundary by a scripted portal.

``portal`` stands in for ``bitrix24.client`` (``portal_client(installation).call`` and the OAuth
server's ``oauth_token_refresh``): it keeps providers per installation like Bitrix24 does, answers
with the contract's error codes, refuses every call to an inactive installation
(InstallationInactive), and lets a test script failures with ``portal.fail(method, exc)``
(``"oauth.refresh"`` for the OAuth server). ``portal.legacy = True``: ``sender.update`` is an unknown
method, as on portals before April 2026. Like the real OAuth server it accepts each refresh
token once, only with the client_id it was issued to, and answers with the portal's member_id and
client_endpoint (``portal.member_id``, ``portal.client_endpoint``), whatever the request said.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from bitrix24.client import Bitrix24AuthError, Bitrix24MethodError, Bitrix24NeedsReinstall, InstallationInactive
from providers.models import BitrixApplication, Installation, Provider, RegistrationState
from sendernames.models import SenderNameApplication

CLIENT_ID = "local.65f0a1b2c3d4e5.12345678"
CLIENT_SECRET = "s3cr3t-client-secret-value"
MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"


class ScriptedPortal:
    def __init__(self):
        self.app_code = CLIENT_ID  # the application the portal's refresh tokens were issued to
        self.member_id = MEMBER_ID
        self.client_endpoint = "https://acme.bitrix24.ru/rest/"
        self.expires = 1900000000
        self.used_refresh_tokens = set()
        self.calls = []  # (member_id or endpoint, method, params)
        self.providers = {}  # installation id -> {code: params}
        self.bindings = {}  # installation id -> [(event, handler)]
        self.failures = {}  # method -> [exceptions to raise, in order]
        self.rebind_fails = False
        self.legacy = False  # sender.update unknown (404 ERROR_METHOD_NOT_FOUND)

    def fail(self, method, exc, times=1):
        self.failures.setdefault(method, []).extend([exc] * times)

    def _maybe_fail(self, method):
        queue = self.failures.get(method)
        if queue:
            raise queue.pop(0)

    # oauth_token_refresh(client_id=, client_secret=, refresh_token=, domain=, session=)
    def oauth_token_refresh(self, *, client_id, client_secret, refresh_token, domain="", session=None):
        self.calls.append(("oauth", "oauth.refresh", {"client_id": client_id, "refresh_token": refresh_token}))
        self._maybe_fail("oauth.refresh")
        if client_secret != CLIENT_SECRET and client_id == CLIENT_ID:
            raise Bitrix24AuthError("invalid_client", "Invalid client credentials", http_status=401)
        if (
            client_id != self.app_code
            or not refresh_token.startswith("refresh-")
            or refresh_token in self.used_refresh_tokens
        ):
            raise Bitrix24NeedsReinstall("invalid_grant", "Invalid grant", http_status=400)
        self.used_refresh_tokens.add(refresh_token)
        return {
            "access_token": "admin-access-token",
            "refresh_token": f"rotated-{refresh_token}",
            "expires": self.expires,
            "expires_in": 3600,
            "member_id": self.member_id,
            "client_endpoint": self.client_endpoint,
            "server_endpoint": "https://oauth.bitrix.info/rest/",
            "domain": "oauth.bitrix.info",
            "scope": "crm,messageservice",
            "status": "L",
            "user_id": 1,
        }

    def client(self, installation):
        return _Client(self, installation)


class _Client:
    def __init__(self, portal, installation):
        self.portal, self.installation = portal, installation

    def call(self, method, params=None):
        params = params or {}
        installation = Installation.objects.get(pk=self.installation.pk)
        if not installation.is_active:
            raise InstallationInactive("INSTALLATION_INACTIVE", "removed")
        portal = self.portal
        portal.calls.append((installation.member_id, method, params))
        portal._maybe_fail(method)
        providers = portal.providers.setdefault(installation.pk, {})
        if method == "messageservice.sender.add":
            if params["CODE"] in providers:
                raise Bitrix24MethodError("ERROR_SENDER_ALREADY_INSTALLED", "Sender already installed!")
            providers[params["CODE"]] = dict(params)
            return True
        if method == "messageservice.sender.update":
            if portal.legacy:
                raise Bitrix24MethodError("ERROR_METHOD_NOT_FOUND", "Method not found!", http_status=404)
            if params["CODE"] not in providers:
                raise Bitrix24MethodError("ERROR_SENDER_NOT_FOUND", "Sender not found!")
            providers[params["CODE"]].update(params)
            return True
        if method == "messageservice.sender.delete":
            if providers.pop(params["CODE"], None) is None:
                raise Bitrix24MethodError("ERROR_SENDER_NOT_FOUND", "Sender not found!")
            return True
        if method == "messageservice.sender.list":
            return list(providers)
        bindings = portal.bindings.setdefault(installation.pk, [])
        if method == "event.bind":
            binding = (params["event"], params["handler"])
            if binding in bindings and portal.rebind_fails:
                raise Bitrix24MethodError("ERROR_CORE", "Handler already bound")
            if binding not in bindings:
                bindings.append(binding)
            return True
        if method == "event.get":
            return [{"event": e, "handler": h, "auth_type": "0", "offline": 0} for e, h in bindings]
        raise AssertionError(f"unexpected method {method}")

    def calls_of(self, method):
        return [c for c in self.portal.calls if c[1] == method]


@pytest.fixture
def portal(monkeypatch):
    scripted = ScriptedPortal()
    monkeypatch.setattr("providers.services.installations.oauth_token_refresh", scripted.oauth_token_refresh)
    monkeypatch.setattr("providers.services.installations.portal_client", scripted.client)
    monkeypatch.setattr("providers.services.registration.portal_client", scripted.client)
    return scripted


@pytest.fixture
def public_base_url(settings):
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    return settings.PUBLIC_BASE_URL


@pytest.fixture
def application(db, settings):
    settings.B24_CLIENT_ID = CLIENT_ID
    settings.B24_CLIENT_SECRET = CLIENT_SECRET
    from providers.services.installations import application_sync_default

    return application_sync_default()


@pytest.fixture
def make_installation(db, application):
    counter = {"n": 0}

    def make(**overrides):
        counter["n"] += 1
        n = counter["n"]
        values = {
            "application": application,
            "member_id": f"member{n:028d}",
            "domain": f"portal{n}.bitrix24.ru",
            "client_endpoint": f"https://portal{n}.bitrix24.ru/rest/",
            "access_token": "admin-access-token",
            "refresh_token": f"refresh-{n}",
            "application_token": f"app-token-{n}",
            "access_token_expires_at": timezone.now() + timedelta(hours=1),
            "installed_at": timezone.now(),
        }
        values.update(overrides)
        return Installation.objects.create(**values)

    return make


@pytest.fixture
def approved_sender_name(db):
    from idgtl.services import account_get_default

    return SenderNameApplication.objects.create(
        account=account_get_default(),
        common_type="SERVICE",
        brand="MTS",
        sender_name="ACMESHOP",
        counteragent_name="ООО Акме",
        counteragent_inn="7707083893",
        status="APPROVED",
        date_from=timezone.now() - timedelta(days=1),
        submission_state="submitted",
        remote_id=101,
    )


@pytest.fixture
def other_application(db):
    return BitrixApplication.objects.create(
        name="market", client_id="app.market.0001", client_secret="market-secret-xyz"
    )


@pytest.fixture
def five_providers_on_five_portals(make_installation):
    """25 registrations: enough rows for an N+1 query to show in a query count."""
    installations = [make_installation() for _ in range(5)]
    for n in range(5):
        provider = Provider.objects.create(code=f"p{n}", name=f"P{n}", sender_name="OUTSIDE")
        for installation in installations:
            provider.registrations.create(installation=installation, state=RegistrationState.REGISTERED)
    return installations
