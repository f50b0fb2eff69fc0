"""Operational endpoints: /healthz and /metrics (django-prometheus's metrics plus b24sms's own)."""
from django.urls import path

from . import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),  # shadows django_prometheus.urls: adds access control
]
