"""The per-portal leaky bucket: Redis (Lua) and the Django-cache fallback, shared by threads."""
import math
import threading
import time
import types
import uuid

import pytest
from django.core.cache.backends.db import DatabaseCache

from bitrix24 import ratelimit


def _redis_backend(settings):
    assert settings.REDIS_URL.startswith("redis://"), "integration runs set CELERY_BROKER_URL to Redis"
    return ratelimit.RedisLeakyBucket(settings.REDIS_URL)


@pytest.fixture
def db_cache(settings, django_db_blocker):
    """The database cache of the embedded setup (its table is created when Redis is the default cache)."""
    from django.core.management import call_command

    settings.CACHES = {**settings.CACHES, "fallback": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "b24sms_cache"}}
    with django_db_blocker.unblock():
        call_command("createcachetable", verbosity=0)
    return DatabaseCache("b24sms_cache", {})


def _run_two_threads(backend, key, burst, drain, per_thread):
    """Two threads take ``per_thread`` slots each from one bucket; returns the sorted admission times."""
    from django.db import connection

    stamps, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def work():
        try:
            start.wait()
            for _ in range(per_thread):
                ratelimit.acquire(key, burst, drain, timeout=10, backend=backend)
                with lock:
                    stamps.append(time.monotonic())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    return sorted(stamps)


def _assert_bucket_respected(stamps, burst, drain, slack=0.06):
    """No window ever admits more than burst + drain * its length (the bucket would overflow)."""
    for start in range(len(stamps)):
        for i in range(start, len(stamps)):
            admitted = i - start + 1
            assert admitted <= burst + drain * (stamps[i] - stamps[start] + slack) + 1e-9, (start, i)
    t0 = stamps[0]
    # and the bucket is not needlessly slow: all admitted close to the theoretical end
    assert stamps[-1] - t0 <= (len(stamps) - burst) / drain + 0.6


@pytest.mark.integration
def test_redis_bucket_admits_burst_then_drain_rate(settings):
    backend = _redis_backend(settings)
    key = f"test:{uuid.uuid4().hex}"
    # burst 4 with one request of headroom: 3 at once, then one per 1/drain seconds
    assert [backend.try_acquire(key, 4, 10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = backend.try_acquire(key, 4, 10.0)
    assert 0.05 < wait <= 0.1
    time.sleep(wait)
    assert backend.try_acquire(key, 4, 10.0) == 0.0


@pytest.mark.integration
def test_redis_bucket_is_shared_by_two_threads(settings):
    stamps = _run_two_threads(_redis_backend(settings), f"test:{uuid.uuid4().hex}", burst=4, drain=10.0, per_thread=7)
    assert len(stamps) == 14
    _assert_bucket_respected(stamps, 4, 10.0)
    assert stamps[-1] - stamps[0] >= (14 - 4) / 10.0 - 0.06


@pytest.mark.integration
def test_redis_acquire_raises_after_timeout(settings):
    backend = _redis_backend(settings)
    key = f"test:{uuid.uuid4().hex}"
    ratelimit.acquire(key, 2, 0.5, timeout=1, backend=backend)
    started = time.monotonic()
    with pytest.raises(ratelimit.RateLimitTimeout):
        ratelimit.acquire(key, 2, 0.5, timeout=0.3, backend=backend)
    assert time.monotonic() - started < 0.2  # does not sleep when the wait is known to be too long


@pytest.mark.django_db
def test_database_fallback_admits_burst_then_waits(db_cache, monkeypatch):
    # A clock that starts just inside a 0.2 s slot and moves only when the bucket sleeps, so no slot
    # boundary is crossed between the calls by chance on a loaded machine.
    now = [(math.floor(time.time() * 5.0) + 1) / 5.0 + 0.001]

    def sleep(seconds):
        now[0] += seconds

    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: now[0], monotonic=lambda: now[0], sleep=sleep))
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
    stamps = _run_two_threads(ratelimit.CacheLeakyBucket(db_cache), f"test:{uuid.uuid4().hex}", burst=4, drain=10.0, per_thread=6)
    assert len(stamps) == 12
    _assert_bucket_respected(stamps, 4, 10.0, slack=0.12)


@pytest.mark.django_db
def test_acquire_uses_the_cache_fallback_without_redis(settings):
    settings.REDIS_URL = ""
    assert isinstance(ratelimit.get_backend(), ratelimit.CacheLeakyBucket)
    key = f"test:{uuid.uuid4().hex}"
    ratelimit.acquire(key, 2, 0.01, timeout=1)  # one request per 100 s slot
    try:  # the next one waits for the next slot, which may start within the second
        ratelimit.acquire(key, 2, 0.01, timeout=1)
    except ratelimit.RateLimitTimeout:
        pass
    with pytest.raises(ratelimit.RateLimitTimeout):  # but never two slots within a second
        ratelimit.acquire(key, 2, 0.01, timeout=0.5)
