"""Debounced runs: many "please run soon" within a moment cost one task for the whole cluster.

Used where a stream of requests each leave work for a worker (a HANDLER call leaves a message to send,
an i-dgtl callback leaves events to apply): asking for a task per request would cost more than the work,
and one run over everything waiting does it in large sets. :class:`DebouncedRun` keeps, per kind of run,

* a shared flag in Redis (or in Django's cache without Redis) holding the time the run is due, which
  expires then: while it is there, a run that has not started yet will take whatever was committed
  before it, so a caller relies on it if it is still at least KNOWN_RUN_MARGIN ahead; otherwise the
  caller sets the flag for a run of its own and enqueues the task with the debounce as countdown;
* the due time this process already knows, so that a burst costs each web process about one Redis
  call per debounce period, not one per request.

The run clears the flag when it starts (:meth:`DebouncedRun.started`): whatever is committed from then on
asks for a new run. Nothing depends on the task arriving: each kind of run has a beat sweep that does the
same work, so a task lost with the broker delays the work by one sweep period at most.
"""

import math
import threading
import time

import redis
from django.conf import settings
from django.core.cache import cache

from common.taskqueue import enqueue

# s: clock differences between web and worker hosts, and the time to commit. (Should a run still start
# early and miss some work, the beat sweep of that work does it.)
KNOWN_RUN_MARGIN = 0.05

_redis = threading.local()


def redis_client() -> redis.Redis:
    """One Redis client per thread and process (REDIS_URL). Django's cache builds a new client object for
    every operation, which costs more CPU than a HANDLER call's own work."""
    client = getattr(_redis, "client", None)
    if client is None:
        client = _redis.client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return client


def redis_client_reset() -> None:
    """Forget this thread's client (tests that point REDIS_URL elsewhere)."""
    _redis.__dict__.clear()


# One round trip however the flag stands: the due time of a run to rely on, or false once the flag is ours.
_LUA_FLAG_CLAIM = """
local existing = redis.call('GET', KEYS[1])
if existing and tonumber(existing) > tonumber(ARGV[3]) then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""


class DebouncedRun:
    """A task run at most once per ``delay_setting`` seconds for everyone asking (see the module)."""

    def __init__(self, *, task: str, key: str, delay_setting: str):
        self.task = task
        self.key = key
        self.delay_setting = delay_setting
        self.known_run_at = 0.0  # the run this process knows to be due later (wall-clock time)

    @property
    def delay(self) -> float:
        return getattr(settings, self.delay_setting)

    def schedule(self) -> None:
        """Ask for a run soon; many calls within a moment cost one task (a burst becomes one large run)."""
        now = time.time()
        if now < self.known_run_at - KNOWN_RUN_MARGIN:
            return
        delay = self.delay
        run_at = now + delay
        scheduled = self.flag_claim(run_at, now)
        if scheduled is not None:
            self.known_run_at = scheduled  # by another process
            return
        self.known_run_at = run_at  # (before enqueueing: a task run inline, in tests, starts and forgets it)
        try:
            enqueue(self.task, countdown=delay)
        except Exception:
            self.known_run_at = 0.0
            self.flag_clear()  # no run is coming: let the next caller (or the beat sweep) try again
            raise

    def started(self) -> None:
        """The run starts (due now anyway): anything committed from now on asks for a new run."""
        self.known_run_at = 0.0  # (a run in this process: no longer ahead)
        self.flag_clear()

    def flag_claim(self, run_at: float, now: float) -> float | None:
        """The time of a scheduled run still due after ``now`` + the margin, to rely on; or None once the
        flag is set to ``run_at`` (until then), the caller then scheduling that run."""
        lifetime = max(0.001, run_at - now)
        rely_after = now + KNOWN_RUN_MARGIN
        if settings.REDIS_URL:
            script = getattr(_redis, "flag_claim", None)
            if script is None:
                script = _redis.flag_claim = redis_client().register_script(_LUA_FLAG_CLAIM)
            existing = script(keys=[self.key], args=[repr(run_at), max(1, round(lifetime * 1000)), repr(rely_after)])
            return None if existing is None else float(existing)
        # Django's database cache keeps whole seconds: there the flag outlives its due time, and is gone when
        # the run starts instead (started() clears it), which is as safe. Not atomic: two processes may both
        # schedule a run, which costs one empty run.
        timeout = math.ceil(lifetime) + 1
        if cache.add(self.key, repr(run_at), timeout=timeout):
            return None
        try:
            existing = float(cache.get(self.key))
        except (TypeError, ValueError):
            existing = 0.0
        if existing > rely_after:
            return existing
        cache.set(self.key, repr(run_at), timeout=timeout)
        return None

    def flag_clear(self) -> None:
        if settings.REDIS_URL:
            redis_client().delete(self.key)
        else:
            cache.delete(self.key)
