"""Public endpoints called by Bitrix24 and i-dgtl (mounted at the site root)."""
from .views import inbound, install

urlpatterns = install.urlpatterns + inbound.urlpatterns
