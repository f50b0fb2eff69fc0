"""Project-level periodic jobs."""

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

BEAT_HEARTBEAT_KEY = "b24sms:beat-heartbeat"


@shared_task(name="b24sms.tasks.beat_heartbeat")
def beat_heartbeat():
    """Record that beat and a worker are alive; /healthz reads it."""
    cache.set(BEAT_HEARTBEAT_KEY, timezone.now().isoformat(), timeout=None)
