"""REST API for portals, providers and messages (staff only)."""
urlpatterns = []
