"""Settings for `make run`: one machine, SQLite and a server-less Celery broker by default (never production)."""
from .base import *  # noqa: F401,F403
from .base import env

# DEBUG only when asked: `make run` asks (DJANGO_DEBUG=true), these settings alone do not.
DEBUG = env.bool("DJANGO_DEBUG", default=False)

# Serve static files straight from the apps; no collectstatic needed.
WHITENOISE_USE_FINDERS = True

# The sandbox's fake portal listens on 127.0.0.1 (bitrix24/urls.py refuses loopback portals elsewhere).
B24_PORTAL_ALLOW_LOOPBACK = env.bool("B24_PORTAL_ALLOW_LOOPBACK", default=True)
