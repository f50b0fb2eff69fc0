"""Settings shared by every environment. The environment is read here, and only here."""

from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core -------------------------------------------------------------------------------
SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-local-development-key-change-me-0123456789abcdef")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "b24sms.apps.AdminConfig",  # django.contrib.admin with the site of b24sms/admin_site.py
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "django_celery_beat",
    "django_prometheus",
    "b24sms",
    "idgtl",
    "sendernames",
    "providers",
    "auditlog",
    "audit",  # after auditlog: its admin replaces auditlog's
    "b24sms.apps.AxesConfig",  # django-axes, named in the reader's language
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "b24sms.middleware.RejectNulInQueryMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "b24sms.urls"
WSGI_APPLICATION = "b24sms.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "b24sms.context_processors.sandbox",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# Embedded default: SQLite in var/. DATABASE_URL=postgres://... switches to PostgreSQL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'b24sms.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Persistent connections: the Bitrix24 handler's throughput depends on them.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Prepared statements. Django's own queries bind parameters on the client and are never prepared;
    # the HANDLER's one statement asks to be (providers/services/intake.py), which saves PostgreSQL
    # planning it for every SMS (about 0.6 ms of its CPU, bench/handler_intake.py). Django turns them
    # off for connection poolers in transaction mode: set DATABASE_PREPARED_STATEMENTS=false behind one
    # that cannot keep them (PgBouncer before 1.21, or without max_prepared_statements).
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
    # Server-side parameter binding for Django's queries too (then repeated ones are prepared). Off by default.
    if env.bool("DATABASE_SERVER_SIDE_BINDING", default=False):
        DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalisation ---------------------------------------------------------------
LANGUAGE_CODE = env("DJANGO_LANGUAGE_CODE", default="ru")
LANGUAGES = [("ru", "Русский"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Moscow"
USE_I18N = True
USE_TZ = True

# --- Static and media ---------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=VAR_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Uploads larger than this go to a temporary file rather than memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=5 * 1024 * 1024)

# --- Cache (locks and rate limits shared by processes) -----------------------------------
REDIS_URL = env("REDIS_URL", default="")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=f"b24sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}")
if not REDIS_URL and CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    REDIS_URL = CELERY_BROKER_URL
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "b24sms",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "b24sms_cache"}}

# --- Celery ---------------------------------------------------------------------------------
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="b24sms")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Periodic jobs. Apps add theirs in b24sms/celery.py (BEAT_SCHEDULE) so the schedule is in one place.

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Staff and the model permission of what is done (view for reads, custom ones for actions).
    "DEFAULT_PERMISSION_CLASSES": ["b24sms.permissions.StaffModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "common.api.Pagination",  # ?page= checked: a 400 naming it, never a 500
    "PAGE_SIZE": 50,
    # Filters by id and date-time bounded; an empty query value is the same as none (common/api.py).
    "DEFAULT_FILTER_BACKENDS": ["common.api.FilterBackend"],
    # Every operation documents every status code it can answer, with the one error body (b24sms/api_schema.py).
    "DEFAULT_SCHEMA_CLASS": "b24sms.api_schema.AutoSchema",
    "EXCEPTION_HANDLER": "b24sms.api.exception_handler",
    # JSON bodies; multipart/form-data only where documents are uploaded (sendernames/api.py): an HTML form
    # cannot say null, and its empty values mean "left out", which a JSON schema does not describe.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "b24sms API",
    "DESCRIPTION": "i-dgtl sender names and the Bitrix24 SMS provider back-office.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],  # the schema holds no data: any staff user
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "b24sms.api_schema.postprocess"],
    # Several models have a field named "state" with different choices: name each enum explicitly.
    "ENUM_NAME_OVERRIDES": {
        "InstallationStateEnum": "providers.models.InstallationState",
        "RegistrationStateEnum": "providers.models.RegistrationState",
        "MessageStateEnum": "providers.models.MessageState",
        "StatusReportStateEnum": "providers.models.StatusReportState",
        "SubmissionStateEnum": "sendernames.models.SubmissionState",
    },
}

