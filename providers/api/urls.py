from providers.api import messages, portals, test_sms, usage

urlpatterns = test_sms.urlpatterns + usage.urlpatterns + portals.urlpatterns + messages.urlpatterns
