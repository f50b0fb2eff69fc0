"""Public endpoints called by Bitrix24 (mounted at the site root). The HANDLER and the i-dgtl
callbacks (``views.inbound``) are mounted first of all in ``b24sms/urls.py``."""

from providers.views import install

urlpatterns = install.urlpatterns
