"""idgtl.client throttle: a token bucket per i-dgtl account, shared by all workers (docs/contracts/idgtl.md §4 [A])."""

import time

import pytest

from common import ratelimit
from idgtl.client import IdgtlClient, IdgtlTransientError
from idgtl.models import IdgtlAccount

pytestmark = pytest.mark.django_db

KEY = "c2VjcmV0OmtleS12YWx1ZS05ODc2"


@pytest.fixture
def make_account(server):
    created = []

    def make(name):
        account = IdgtlAccount.objects.create(
            name=name, api_url=server.url, sender_names_key="a2V5OjI=", messages_key="a2V5OjE="
        )
        ratelimit.get_backend().reset(f"idgtl:account:{account.pk}")  # no state left by an earlier run
        created.append(account)
        return account

    return make


def test_calls_of_one_account_share_its_limit(server, make_account, settings):
    settings.IDGTL_RATE_LIMIT_PER_SECOND = 5
    account = make_account("client-a")
    messages, sender_names = IdgtlClient.for_messages(account), IdgtlClient.for_sender_names(account)

    started = time.monotonic()
    for n in range(12):
        (messages if n % 2 else sender_names).get_balance()
    elapsed = time.monotonic() - started

    assert len(server.received) == 12
    # at most a burst of 5 at once, then 5/s: the last 7 calls needed at least ~1.4 s
    assert elapsed >= 1.0, elapsed


def test_each_account_has_its_own_limit(server, make_account, settings):
    settings.IDGTL_RATE_LIMIT_PER_SECOND = 1
    busy, other = make_account("busy"), make_account("other")
    busy_client = IdgtlClient.for_messages(busy)
    for _ in range(2):  # the second call waited for the busy account's bucket: it is full for about 1 s
        busy_client.get_balance()

    started = time.monotonic()
    IdgtlClient.for_messages(other).get_balance()

    assert time.monotonic() - started < 0.7  # the busy account's bucket does not hold the other one back


def test_every_attempt_takes_room_and_the_bucket_is_named_after_the_account(
    server, make_account, settings, monkeypatch
):
    settings.IDGTL_RATE_LIMIT_PER_SECOND = 10
    taken = []
    monkeypatch.setattr("idgtl.client.ratelimit.acquire", lambda key, **kw: taken.append((key, kw)))
    account = make_account("retrying")
    client = IdgtlClient.for_messages(account, max_retries=2)
    client._sleep = lambda seconds: None
    server.answer(503, "")
    server.answer(200, '{"RUB": 1}')

    assert client.get_balance() == {"RUB": 1}
    assert [key for key, _ in taken] == [f"idgtl:account:{account.pk}"] * 2
    assert taken[0][1]["burst"] == 10 and taken[0][1]["drain_per_second"] == 10

    taken.clear()
    IdgtlClient(server.url, KEY).get_balance()  # a client without an account: a digest, never the key
    assert taken[0][0].startswith("idgtl:") and KEY not in taken[0][0]


def test_no_room_within_the_timeout_is_transient_and_sends_nothing(server, make_account, settings, monkeypatch):
    settings.IDGTL_RATE_LIMIT_PER_SECOND = 10

    def full(key, **kw):
        raise ratelimit.RateLimitTimeout(key, kw["timeout"], 1.0)

    monkeypatch.setattr("idgtl.client.ratelimit.acquire", full)
    client = IdgtlClient.for_messages(make_account("full"), timeout=0.5)

    with pytest.raises(IdgtlTransientError) as caught:
        client.send_messages([{"destination": "79001234567"}])

    assert "nothing was sent" in str(caught.value)
    assert type(caught.value) is IdgtlTransientError  # not "outcome unknown": the POST never left
    assert server.received == []


def test_a_limit_of_zero_turns_the_throttle_off(server, make_account, settings, monkeypatch):
    settings.IDGTL_RATE_LIMIT_PER_SECOND = 0
    monkeypatch.setattr("idgtl.client.ratelimit.acquire", lambda *a, **k: pytest.fail("throttled"))

    IdgtlClient.for_messages(make_account("unlimited")).get_balance()

    assert len(server.received) == 1
