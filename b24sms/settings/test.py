"""Settings for pytest. DATABASE_URL / CELERY_BROKER_URL from the environment select PostgreSQL and Redis."""

from b24sms.settings.base import *  # noqa: F401,F403
from b24sms.settings.base import env

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Unit tests run tasks inline; integration tests switch this off and use a real worker.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True
LOG_FORMAT = "text"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Serve static files straight from the apps; no collectstatic needed.
WHITENOISE_USE_FINDERS = True

# Short backoffs so retry paths run fast in tests.
IDGTL_RETRY_BACKOFF = env.float("IDGTL_RETRY_BACKOFF", default=0.05)
B24_RETRY_BACKOFF = env.float("B24_RETRY_BACKOFF", default=0.05)
# The i-dgtl throttle is off (it would put the database cache under every i-dgtl call of every test);
# tests/idgtl/test_throttle.py turns it on.
IDGTL_RATE_LIMIT_PER_SECOND = env.float("IDGTL_RATE_LIMIT_PER_SECOND", default=0)
MESSAGES_SEND_RETRY_BACKOFF = env.float("MESSAGES_SEND_RETRY_BACKOFF", default=0.2)
MESSAGES_OUTCOME_LOOKUP_DELAY = env.float("MESSAGES_OUTCOME_LOOKUP_DELAY", default=0.5)
MESSAGES_REPORT_RETRY_BACKOFF = env.float("MESSAGES_REPORT_RETRY_BACKOFF", default=0.2)

# Tests assert English texts; the Russian default (and the switch) are tested explicitly.
LANGUAGE_CODE = "en"

# The fakes of Bitrix24 listen on 127.0.0.1; every other private address is still refused.
B24_PORTAL_ALLOW_LOOPBACK = env.bool("B24_PORTAL_ALLOW_LOOPBACK", default=True)
# Every test installs from 127.0.0.1 and the cache (Redis in CI) outlives a test: the install rate limit
# is tested on its own with addresses of its own (tests/providers_portals/test_install_attacks.py).
B24_INSTALL_RATE = env("B24_INSTALL_RATE", default="100000/m")
# Failed-login limiting is off: Django's test client logs in without a request, which django-axes refuses;
# tests/ops/test_login_lockout.py turns it on for its own logins.
AXES_ENABLED = env.bool("AXES_ENABLED", default=False)

# Secrets at rest: fixed keys generated for the tests (never used anywhere else). Tests of rotation set their own.
FIELD_ENCRYPTION_KEYS = ["6v4U3c0-3_mEg6sQm1Xv6nH1nSg3PZ9fG0n0w7Vb0eQ="]
SECRET_INDEX_KEY = "test-secret-index-key-0123456789abcdefghijklmnop"
