"""Fixtures shared by every test.

Integration tests (marker ``integration``) need PostgreSQL (DATABASE_URL) and Redis
(CELERY_BROKER_URL). Without them they are skipped, unless B24SMS_REQUIRE_INTEGRATION=1 (CI),
in which case a skip is turned into a failure so CI cannot pass without running them.
"""

import os

import pytest

pytest_plugins = [
    "tests.fixtures.worker",
    "tests.fixtures.idgtl",
    "tests.fixtures.bitrix24",
    "tests.fixtures.redis_server",
]


def integration_stack_missing() -> str:
    """Why the integration stack is unavailable, or '' when it is there."""
    db = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not db.startswith(("postgres://", "postgresql://", "pgsql://")):
        return "DATABASE_URL does not point at PostgreSQL"
    if not broker.startswith(("redis://", "rediss://")):
        return "CELERY_BROKER_URL does not point at Redis"
    return ""


def pytest_collection_modifyitems(config, items):
    missing = integration_stack_missing()
    if not missing:
        return
    required = os.environ.get("B24SMS_REQUIRE_INTEGRATION") == "1"
    for item in items:
        if "integration" in item.keywords:
            if required:
                item.fixturenames.insert(0, "_integration_stack_required")  # fail before any setup
            else:
                item.add_marker(pytest.mark.skip(reason=f"integration stack missing: {missing}"))


@pytest.fixture
def _integration_stack_required():
    pytest.fail(f"B24SMS_REQUIRE_INTEGRATION=1 but {integration_stack_missing()}")


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Uploaded documents go to a temporary directory, never into the working tree."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="operator", password="operator-pass-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def api_client(staff_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(staff_user)
    return client
