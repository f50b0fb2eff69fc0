"""REST API: /api/messages/ (staff only)."""
urlpatterns = []
