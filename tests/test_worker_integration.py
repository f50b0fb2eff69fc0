"""The integration harness itself: a real worker process on Redis and PostgreSQL."""

import pytest
from django.core.cache import cache

from b24sms.tasks import BEAT_HEARTBEAT_KEY, beat_heartbeat
from tests.waiting import wait_until


@pytest.mark.integration
def test_a_task_sent_by_the_test_runs_in_the_worker_process(live_worker):
    cache.delete(BEAT_HEARTBEAT_KEY)
    beat_heartbeat.delay()
    wait_until(lambda: cache.get(BEAT_HEARTBEAT_KEY), timeout=30, message="the worker to record a heartbeat")
    assert "beat_heartbeat" in live_worker.logs()
