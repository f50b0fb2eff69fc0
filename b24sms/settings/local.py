"""Settings for `make run`: one machine, SQLite and a server-less Celery broker by default."""
from .base import *  # noqa: F401,F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)

# Serve static files straight from the apps; no collectstatic needed.
WHITENOISE_USE_FINDERS = True
