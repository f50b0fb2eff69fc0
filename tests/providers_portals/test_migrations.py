"""Migration 0003: installations that existed before it each get their own callback secret."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from providers.services.installations import HANDLER_SECRET_PATTERN

BEFORE = [("providers", "0002_message_fewer_intake_indexes")]
AFTER = [("providers", "0003_installation_callback_secret")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_existing_installations_get_distinct_callback_secrets():
    try:
        old_apps = migrate(BEFORE)
        application = old_apps.get_model("providers", "BitrixApplication").objects.create(
            name="app", client_id="local.migr", client_secret="s"
        )
        OldInstallation = old_apps.get_model("providers", "Installation")
        for n in range(3):
            OldInstallation.objects.create(
                application=application,
                member_id=f"m{n}",
                domain=f"p{n}.test",
                client_endpoint=f"https://p{n}.test/rest/",
                handler_secret=f"handler-{n}",
            )

        new_apps = migrate(AFTER)
        rows = list(
            new_apps.get_model("providers", "Installation").objects.values_list("handler_secret", "callback_secret")
        )
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    assert sorted(handler for handler, _ in rows) == ["handler-0", "handler-1", "handler-2"]  # kept
    callbacks = [callback for _, callback in rows]
    assert len(set(callbacks)) == 3
    assert all(HANDLER_SECRET_PATTERN.fullmatch(callback) and len(callback) >= 43 for callback in callbacks)
