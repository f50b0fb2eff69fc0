"""Bitrix24 application lifecycle endpoints: install (ONAPPINSTALL or install page) and uninstall."""
urlpatterns = []
