"""The install endpoint under attack, against the fake Bitrix24 (OAuth server and portals) over real HTTP.

Each test plays one attacker of issue 14 and fails on the code that believed the request:
an impostor server that answers ``app.info`` perfectly, a URL that two parsers read differently,
a portal address inside our network, a slow server, a flood of install requests.
"""

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest

from bitrix24.client import Bitrix24AddressRefused, Bitrix24RedirectRefused
from bitrix24.urls import portal_url_refusal
from providers.models import BitrixApplication, Installation, InstallationState
from providers.services.portal_access import portal_client

pytestmark = pytest.mark.django_db

CLIENT_ID = "local.6a1b2c3d4e5f60.11223344"
CLIENT_SECRET = "real-client-secret-of-b24sms"
FORM = "application/x-www-form-urlencoded"


class Impostor:
    """A server that plays a Bitrix24 portal perfectly: app.info names our client_id, every call succeeds."""

    def __init__(self, delay: float = 0.0):
        self.requests: list[str] = []
        self.delay = delay
        impostor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                impostor.requests.append(self.path)
                if impostor.delay:
                    time.sleep(impostor.delay)
                method = self.path.rstrip("/").rsplit("/", 1)[-1]
                result = (
                    {"ID": "1", "CODE": CLIENT_ID, "VERSION": 1, "STATUS": "L", "INSTALLED": True}
                    if method == "app.info"
                    else True
                )
                body = json.dumps({"result": result, "time": {}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.netloc = f"127.0.0.1:{self.server.server_address[1]}"
        self.endpoint = f"http://{self.netloc}/rest/"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def impostor():
    server = Impostor()
    yield server
    server.stop()


@pytest.fixture
def application(db, settings, bitrix24):
    settings.B24_CLIENT_ID, settings.B24_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    settings.B24_RETRY_BACKOFF = 0.01
    from providers.services.installations import application_sync_default

    return application_sync_default()


@pytest.fixture
def victim(bitrix24, application):
    return bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


def post_install(client, bitrix24, portal, **overrides):
    query, pairs = bitrix24.install_form(portal)
    form = dict(pairs)
    form.update(overrides)
    return client.post("/b24/install/" + (f"?{query}" if query else ""), urlencode(form), content_type=FORM)


@pytest.fixture
def installed_victim(client, bitrix24, victim):
    response = post_install(client, bitrix24, victim)
    assert response.status_code == 200, response.content
    assert response.json()["result"] == "installed"
    return Installation.objects.get(member_id=victim.member_id)


def test_the_real_portal_installs_with_what_the_oauth_server_says(client, bitrix24, victim):
    response = post_install(client, bitrix24, victim)

    assert response.status_code == 200, response.content
    installation = Installation.objects.get()
    assert installation.client_endpoint == victim.client_endpoint
    assert installation.refresh_token == victim.admin_refresh_token  # rotated at the OAuth server
    assert installation.state == InstallationState.ACTIVE
    assert [b["event"] for b in victim.event_bindings] == ["ONAPPUNINSTALL", "ONAPPUPDATE"]


def test_an_impostor_answering_app_info_cannot_take_over_a_portal(client, bitrix24, victim, installed_victim, impostor):
    """member_id and client_id are public; the impostor names its own server as the portal's endpoint."""
    before = Installation.objects.values().get()

    response = post_install(
        client,
        bitrix24,
        victim,
        **{
            "auth[domain]": impostor.netloc,
            "auth[client_endpoint]": impostor.endpoint,
            "auth[access_token]": "impostor-access",
            "auth[refresh_token]": "impostor-refresh",
            "auth[application_token]": "impostor-app-token",
        },
    )

    assert response.status_code == 403, response.content
    assert impostor.requests == []  # never called: not app.info, not event.bind
    assert Installation.objects.values().get() == before
    # the real portal keeps working with what was stored
    with portal_client(Installation.objects.get()) as b24:
        assert b24.call("event.get")
    assert all(b["handler"].startswith("https://sms.example.com/") for b in victim.event_bindings)


def test_an_impostor_with_real_tokens_of_its_own_portal_is_refused(
    client, bitrix24, victim, installed_victim, impostor
):
    """The attacker installs our (public) application on a portal of its own, then claims the victim's member_id."""
    attacker = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    query, pairs = bitrix24.install_form(attacker)
    form = dict(pairs)
    form.update(
        {
            "auth[member_id]": victim.member_id,
            "auth[domain]": impostor.netloc,
            "auth[client_endpoint]": impostor.endpoint,
        }
    )
    before = Installation.objects.values().get()

    response = client.post("/b24/install/", urlencode(form), content_type=FORM)

    assert response.status_code == 403
    assert "another portal" in response.json()["detail"]
    assert Installation.objects.values().get() == before
    assert impostor.requests == [] and list(attacker.calls) == []


def test_an_impostor_cannot_plant_a_new_active_portal(client, bitrix24, victim, impostor):
    response = client.post(
        "/b24/install/",
        urlencode(
            {
                "event": "ONAPPINSTALL",
                "auth[access_token]": "a",
                "auth[refresh_token]": "r",
                "auth[expires_in]": "3600",
                "auth[domain]": impostor.netloc,
                "auth[client_endpoint]": impostor.endpoint,
                "auth[member_id]": "f" * 32,
                "auth[application_token]": "t",
            }
        ),
        content_type=FORM,
    )

    assert response.status_code == 403
    assert not Installation.objects.exists()
    assert impostor.requests == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://evil.example\\@acme.bitrix24.ru/rest/",
        "https://evil.example%5C@acme.bitrix24.ru/rest/",
        "https://user:pass@acme.bitrix24.ru/rest/",
        "https://acme.bitrix24.ru@evil.example/rest/",
        "https://acme.bitrix24.ru\t.evil.example/rest/",
        "https://evil.example#@acme.bitrix24.ru/rest/",
    ],
)
def test_urls_that_parsers_read_differently_are_refused_before_any_call(client, bitrix24, victim, settings, endpoint):
    settings.B24_ALLOWED_PORTAL_DOMAINS = [".bitrix24.ru"]
    assert portal_url_refusal(endpoint) is not None

    response = post_install(
        client, bitrix24, victim, **{"auth[domain]": "acme.bitrix24.ru", "auth[client_endpoint]": endpoint}
    )

    assert response.status_code == 400, response.content
    assert not Installation.objects.exists()
    assert not bitrix24.oauth_requests  # nothing was asked of anyone


