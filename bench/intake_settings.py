"""Settings for bench/handler_intake.py: the project's settings, quiet logs, plus a trivial baseline view."""

from b24sms.settings.base import *  # noqa: F401,F403

DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.intake_urls"
LOG_LEVEL = "WARNING"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
LOGGING["loggers"]["django"]["level"] = "WARNING"  # noqa: F405
# Secrets at rest: the environment's keys, else fixed keys of the benches' own databases (used nowhere else).
FIELD_ENCRYPTION_KEYS = FIELD_ENCRYPTION_KEYS or ["2pTEzI0YNLoCLO4lxD_q5-dsHzZT5_LwQxCzoWVt9s0="]  # noqa: F405
SECRET_INDEX_KEY = SECRET_INDEX_KEY or "bench-secret-index-key-0123456789abcdefghijklmnop"  # noqa: F405
