"""REST API for sender-name applications (staff only)."""
urlpatterns = []
