"""Operational endpoints: /healthz (metrics are served by django-prometheus, see b24sms/metrics.py)."""
from django.urls import path

from . import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
]