# --- i-dgtl ---------------------------------------------------------------------------------
# The default i-dgtl account (created or updated at start from these values).
IDGTL_API_URL = env("IDGTL_API_URL", default="https://direct.i-dgtl.ru/api/v1")
IDGTL_SENDER_NAMES_TOKEN = env("IDGTL_SENDER_NAMES_TOKEN", default="")
IDGTL_MESSAGES_TOKEN = env("IDGTL_MESSAGES_TOKEN", default="")
IDGTL_TIMEOUT = env.float("IDGTL_TIMEOUT", default=70.0)
IDGTL_CONNECT_TIMEOUT = env.float("IDGTL_CONNECT_TIMEOUT", default=5.0)
IDGTL_MAX_RETRIES = env.int("IDGTL_MAX_RETRIES", default=3)
IDGTL_RETRY_BACKOFF = env.float("IDGTL_RETRY_BACKOFF", default=1.0)  # seconds, doubled per retry
IDGTL_RATE_LIMIT_PER_SECOND = env.float("IDGTL_RATE_LIMIT_PER_SECOND", default=10.0)  # per account, all workers
IDGTL_CALLBACK_ALLOWED_IPS = env.list("IDGTL_CALLBACK_ALLOWED_IPS", default=[])
# Beat reads GET /balance of every account that has a key this often (seconds); 0 turns the polling off.
# Below an account's low-balance threshold the admins get one e-mail per crossing (idgtl/balance.py).
IDGTL_BALANCE_POLL_INTERVAL = env.int("IDGTL_BALANCE_POLL_INTERVAL", default=600)

# --- Sender-name applications --------------------------------------------------------------
SENDER_NAME_MAX_DOCUMENT_SIZE = env.int("SENDER_NAME_MAX_DOCUMENT_SIZE", default=10 * 1024 * 1024)
SENDER_NAME_MAX_DOCUMENTS = env.int("SENDER_NAME_MAX_DOCUMENTS", default=10)
# Django refuses a request with more file parts than this (400) before storing any: room for the
# documents of one application and the errors about too many, not Django's 100.
DATA_UPLOAD_MAX_NUMBER_FILES = max(20, 2 * SENDER_NAME_MAX_DOCUMENTS)
SENDER_NAME_SYNC_INTERVAL = env.int("SENDER_NAME_SYNC_INTERVAL", default=900)  # seconds

# --- Bitrix24 -------------------------------------------------------------------------------
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
B24_CLIENT_ID = env("B24_CLIENT_ID", default="")
B24_CLIENT_SECRET = env("B24_CLIENT_SECRET", default="")
B24_OAUTH_URL = env("B24_OAUTH_URL", default="https://oauth.bitrix.info/oauth/token/")
B24_TIMEOUT = env.float("B24_TIMEOUT", default=30.0)
B24_MAX_RETRIES = env.int("B24_MAX_RETRIES", default=3)
B24_RETRY_BACKOFF = env.float("B24_RETRY_BACKOFF", default=1.0)  # seconds, doubled per retry
B24_RATE_LIMIT_BURST = env.int("B24_RATE_LIMIT_BURST", default=50)
B24_RATE_LIMIT_DRAIN = env.float("B24_RATE_LIMIT_DRAIN", default=2.0)
# Portals the install endpoint accepts (domain suffixes such as ".bitrix24.ru"; empty = any), checked
# before it calls the portal back; production also requires an https client endpoint.
B24_ALLOWED_PORTAL_DOMAINS = env.list("B24_ALLOWED_PORTAL_DOMAINS", default=[])
B24_REQUIRE_HTTPS = env.bool("B24_REQUIRE_HTTPS", default=False)
# Every connection to a portal is refused when its host resolves to a private, loopback, link-local or
# other special address (bitrix24/urls.py). Off only for an on-premise portal inside the integrator's
# own network; loopback alone can be admitted (tests, the sandbox's fakes on 127.0.0.1).
B24_PORTAL_IP_FILTER = env.bool("B24_PORTAL_IP_FILTER", default=True)
B24_PORTAL_ALLOW_LOOPBACK = env.bool("B24_PORTAL_ALLOW_LOOPBACK", default=False)
# The install endpoint: at most this many seconds of outbound calls per request (the OAuth server's
# confirmation, then binding ONAPPUNINSTALL and ONAPPUPDATE; what does not fit is retried by a task), and at most
# B24_INSTALL_RATE requests per client address (django-ratelimit syntax, e.g. "30/m").
B24_INSTALL_TIME_BUDGET = env.float("B24_INSTALL_TIME_BUDGET", default=10.0)
B24_INSTALL_RATE = env("B24_INSTALL_RATE", default="30/m")

