"""Production settings (docker compose, the Procfile, and any manage.py/wsgi/celery run that names none).

Passes `manage.py check --deploy` with no warnings once the required environment is set (README
"Security"); b24sms/checks.py names what is missing or unsafe.
"""

from b24sms.settings.base import *  # noqa: F401,F403
from b24sms.settings.base import env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")  # required: no default in production
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
SANDBOX = False  # the sandbox can never run by accident in production
B24_REQUIRE_HTTPS = True  # the install endpoint refuses http client endpoints
# Bitrix24's cloud portals by default; an on-premise portal is added by its own host name.
B24_ALLOWED_PORTAL_DOMAINS = env.list(
    "B24_ALLOWED_PORTAL_DOMAINS",
    default=[
        ".bitrix24.ru",
        ".bitrix24.by",
        ".bitrix24.kz",
        ".bitrix24.ua",
        ".bitrix24.com",
        ".bitrix24.de",
        ".bitrix24.eu",
    ],
)

# The reverse proxy terminates TLS and says so in X-Forwarded-Proto. Django believes this header from
# anyone, so gunicorn must be reachable only through the proxy: docker-compose publishes the port on
# 127.0.0.1 alone (a client reaching gunicorn directly could claim https). TRUSTED_PROXIES (base.py)
# says whose X-Forwarded-For is believed.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
