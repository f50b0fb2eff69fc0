"""Settings of the processes the end-to-end benches start (gunicorn, Celery worker and beat).

The project's settings with the bench's URLs; unlike bench.intake_settings the log level comes from
LOG_LEVEL, so a worker can log at INFO (its " ready." line, beat's "Sending due task" lines) while
gunicorn stays at WARNING.
"""

from b24sms.settings.base import *  # noqa: F401,F403
from b24sms.settings.base import LOG_LEVEL, LOGGING

DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.intake_urls"
LOGGING["root"]["level"] = LOG_LEVEL
LOGGING["loggers"]["django"]["level"] = LOG_LEVEL
# Secrets at rest: the environment's keys, else fixed keys of the benches' own databases (used nowhere else).
FIELD_ENCRYPTION_KEYS = FIELD_ENCRYPTION_KEYS or ["2pTEzI0YNLoCLO4lxD_q5-dsHzZT5_LwQxCzoWVt9s0="]  # noqa: F405
SECRET_INDEX_KEY = SECRET_INDEX_KEY or "bench-secret-index-key-0123456789abcdefghijklmnop"  # noqa: F405