# --- Messages: sending, delivery, reporting (providers/services) ---------------------------
# The HANDLER refuses (400, nothing stored) a text of more SMS parts than this: 10 = 1530 GSM-7 characters or
# 670 UCS-2 (Cyrillic). i-dgtl documents no limit (docs/contracts/idgtl.md §3.1; idgtl.contract.SMS_MAX_PARTS).
MESSAGES_MAX_PARTS = env.int("MESSAGES_MAX_PARTS", default=10)
# Usage rollups and statements count a message on the day it was received, in this time zone (Moscow days).
USAGE_TIME_ZONE = env("USAGE_TIME_ZONE", default="Europe/Moscow")
MESSAGES_SEND_BATCH_SIZE = env.int("MESSAGES_SEND_BATCH_SIZE", default=1000)  # per POST /message (max 1000)
MESSAGES_SEND_DEBOUNCE = env.float("MESSAGES_SEND_DEBOUNCE", default=0.2)  # s: a burst becomes batches
MESSAGES_SEND_TIME_BUDGET = env.float("MESSAGES_SEND_TIME_BUDGET", default=240.0)  # s per task run
MESSAGES_SEND_MAX_ATTEMPTS = env.int("MESSAGES_SEND_MAX_ATTEMPTS", default=6)
MESSAGES_SEND_RETRY_BACKOFF = env.float("MESSAGES_SEND_RETRY_BACKOFF", default=15.0)  # s, doubled per attempt
MESSAGES_OUTCOME_LOOKUP_DELAY = env.float("MESSAGES_OUTCOME_LOOKUP_DELAY", default=30.0)  # s before GET /message
# A claimed send holds a lease: renewed (fenced by the attempt number) before every HTTP attempt of
# POST /message, it outlasts one attempt (connect + read timeout) by a margin. A lapsed lease means
# its worker is gone: the messages are looked up at i-dgtl (never resent blindly) by the next sweep.
MESSAGES_SEND_LEASE_MARGIN = env.float("MESSAGES_SEND_LEASE_MARGIN", default=10.0)  # s
MESSAGES_SEND_LEASE = env.float(
    "MESSAGES_SEND_LEASE", default=IDGTL_CONNECT_TIMEOUT + IDGTL_TIMEOUT + MESSAGES_SEND_LEASE_MARGIN
)
# A sent message without a final status is looked up at i-dgtl this many seconds after it was sent,
# then every MESSAGES_RECONCILE_INTERVAL seconds until the message lifetime ends.
MESSAGES_RECONCILE_SCHEDULE = env.list("MESSAGES_RECONCILE_SCHEDULE", cast=int, default=[120, 300, 900, 3600])
MESSAGES_RECONCILE_INTERVAL = env.int("MESSAGES_RECONCILE_INTERVAL", default=3600)  # s between later look-ups
MESSAGES_LIFETIME_HOURS = env.int("MESSAGES_LIFETIME_HOURS", default=25)  # i-dgtl's default lifetime
MESSAGES_LIFETIME_MARGIN = env.int("MESSAGES_LIFETIME_MARGIN", default=3600)  # s after it: FAILED
MESSAGES_REPORT_DEBOUNCE = env.float("MESSAGES_REPORT_DEBOUNCE", default=0.5)  # s: statuses become batches
# s: i-dgtl callbacks store their events; a worker applies what they stored this long after the first
MESSAGES_CALLBACK_APPLY_DEBOUNCE = env.float("MESSAGES_CALLBACK_APPLY_DEBOUNCE", default=0.5)
MESSAGES_REPORT_LOCK_LEASE = env.int("MESSAGES_REPORT_LOCK_LEASE", default=60)  # s: a portal's report runner, per batch
MESSAGES_REPORT_SCHEDULE_WINDOW = env.int("MESSAGES_REPORT_SCHEDULE_WINDOW", default=5)  # s
# A registration still pending (or being removed) after this long had its task lost or never queued:
# the beat job asks again. Longer than a registration task's own retries (about 11 minutes).
REGISTRATION_RESUME_AFTER = env.int("REGISTRATION_RESUME_AFTER", default=900)  # s
# Drift repair (beat): each portal's sender.list is compared with our registrations about this often,
# spread over the interval; what Bitrix24 lost is added back and recorded as a repair.
REGISTRATION_DRIFT_REPAIR_INTERVAL = env.int("REGISTRATION_DRIFT_REPAIR_INTERVAL", default=600)  # s
# An installation missing an application event binding (ONAPPUNINSTALL, ONAPPUPDATE) is bound again by
# beat, at most once per this many seconds (a bind that keeps failing is not hammered).
B24_EVENTS_BIND_RETRY_AFTER = env.int("B24_EVENTS_BIND_RETRY_AFTER", default=900)  # s
MESSAGES_REPORT_TIME_BUDGET = env.float("MESSAGES_REPORT_TIME_BUDGET", default=240.0)  # s per task run
# 5 s doubled up to an hour, then hourly: 36 attempts keep trying for about 26 h, past a message's
# 25 h lifetime and its margin, so a portal down for a day still gets every status it is owed.
MESSAGES_REPORT_MAX_ATTEMPTS = env.int("MESSAGES_REPORT_MAX_ATTEMPTS", default=36)
MESSAGES_REPORT_RETRY_BACKOFF = env.float("MESSAGES_REPORT_RETRY_BACKOFF", default=5.0)  # s, doubled per attempt
# Retention (providers/services/retention.py): a final message this many days after its final status
# loses its text and phone numbers (timeline, states and counts stay); 0 keeps everything. Beat works in
# short transactions of MESSAGES_RETENTION_BATCH_SIZE rows, for at most MESSAGES_RETENTION_TIME_BUDGET s a run.
MESSAGES_RETENTION_DAYS = env.int("MESSAGES_RETENTION_DAYS", default=180)
MESSAGES_RETENTION_BATCH_SIZE = env.int("MESSAGES_RETENTION_BATCH_SIZE", default=1000)
MESSAGES_RETENTION_TIME_BUDGET = env.float("MESSAGES_RETENTION_TIME_BUDGET", default=240.0)
# After each batch, a pause this many times as long as the batch took (9: retention works at most a tenth of its
# run), so the HANDLER keeps its throughput while a backlog is worked off (bench/scale.py); 0: no pause.
MESSAGES_RETENTION_PAUSE_FACTOR = env.float("MESSAGES_RETENTION_PAUSE_FACTOR", default=9.0)