def test_an_oauth_answer_naming_a_refused_address_is_not_stored(client, bitrix24, victim, settings):
    """Even what the OAuth server says passes the address rules (a portal renamed to somewhere odd)."""
    real_endpoint, real_domain = victim.client_endpoint, victim.domain
    victim.client_endpoint = "https://evil.example\\@acme.bitrix24.ru/rest/"

    response = post_install(
        client, bitrix24, victim, **{"auth[client_endpoint]": real_endpoint, "auth[domain]": real_domain}
    )

    assert response.status_code == 403
    assert not Installation.objects.exists()


def test_a_portal_on_a_private_address_is_refused(client, bitrix24, victim, settings):
    """Outside tests the fake's 127.0.0.1 is what an attacker would name to reach our own network."""
    settings.B24_PORTAL_ALLOW_LOOPBACK = False

    response = post_install(client, bitrix24, victim)

    assert response.status_code == 403
    assert "private" in response.json()["detail"]
    assert not Installation.objects.exists()
    assert list(victim.calls) == []


def test_calls_to_a_stored_portal_that_now_resolves_privately_are_refused_at_connect(
    bitrix24, victim, installation_factory, settings
):
    installation = installation_factory(victim)
    calls_before = len(victim.calls)
    settings.B24_PORTAL_ALLOW_LOOPBACK = False

    with pytest.raises(Bitrix24AddressRefused):
        portal_client(installation).call("event.get")
    assert len(victim.calls) == calls_before  # no request reached the address


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://169.254.169.254/rest/",
        "http://10.0.0.8:6379/rest/",
        "http://localhost:5432/rest/",
        "http://[::1]:8000/rest/",
    ],
)
def test_private_and_metadata_addresses_are_refused(settings, installation_factory, endpoint):
    settings.B24_PORTAL_ALLOW_LOOPBACK = False
    installation = installation_factory(client_endpoint=endpoint)

    started = time.monotonic()
    with pytest.raises((Bitrix24AddressRefused, Bitrix24RedirectRefused)):
        portal_client(installation).call("event.get")
    assert time.monotonic() - started < 1  # refused, not timed out


def test_a_slow_oauth_server_cannot_hold_the_install_request(client, bitrix24, victim, settings):
    settings.B24_INSTALL_TIME_BUDGET = 1.0
    settings.B24_TIMEOUT = 30
    bitrix24.oauth_delay = 5

    started = time.monotonic()
    response = post_install(client, bitrix24, victim)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert elapsed < 2.5, elapsed
    assert not Installation.objects.exists()


def test_a_slow_portal_cannot_hold_the_install_request(client, bitrix24, victim, settings, monkeypatch):
    """event.bind hangs: the install is answered within its budget and the bind is left to a task."""
    settings.B24_INSTALL_TIME_BUDGET = 1.5
    queued = []
    from providers.tasks.registration import bind_event_handlers

    monkeypatch.setattr(bind_event_handlers, "apply_async", lambda *a, **kw: queued.append(a))
    bitrix24.set_delay("event.bind", 5)

    started = time.monotonic()
    response = post_install(client, bitrix24, victim)
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.content
    assert response.json()["uninstall_handler_bound"] is False
    assert elapsed < 3, elapsed
    assert queued  # the bind is retried by a task


def test_install_requests_are_rate_limited_per_address(client, bitrix24, victim, settings, monkeypatch):
    settings.B24_INSTALL_RATE = "3/m"
    now = time.time()
    # no minute ends halfway through (only the limiter's clock is stopped)
    monkeypatch.setattr("django_ratelimit.core.time", SimpleNamespace(time=lambda: now))
    # Counters live in the shared cache, which outlives a test run: addresses of this run only.
    run = secrets.randbits(32)
    flooder, other = f"2001:db8:{run >> 16:x}:{run & 0xFFFF:x}::1", f"2001:db8:{run >> 16:x}:{(run + 1) & 0xFFFF:x}::1"
    refusals = []
    for _n in range(5):
        response = client.post("/b24/install/", "event=ONAPPINSTALL", content_type=FORM, REMOTE_ADDR=flooder)
        refusals.append(response.status_code)

    assert refusals == [400, 400, 400, 429, 429]
    assert "Too many" in client.post("/b24/install/", "", content_type=FORM, REMOTE_ADDR=flooder).json()["detail"]
    # another client is not affected
    assert client.post("/b24/install/", "event=ONAPPINSTALL", content_type=FORM, REMOTE_ADDR=other).status_code == 400


def test_the_application_secret_is_needed_to_verify(client, bitrix24, victim, application):
    BitrixApplication.objects.filter(pk=application.pk).update(client_secret="")

    response = post_install(client, bitrix24, victim)

    assert response.status_code == 503
    assert not Installation.objects.exists()
