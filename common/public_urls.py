"""The URLs b24sms gives to Bitrix24 and i-dgtl: ``PUBLIC_BASE_URL`` + the path of a named route.

Every public URL is built here, by the route's name (``b24-handler``, ``idgtl-callback``, ``b24-install``,
``b24-uninstall``, ``b24-event``; see providers/views/): a route whose path changes changes every URL
handed out with it, and a route renamed without its callers fails with NoReverseMatch at once instead
of registering a HANDLER that answers 404 (tests/providers_portals/test_public_urls.py).
"""

from django.conf import settings
from django.urls import reverse


def public_url(name: str, **kwargs) -> str:
    """The absolute URL of the route ``name`` (keyword arguments fill its path) at PUBLIC_BASE_URL."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse(name, kwargs=kwargs or None)