# --- Sandbox ---------------------------------------------------------------------------------
# Sandbox mode: the project's own fake i-dgtl and fake Bitrix24 stand in for the real services.
# It is never on in production settings (see production.py).
SANDBOX = env.bool("B24SMS_SANDBOX", default=False)

# --- Operations (healthz, metrics) -------------------------------------------------------------
HEALTHZ_BEAT_MAX_AGE = env.int("HEALTHZ_BEAT_MAX_AGE", default=180)  # seconds since beat's last heartbeat
HEALTHZ_BROKER_TIMEOUT = env.float("HEALTHZ_BROKER_TIMEOUT", default=2.0)  # seconds
# GET /metrics: staff sessions, `Authorization: Bearer METRICS_TOKEN` when set, else these client networks.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list(
    "METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
)
# Reverse proxies (addresses or networks) whose X-Forwarded-For is believed, right to left
# (common/netaddr.py). Empty: the client is REMOTE_ADDR and X-Forwarded-For is never read.
# Every allowlist by address asks there: /metrics, IDGTL_CALLBACK_ALLOWED_IPS, the install rate limit.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
RATELIMIT_IP_META_KEY = "common.netaddr.ratelimit_ip"

# --- Secrets at rest (common/encryption.py) -------------------------------------------------------
# OAuth tokens, client secrets, i-dgtl keys and the HANDLER/callback URL secrets are stored encrypted with
# FIELD_ENCRYPTION_KEYS (Fernet keys, comma-separated, newest first: the first encrypts, any decrypts; rotate
# with `manage.py reencrypt_secrets`). SECRET_INDEX_KEY (32+ characters) keys the HMAC-SHA256 hashes that
# find a URL secret and check an application token; it is separate, so rotating the encryption keys changes
# no hash. Production refuses to start without both (check b24sms.E005/E006); `make run` and the tests
# make their own (settings/local.py, settings/test.py).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
SECRET_INDEX_KEY = env("SECRET_INDEX_KEY", default="")

