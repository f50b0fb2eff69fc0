from . import messages, portals

urlpatterns = portals.urlpatterns + messages.urlpatterns
