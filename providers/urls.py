"""Public endpoints called by Bitrix24 and i-dgtl (install, uninstall, handler, delivery callbacks)."""
app_name = "b24"
urlpatterns = []
