"""The leaky bucket per key (common/ratelimit.py): Redis (Lua) and the Django-cache fallback, shared by threads."""

import math
import time
import types
import uuid

import pytest
from django.core.cache.backends.db import DatabaseCache

from common import ratelimit
from tests.concurrency import run_together


def _redis_backend(settings):
    assert settings.REDIS_URL.startswith("redis://"), "integration runs set CELERY_BROKER_URL to Redis"
    return ratelimit.RedisLeakyBucket(settings.REDIS_URL)


@pytest.fixture
def db_cache(settings, django_db_blocker):
    """The database cache of the embedded setup (its table is created when Redis is the default cache)."""
    from django.core.management import call_command

    settings.CACHES = {
        **settings.CACHES,
        "fallback": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "b24sms_cache"},
    }
    with django_db_blocker.unblock():
        call_command("createcachetable", verbosity=0)
    return DatabaseCache("b24sms_cache", {})


def _run_two_threads(backend, key, burst, drain, per_thread):
    """Two threads take ``per_thread`` slots each from one bucket.

    Returns the sorted admissions as (before, after) pairs: each request was admitted at some moment
    between the two, however long a loaded machine kept a thread from running.
    """

    def work():
        stamps = []
        for _ in range(per_thread):
            observed = []

            def try_acquire(*args):
                observed[:] = [time.monotonic()]  # noqa: B023 (called within this iteration only)
                return backend.try_acquire(*args)

            ratelimit.acquire(key, burst, drain, timeout=10, backend=types.SimpleNamespace(try_acquire=try_acquire))
            stamps.append((observed[0], time.monotonic()))
        return stamps

    return sorted(stamp for stamps in run_together(work) for stamp in stamps)


def _assert_bucket_respected(stamps, burst, drain, slack=0.0):
    """No window ever admits more than burst + drain * its longest possible length (the bucket would overflow)."""
    for start in range(len(stamps)):
        for i in range(start, len(stamps)):
            admitted = i - start + 1
            longest = stamps[i][1] - stamps[start][0]
            assert admitted <= burst + drain * (longest + slack) + 1e-9, (start, i)


@pytest.mark.integration
def test_redis_bucket_admits_burst_then_drain_rate(settings):
    backend = _redis_backend(settings)
    key = f"test:{uuid.uuid4().hex}"
    # burst 4 with one request of headroom: 3 at once, then one per 1/drain seconds. At 2/s the three
    # calls may take up to 0.5 s (a loaded machine) before the fourth could find room.
    assert [backend.try_acquire(key, 4, 2.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = backend.try_acquire(key, 4, 2.0)
    assert 0 < wait <= 0.5
    time.sleep(wait + 0.01)
    assert backend.try_acquire(key, 4, 2.0) == 0.0


@pytest.mark.integration
def test_redis_bucket_is_shared_by_two_threads(settings):
    stamps = _run_two_threads(_redis_backend(settings), f"test:{uuid.uuid4().hex}", burst=4, drain=10.0, per_thread=7)
    assert len(stamps) == 14
    _assert_bucket_respected(stamps, 4, 10.0)
    # 3 at once (burst minus headroom), then one per 0.1 s: never faster than that
    assert stamps[-1][1] - stamps[0][0] >= (14 - 3) / 10.0 - 0.01
    assert stamps[-1][1] - stamps[0][0] <= (14 - 3) / 10.0 + 2.0  # and not needlessly slow


@pytest.mark.integration
def test_redis_acquire_raises_after_timeout(settings):
    backend = _redis_backend(settings)
    key = f"test:{uuid.uuid4().hex}"
    ratelimit.acquire(key, 2, 0.5, timeout=1, backend=backend)
    slept = []
    with pytest.raises(ratelimit.RateLimitTimeout) as info:
        ratelimit.acquire(key, 2, 0.5, timeout=0.3, backend=backend, sleep=slept.append)
    assert slept == [] and info.value.needed > 1.5  # the wait (about 2 s) is known too long: no sleep


@pytest.mark.django_db
def test_database_fallback_admits_burst_then_waits(db_cache, monkeypatch):
    # A clock that starts just inside a 0.2 s slot and moves only when the bucket sleeps, so no slot
    # boundary is crossed between the calls by chance on a loaded machine.
    now = [(math.floor(time.time() * 5.0) + 1) / 5.0 + 0.001]

    def sleep(seconds):
        now[0] += seconds

    monkeypatch.setattr(
        ratelimit, "time", types.SimpleNamespace(time=lambda: now[0], monotonic=lambda: now[0], sleep=sleep)
    )
    backend = ratelimit.CacheLeakyBucket(db_cache)
    key = f"test:{uuid.uuid4().hex}"
    # burst 5 minus headroom and rounding margin: 3 at once, then one per slot (1/drain seconds)
    assert [backend.try_acquire(key, 5, 5.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = backend.try_acquire(key, 5, 5.0)
    assert 0 < wait <= 0.2
    waited = ratelimit.acquire(key, 5, 5.0, timeout=1, backend=backend, sleep=sleep)
    assert 0 < waited <= 0.3


@pytest.mark.django_db(transaction=True)
def test_database_fallback_is_shared_by_two_threads(db_cache):
    stamps = _run_two_threads(
        ratelimit.CacheLeakyBucket(db_cache), f"test:{uuid.uuid4().hex}", burst=4, drain=10.0, per_thread=6
    )
    assert len(stamps) == 12
    _assert_bucket_respected(stamps, 4, 10.0)


@pytest.mark.django_db
def test_acquire_uses_the_cache_fallback_without_redis(settings, monkeypatch):
    settings.REDIS_URL = ""
    assert isinstance(ratelimit.get_backend(), ratelimit.CacheLeakyBucket)
    # one request per 100 s slot; a clock pinned in the middle of a slot
    now = (math.floor(time.time() / 100) + 0.5) * 100
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: now, monotonic=time.monotonic))
    key = f"test:{uuid.uuid4().hex}"
    slept = []
    assert ratelimit.acquire(key, 2, 0.01, timeout=1, sleep=slept.append) >= 0
    with pytest.raises(ratelimit.RateLimitTimeout) as info:
        ratelimit.acquire(key, 2, 0.01, timeout=1, sleep=slept.append)
    assert slept == [] and 49 < info.value.needed <= 50
