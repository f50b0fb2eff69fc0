"""REST API: /api/portals/, /api/providers/ (staff only)."""
urlpatterns = []
