"""Operational endpoints (health)."""
from django.urls import path

urlpatterns = []
