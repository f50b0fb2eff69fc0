"""The i-dgtl callback's installation lookup (intake.installation_by_callback_secret): on PostgreSQL one SQL text
built once, elsewhere the ORM; both find the same installation, whole, for a callback secret and for a legacy
callback URL's HANDLER secret, and nothing for any other secret."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from providers.models import Installation, url_secret_index
from providers.services import intake


def concrete_values(installation: Installation) -> dict:
    return {f.attname: getattr(installation, f.attname) for f in Installation._meta.concrete_fields}


@pytest.fixture
def installations(installation):
    """The fixture's installation with every kind of field set, and another one beside it."""
    installation.access_token_expires_at = timezone.now() + timedelta(hours=1)
    installation.quota_monthly_parts = 1000
    installation.rate_limit_drain_per_second = 2.5
    installation.bound_events = "ONAPPUNINSTALL"
    installation.lacks_sender_update = True
    installation.save()
    other = Installation.objects.create(
        application=installation.application, member_id="other", domain="o.test", client_endpoint="https://o.test/rest/"
    )
    return installation, other


def unknown_secret(installation) -> str:
    secret = installation.callback_secret
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["callback_secret", "handler_secret"])
def test_the_callback_finds_its_installation_by_either_url_secret(installations, kind):
    installation, other = installations
    found = intake.installation_by_callback_secret(secret=getattr(installation, kind))
    assert found.pk == installation.pk
    assert concrete_values(found) == concrete_values(Installation.objects.get(pk=installation.pk))
    assert intake.installation_by_callback_secret(secret=getattr(other, kind)).pk == other.pk


@pytest.mark.django_db
@pytest.mark.parametrize("secret", ["unknown", "", "x" * 500, "bad\x00secret"])
def test_the_callback_refuses_any_other_secret(installations, secret):
    installation, _other = installations
    secret = unknown_secret(installation) if secret == "unknown" else secret
    with pytest.raises(intake.HandlerForbidden):
        intake.installation_by_callback_secret(secret=secret)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["callback_secret", "handler_secret", "unknown"])
def test_on_postgresql_the_sql_lookup_finds_what_the_orm_finds(installations, kind):
    if connection.vendor != "postgresql":
        pytest.skip("the one SQL text is PostgreSQL's; SQLite takes the ORM's")
    installation, _other = installations
    secret = unknown_secret(installation) if kind == "unknown" else getattr(installation, kind)

    by_sql = intake._callback_candidates_sql(url_secret_index(secret))
    by_orm = intake._callback_candidates_orm(secret)

    assert [concrete_values(i) for i in by_sql] == [concrete_values(i) for i in by_orm]
    assert all(not i._state.adding and i._state.db == connection.alias for i in by_sql)
    if kind == "unknown":
        assert by_sql == []
        with pytest.raises(intake.HandlerForbidden):
            intake.installation_by_callback_secret(secret=secret)
    else:
        assert [i.pk for i in by_sql] == [installation.pk]
        assert by_sql[0].handler_secret == installation.handler_secret  # decrypted, as the ORM loads it
        assert by_sql[0].callback_secret == installation.callback_secret
        assert by_sql[0].access_token == "at"


@pytest.mark.django_db
def test_on_postgresql_the_callback_lookup_is_the_one_cached_statement(installations, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("the one SQL text is PostgreSQL's; SQLite takes the ORM's")
    installation, _other = installations
    executed = []
    real_kept_cursor = intake.kept_cursor

    class Recording:
        def __init__(self, cursor):
            self.cursor = cursor

        def execute(self, sql, params, **kwargs):
            executed.append((sql, kwargs))
            return self.cursor.execute(sql, params, **kwargs)

        def fetchall(self):
            return self.cursor.fetchall()

    monkeypatch.setattr(intake, "kept_cursor", lambda: Recording(real_kept_cursor()))
    with CaptureQueriesContext(connection) as queries:
        found = intake.installation_by_callback_secret(secret=installation.callback_secret)
    assert found.pk == installation.pk
    assert queries.captured_queries == []  # no ORM query built and compiled
    assert executed == [(intake._callback_lookup()[0], {"prepare": True})]  # the one cached, prepared statement


@pytest.mark.django_db
def test_on_postgresql_a_callback_secret_that_is_another_installations_handler_secret_goes_to_its_owner(
    installations,
):
    """Two rows only if one's callback secret were another's handler secret: the callback secret wins."""
    if connection.vendor != "postgresql":
        pytest.skip("the one SQL text is PostgreSQL's; SQLite takes the ORM's")
    installation, other = installations
    other.handler_secret = installation.callback_secret
    other.save(update_fields=["handler_secret"])

    assert len(intake._callback_candidates_sql(url_secret_index(installation.callback_secret))) == 2
    assert intake.installation_by_callback_secret(secret=installation.callback_secret).pk == installation.pk
