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
