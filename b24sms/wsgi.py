import os

from django.core.wsgi import get_wsgi_application

# Production unless told otherwise (a development setting must never be what a server falls back to).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "b24sms.settings.production")
application = get_wsgi_application()
