"""REST API for sender-name applications and names filed with several operators (staff only), mounted at /api/."""

from rest_framework.routers import SimpleRouter

from sendernames.api import SenderNameApplicationViewSet
from sendernames.api_groups import SenderNameGroupViewSet

router = SimpleRouter()
router.register("sender-names", SenderNameApplicationViewSet, basename="sender-names")
router.register("sender-name-groups", SenderNameGroupViewSet, basename="sender-name-groups")
urlpatterns = router.urls
