"""Settings for `make run`: one machine, SQLite and a server-less Celery broker by default (never production)."""

import base64
import os
import secrets
from pathlib import Path

from b24sms.settings.base import *  # noqa: F401,F403
from b24sms.settings.base import FIELD_ENCRYPTION_KEYS, SECRET_INDEX_KEY, VAR_DIR, env

# DEBUG only when asked: `make run` asks (DJANGO_DEBUG=true), these settings alone do not.
DEBUG = env.bool("DJANGO_DEBUG", default=False)

# Serve static files straight from the apps; no collectstatic needed.
WHITENOISE_USE_FINDERS = True

# The sandbox's fake portal listens on 127.0.0.1 (bitrix24/urls.py refuses loopback portals elsewhere).
B24_PORTAL_ALLOW_LOOPBACK = env.bool("B24_PORTAL_ALLOW_LOOPBACK", default=True)

# Secrets at rest without keys in the environment: keys made once for this checkout and kept in
# var/local-secret-keys.env (mode 0600), so a restart still decrypts what was stored. Deleting that file
# makes the stored secrets of var/b24sms.sqlite3 unreadable: delete the database with it (make clean).
# B24SMS_LOCAL_SECRET_KEYS_FILE names another file (tests do).
LOCAL_SECRET_KEYS_FILE = Path(env("B24SMS_LOCAL_SECRET_KEYS_FILE", default=str(VAR_DIR / "local-secret-keys.env")))


def _local_secret_keys(path) -> dict[str, str]:
    """The keys of ``path``, written first if it does not exist (atomically: concurrent starts agree)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(f".{path.name}.{os.getpid()}")
        fresh.write_text(
            "# Made by b24sms/settings/local.py for `make run` on this machine; never used in production.\n"
            f"FIELD_ENCRYPTION_KEYS={base64.urlsafe_b64encode(os.urandom(32)).decode()}\n"
            f"SECRET_INDEX_KEY={secrets.token_urlsafe(48)}\n"
        )
        fresh.chmod(0o600)
        try:
            os.link(fresh, path)  # fails if another process made it first: then that one's keys are used
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
    lines = (line.partition("=") for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, _sep, value in lines}


if not (FIELD_ENCRYPTION_KEYS and SECRET_INDEX_KEY):
    _keys = _local_secret_keys(LOCAL_SECRET_KEYS_FILE)
    FIELD_ENCRYPTION_KEYS = FIELD_ENCRYPTION_KEYS or _keys["FIELD_ENCRYPTION_KEYS"].split(",")
    SECRET_INDEX_KEY = SECRET_INDEX_KEY or _keys["SECRET_INDEX_KEY"]
