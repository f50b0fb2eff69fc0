"""Inbound traffic: the Bitrix24 HANDLER (SMS to send) and i-dgtl delivery callbacks."""
urlpatterns = []
