from . import messages, portals, test_sms

urlpatterns = test_sms.urlpatterns + portals.urlpatterns + messages.urlpatterns