# --- Audit trail and admin logins ------------------------------------------------------------------
# The audit trail (audit/): django-auditlog's entries, with the operator actions added, in one table.
AUDITLOG_LOGENTRY_MODEL = "audit.AuditLogEntry"
# auditlog's own LogEntry is swapped out, so its migrations (which would create an unused table whose
# foreign keys block `flush` on PostgreSQL) are not run; nothing of ours depends on them.
MIGRATION_MODULES = {"auditlog": None}
# Failed admin logins (django-axes): after AXES_FAILURE_LIMIT failures with one username from one client
# address, that username is refused from that address for AXES_COOLOFF_MINUTES (b24sms/lockout.py says so).
# The address is common.netaddr's, so behind TRUSTED_PROXIES it is the forwarded one. API tokens never log in.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "common.netaddr.ratelimit_ip"
AXES_LOCKOUT_CALLABLE = "b24sms.lockout.lockout_response"
AXES_RESET_ON_SUCCESS = True  # a successful login forgets the earlier failures
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the lockout ends when it said, tries or not

# --- E-mail to the administrators (a low i-dgtl balance) --------------------------------------
# DJANGO_ADMINS="Ops <ops@example.com>,Anna <anna@example.com>": whom mail_admins writes to (none: alerts are
# only logged). EMAIL_URL as django-environ reads it: smtp+tls://user:password@smtp.example.com:587; the
# default prints each mail to the log.
ADMINS = [(name, address) for name, address in getaddresses([env("DJANGO_ADMINS", default="")]) if address]
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
SERVER_EMAIL = env("DJANGO_SERVER_EMAIL", default="b24sms@localhost")
EMAIL_SUBJECT_PREFIX = env("DJANGO_EMAIL_SUBJECT_PREFIX", default="[b24sms] ")

# --- Logging ---------------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # common.logging: the bound context (message_id, installation, provider) on every line; secrets redacted.
    "filters": {"context": {"()": "common.logging.ContextFilter"}},
    "formatters": {
        "json": {"()": "common.logging.JsonFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "text": {"()": "common.logging.TextFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["context"],
            "formatter": LOG_FORMAT if LOG_FORMAT in ("json", "text") else "json",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "urllib3": {"level": "WARNING"},
    },
}
