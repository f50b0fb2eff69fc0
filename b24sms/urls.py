from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    # First: Bitrix24's HANDLER and i-dgtl's callbacks are the hottest paths, resolved before the rest.
    path("", include("providers.views.inbound")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("sendernames.urls")),
    path("api/", include("providers.api.urls")),
    path("", include("providers.urls")),
    path("", include("b24sms.ops_urls")),
    path("", include("django_prometheus.urls")),
]

handler404 = "b24sms.api.page_not_found"  # JSON under /api/
