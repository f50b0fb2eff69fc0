"""Leaky-bucket rate limiter per key, shared by every worker process.

Each request adds 1 to the bucket of its key, which drains ``drain_per_second``; a request that
would lift it above ``burst`` waits. The callers name their own buckets: the Bitrix24 client one per
portal (Bitrix24 itself answers ``503 QUERY_LIMIT_EXCEEDED`` past its own bucket, docs/contracts/bitrix24.md
§1.4), the i-dgtl client one per account (docs/contracts/idgtl.md §4), so waiting here keeps us under
the remote limit.

Backends:
* Redis (``settings.REDIS_URL`` set): one atomic Lua script per attempt, using Redis's clock so
  all workers agree on time.
* Otherwise the Django cache (the database cache in the embedded setup): time is cut into slots of
  ``1 / drain_per_second`` seconds, each slot admits one request, and a request may take any free
  slot from the current one up to ``burst - 3`` slots ahead (one slot of margin for the rounding,
  one request of HEADROOM). A slot is claimed with ``cache.add``
  (atomic on every Django cache backend), which is exactly a leaky bucket at slot resolution.

Both keep ``HEADROOM`` request(s) free below ``burst`` for network jitter.
``acquire(key, burst, drain_per_second, timeout)`` sleeps the computed time and raises
:class:`RateLimitTimeout` when the wait would exceed ``timeout``.
"""

from __future__ import annotations

import math
import threading
import time

import redis
from django.conf import settings
from django.core.cache import cache as default_cache
from django.db import DatabaseError

# The prefix of every bucket's keys. It says "b24rate" because the limiter was the Bitrix24 client's
# first; it is kept so that workers of two releases running side by side during a deploy share buckets.
KEY_PREFIX = "b24sms:b24rate:"
# Requests kept free below ``burst``: our clock and the remote side's see a request at slightly different
# moments (network jitter), so filling the bucket to the brim would now and then overflow the remote one.
HEADROOM = 1
LOCKED_RETRY_SECONDS = 0.01


def _capacity(burst: int) -> int:
    return max(1, int(burst) - HEADROOM)


class RateLimitTimeout(Exception):
    """The bucket did not drain enough within the timeout."""

    def __init__(self, key: str, waited: float, needed: float):
        super().__init__(f"rate limit for {key!r}: waited {waited:.2f}s, {needed:.2f}s more needed")
        self.key = key
        self.waited = waited
        self.needed = needed


# KEYS[1] bucket hash; ARGV burst, drain/s. Returns "0" when admitted, else the seconds to wait.
_LUA_LEAKY_BUCKET = """
local burst = tonumber(ARGV[1])
local drain = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level = tonumber(state[1]) or 0
local ts = tonumber(state[2]) or now
level = level - (now - ts) * drain
if level < 0 then level = 0 end
if level + 1 <= burst then
  level = level + 1
  redis.call('HSET', KEYS[1], 'level', tostring(level), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[1], math.ceil(level / drain) + 2)
  return '0'
end
return tostring((level + 1 - burst) / drain)
"""


class RedisLeakyBucket:
    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url)
        self.script = self.client.register_script(_LUA_LEAKY_BUCKET)

    def try_acquire(self, key: str, burst: int, drain_per_second: float) -> float:
        """0.0 when admitted, else the seconds until a retry can succeed."""
        return float(self.script(keys=[KEY_PREFIX + key], args=[_capacity(burst), repr(float(drain_per_second))]))

    def reset(self, key: str):
        self.client.delete(KEY_PREFIX + key)


class CacheLeakyBucket:
    """The leaky bucket over a Django cache: one ``cache.add`` per claimed time slot."""

    def __init__(self, cache=None):
        self.cache = default_cache if cache is None else cache

    def try_acquire(self, key: str, burst: int, drain_per_second: float) -> float:
        try:
            return self._try_acquire(key, burst, drain_per_second)
        except DatabaseError:  # a locked SQLite table (database cache): busy, try again shortly
            return LOCKED_RETRY_SECONDS

    def _try_acquire(self, key: str, burst: int, drain_per_second: float) -> float:
        now = time.time()
        current = math.floor(now * drain_per_second)
        # capacity - 2 slots ahead, not capacity - 1: one slot of margin so that rounding time down
        # to a slot never admits more than a continuous bucket (Bitrix24's) would.
        ahead = max(0, _capacity(burst) - 2)
        last_allowed = current + ahead
        hint_key = f"{KEY_PREFIX}{key}:next"
        start = max(current, int(self.cache.get(hint_key) or current))
        slot = start
        while slot <= last_allowed:
            # A slot key outlives its slot, so an expired key is never claimed twice.
            expires_in = (slot + 1) / drain_per_second - now + 10
            if self.cache.add(f"{KEY_PREFIX}{key}:{slot}", 1, timeout=expires_in):
                self.cache.set(hint_key, slot + 1, timeout=expires_in)
                return 0.0
            slot += 1
        # Slots start..last_allowed (and, by the hint, those before start) are taken: a slot becomes
        # usable once the window's end reaches the first one that may be free.
        first_maybe_free = max(start, last_allowed + 1)
        return max(0.001, (first_maybe_free - ahead) / drain_per_second - now)

    def reset(self, key: str):
        self.cache.delete(f"{KEY_PREFIX}{key}:next")


_backend_lock = threading.Lock()
_backends: dict[str, object] = {}


def get_backend():
    """The backend for the current settings (one Redis connection pool per URL per process)."""
    url = getattr(settings, "REDIS_URL", "") or ""
    name = f"redis:{url}" if url else "cache"
    backend = _backends.get(name)
    if backend is None:
        with _backend_lock:
            backend = _backends.get(name)
            if backend is None:
                backend = RedisLeakyBucket(url) if url else CacheLeakyBucket()
                _backends[name] = backend
    return backend


def acquire(key: str, burst: int, drain_per_second: float, timeout: float, *, backend=None, sleep=time.sleep) -> float:
    """Wait up to ``timeout`` seconds for room in the bucket ``key``; return the seconds waited.

    Raises RateLimitTimeout (nothing taken) when the wait would be longer.
    """
    if drain_per_second <= 0 or burst <= 0:
        raise ValueError("burst and drain_per_second must be positive")
    backend = backend or get_backend()
    started = time.monotonic()
    while True:
        wait = backend.try_acquire(key, burst, drain_per_second)
        if wait <= 0:
            return time.monotonic() - started
        waited = time.monotonic() - started
        if waited + wait > timeout:
            raise RateLimitTimeout(key, waited, wait)
        sleep(wait)
