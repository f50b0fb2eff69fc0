"""Settings for bench/handler_intake.py: the project's settings, quiet logs, plus a trivial baseline view."""
from b24sms.settings.base import *  # noqa: F401,F403

DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.intake_urls"
LOG_LEVEL = "WARNING"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
LOGGING["loggers"]["django"]["level"] = "WARNING"  # noqa: F405
