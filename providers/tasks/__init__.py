"""Celery tasks of the Bitrix24 side (thin: load by id, call one service)."""
from .messages import *  # noqa: F401,F403
from .registration import *  # noqa: F401,F403
from .retention import *  # noqa: F401,F403
