"""Operational endpoints: /healthz, /metrics (django-prometheus's plus b24sms's own), /i18n/setlang/."""

from django.urls import include, path

from b24sms import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),  # shadows django_prometheus.urls: adds access control
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the admin's language switch
]
