"""Celery tasks of the Bitrix24 side (thin: load by id, call one service)."""

from providers.tasks.messages import *  # noqa: F401,F403
from providers.tasks.registration import *  # noqa: F401,F403
from providers.tasks.retention import *  # noqa: F401,F403
