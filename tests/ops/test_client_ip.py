"""Allowlists by address behind a reverse proxy: X-Forwarded-For is believed only from TRUSTED_PROXIES.

The attacker sends X-Forwarded-For naming an allowed address, straight to gunicorn or through the
proxy (which appends the real peer on the right). Either way the allowlist sees the real client.
"""

import pytest
from django.test import RequestFactory

from common.errors import error_text
from common.netaddr import address_in, client_ip, parse_address, ratelimit_ip

IDGTL = "185.203.96.7"  # an address IDGTL_CALLBACK_ALLOWED_IPS lets in
ATTACKER = "203.0.113.50"
PROXY = "10.0.0.2"


def request(remote_addr, forwarded=None):
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


# --- the rule ------------------------------------------------------------------------------------
def test_without_trusted_proxies_the_forwarded_header_is_never_read(settings):
    settings.TRUSTED_PROXIES = []
    assert client_ip(request(ATTACKER, IDGTL)) == ATTACKER
    assert client_ip(request(PROXY, IDGTL)) == PROXY


def test_a_forged_header_from_an_untrusted_peer_is_ignored(settings):
    settings.TRUSTED_PROXIES = [PROXY]
    assert client_ip(request(ATTACKER, f"{IDGTL}, 127.0.0.1")) == ATTACKER


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_client(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_ip(request(PROXY, IDGTL)) == IDGTL
    # The attacker's own X-Forwarded-For stands left of what the proxy appended: ignored.
    assert client_ip(request(PROXY, f"{IDGTL}, {ATTACKER}")) == ATTACKER
    assert client_ip(request(PROXY, f"127.0.0.1,{ATTACKER}")) == ATTACKER


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "192.0.2.10"]
    assert client_ip(request(PROXY, f"{IDGTL}, 192.0.2.10, 10.1.1.1")) == IDGTL
    assert client_ip(request(PROXY, f"198.51.100.1, {ATTACKER}, 192.0.2.10")) == ATTACKER
    # Only proxies all the way: the leftmost one (a trusted address) speaks for itself.
    assert client_ip(request(PROXY, "10.9.9.9")) == "10.9.9.9"
    assert client_ip(request(PROXY)) == PROXY and client_ip(request(PROXY, "")) == PROXY


def test_forwarded_entries_with_ports_brackets_and_mapped_addresses(settings):
    settings.TRUSTED_PROXIES = [PROXY, "2001:db8::/32"]
    assert client_ip(request(PROXY, f"{IDGTL}:4711")) == IDGTL
    assert client_ip(request(PROXY, "[2001:db9::1]:443")) == "2001:db9::1"
    assert client_ip(request("2001:db8::5", "198.51.100.7")) == "198.51.100.7"
    assert client_ip(request("::ffff:10.0.0.2", IDGTL)) == IDGTL
    assert parse_address("unknown") is None and parse_address("") is None


def test_garbage_forwarded_by_a_trusted_proxy_gives_no_address(settings):
    settings.TRUSTED_PROXIES = [PROXY]
    assert client_ip(request(PROXY, "unknown")) is None
    assert client_ip(request(PROXY, f"{IDGTL}, not-an-ip")) is None
    assert ratelimit_ip(request(PROXY, "unknown")) == PROXY  # the rate limit still has a key


def test_invalid_entries_are_ignored_not_fatal():
    assert address_in("10.1.2.3", ["nonsense", "10.0.0.0/8"])
    assert not address_in("10.1.2.3", ["nonsense"])
    assert not address_in(None, ["0.0.0.0/0"]) and not address_in("::1", ["0.0.0.0/0"])


def test_the_install_rate_limit_keys_on_the_same_address(settings):
    settings.TRUSTED_PROXIES = [PROXY]
    assert settings.RATELIMIT_IP_META_KEY == "common.netaddr.ratelimit_ip"
    assert ratelimit_ip(request(PROXY, ATTACKER)) == ATTACKER
    assert ratelimit_ip(request(ATTACKER, "198.51.100.1")) == ATTACKER


# --- /metrics without a token ------------------------------------------------------------------
@pytest.mark.django_db
def test_metrics_a_forged_forwarded_loopback_does_not_open_metrics(client, settings):
    settings.METRICS_TOKEN = ""
    settings.TRUSTED_PROXIES = []
    assert client.get("/metrics", REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 403


@pytest.mark.django_db
def test_metrics_behind_a_proxy_judge_the_real_client_not_the_proxy(client, settings):
    settings.METRICS_TOKEN = ""
    settings.TRUSTED_PROXIES = [PROXY]
    # Every request arrives from the proxy's private address; what counts is who the proxy served.
    assert client.get("/metrics", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=ATTACKER).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"127.0.0.1, {ATTACKER}").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="192.168.7.7").status_code == 200


# --- i-dgtl callbacks with IDGTL_CALLBACK_ALLOWED_IPS -------------------------------------------
SOURCE_REFUSED = "Source address not allowed."


def callback(client, **extra):
    return client.post("/idgtl/callback/any-secret/", data="[]", content_type="application/json", **extra)


@pytest.mark.django_db
def test_a_forged_forwarded_address_does_not_pass_the_callback_allowlist(client, settings):
    settings.IDGTL_CALLBACK_ALLOWED_IPS = [IDGTL]
    settings.TRUSTED_PROXIES = []
    response = callback(client, REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=IDGTL)
    assert response.status_code == 403 and error_text(response.json()) == SOURCE_REFUSED
    settings.TRUSTED_PROXIES = [PROXY]  # a proxy is configured, but the attacker is not it
    response = callback(client, REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=IDGTL)
    assert response.status_code == 403 and error_text(response.json()) == SOURCE_REFUSED
    # Through the proxy, with i-dgtl's address forged on the left of the chain.
    response = callback(client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{IDGTL}, {ATTACKER}")
    assert response.status_code == 403 and error_text(response.json()) == SOURCE_REFUSED


@pytest.mark.django_db
def test_behind_a_trusted_proxy_i_dgtl_passes_the_callback_allowlist(client, settings):
    settings.IDGTL_CALLBACK_ALLOWED_IPS = [IDGTL]
    settings.TRUSTED_PROXIES = [PROXY]
    response = callback(client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=IDGTL)
    # Past the source check; the made-up secret is what refuses it now.
    assert error_text(response.json()) != SOURCE_REFUSED
    # Without TRUSTED_PROXIES every callback arrives from the proxy and is refused: the old dilemma.
    settings.TRUSTED_PROXIES = []
    assert error_text(callback(client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=IDGTL).json()) == SOURCE_REFUSED
