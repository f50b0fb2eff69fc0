"""REST API for sender-name applications (staff only), mounted at /api/."""
from rest_framework.routers import SimpleRouter

from .api import SenderNameApplicationViewSet

router = SimpleRouter()
router.register("sender-names", SenderNameApplicationViewSet, basename="sender-names")
urlpatterns = router.urls
