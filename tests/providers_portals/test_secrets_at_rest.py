"""Secrets at rest (common/encryption.py): what the database holds, key rotation, the keyed hashes, the migration."""

import hashlib
import hmac
import io

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.exceptions import FieldError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from common.encryption import SecretUndecryptable
from idgtl.models import IdgtlAccount
from providers.models import BitrixApplication, Installation, url_secret_index

INSTALLATION_SECRETS = ("access_token", "refresh_token", "handler_secret", "callback_secret")


def raw_row(table: str, pk: int) -> dict:
    """The row as the database holds it (no field converts anything)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)} WHERE id = %s", [pk])
        names = [column[0] for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


def table_columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor, table)}


def hmac_hex(key: str, purpose: str, value: str) -> str:
    return hmac.new(key.encode(), f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()


def test_tokens_and_secrets_are_stored_encrypted_and_read_back_as_text(settings, make_installation, application):
    installation = make_installation(access_token="access-token-at-rest-1", refresh_token="refresh-token-at-rest-1")
    key = Fernet(settings.FIELD_ENCRYPTION_KEYS[0])

    row = raw_row("providers_installation", installation.pk)
    for name in INSTALLATION_SECRETS:
        plaintext = getattr(installation, name)
        assert plaintext and plaintext not in row[name], name
        assert key.decrypt(row[name].encode()).decode() == plaintext, name
    application_row = raw_row("providers_bitrixapplication", application.pk)
    assert application.client_secret not in application_row["client_secret"]
    assert key.decrypt(application_row["client_secret"].encode()).decode() == application.client_secret

    fresh = Installation.objects.get(pk=installation.pk)
    assert [getattr(fresh, name) for name in INSTALLATION_SECRETS] == [
        getattr(installation, name) for name in INSTALLATION_SECRETS
    ]
    assert fresh.access_token == "access-token-at-rest-1"
    assert BitrixApplication.objects.get(pk=application.pk).client_secret == application.client_secret


def test_idgtl_keys_are_stored_encrypted(settings, db):
    account = IdgtlAccount.objects.create(
        name="at rest", sender_names_key="sender-names-key-at-rest", messages_key="messages-key-at-rest"
    )
    row = raw_row("idgtl_idgtlaccount", account.pk)
    key = Fernet(settings.FIELD_ENCRYPTION_KEYS[0])
    assert "sender-names-key-at-rest" not in row["sender_names_key"]
    assert "messages-key-at-rest" not in row["messages_key"]
    assert key.decrypt(row["messages_key"].encode()) == b"messages-key-at-rest"
    fresh = IdgtlAccount.objects.get(pk=account.pk)
    assert (fresh.sender_names_key, fresh.messages_key) == ("sender-names-key-at-rest", "messages-key-at-rest")
    assert fresh.messages_key_masked == "••••rest"
    # "no key saved" stays visible and queryable; a value can never be compared (every encryption differs)
    empty = IdgtlAccount.objects.create(name="empty")
    assert raw_row("idgtl_idgtlaccount", empty.pk)["messages_key"] == ""
    assert list(IdgtlAccount.objects.filter(name__in=["at rest", "empty"], messages_key="")) == [empty]
    with pytest.raises(FieldError):
        list(IdgtlAccount.objects.filter(messages_key="messages-key-at-rest"))


def test_the_application_token_is_kept_as_a_keyed_hash_only(settings, make_installation):
    installation = make_installation(application_token="app-token-kept-hashed")

    assert "application_token" not in table_columns("providers_installation")  # no plaintext column
    stored = raw_row("providers_installation", installation.pk)["application_token_hash"]
    assert stored == hmac_hex(settings.SECRET_INDEX_KEY, "application-token", "app-token-kept-hashed")
    assert "app-token-kept-hashed" not in str(raw_row("providers_installation", installation.pk))

    fresh = Installation.objects.get(pk=installation.pk)
    assert fresh.application_token_matches("app-token-kept-hashed")
    for wrong in ("app-token-kept-hashe", "app-token-kept-hashed ", "APP-TOKEN-KEPT-HASHED", "", stored):
        assert not fresh.application_token_matches(wrong), wrong
    with pytest.raises(AttributeError, match="keyed hash"):
        fresh.application_token  # noqa: B018 (write-only)
    assert not make_installation(application_token="").application_token_matches("")  # none stored: nothing matches


def test_url_secrets_are_found_by_their_blind_index(settings, make_installation):
    installation, other = make_installation(), make_installation()
    row = raw_row("providers_installation", installation.pk)
    assert row["handler_secret_index"] == hmac_hex(settings.SECRET_INDEX_KEY, "url-secret", installation.handler_secret)
    assert row["callback_secret_index"] == url_secret_index(installation.callback_secret)

    assert Installation.objects.by_handler_secret(installation.handler_secret).get() == installation
    assert Installation.objects.by_callback_secret(other.callback_secret).get() == other
    assert not Installation.objects.by_handler_secret(installation.callback_secret).exists()
    assert not Installation.objects.by_handler_secret(installation.handler_secret[:-1]).exists()
    with pytest.raises(FieldError):
        list(Installation.objects.filter(handler_secret=installation.handler_secret))


def test_a_changed_url_secret_changes_its_index_and_indexes_are_unique(make_installation):
    installation, other = make_installation(), make_installation()
    installation.handler_secret = "a-new-handler-secret-0123456789"
    installation.save(update_fields=["handler_secret"])
    assert Installation.objects.by_handler_secret("a-new-handler-secret-0123456789").get() == installation

    other.handler_secret = "a-new-handler-secret-0123456789"
    with pytest.raises(IntegrityError), transaction.atomic():
        other.save()


def test_rotation_reencrypts_everything_with_the_newest_key_and_the_old_one_can_go(
    settings, make_installation, application
):
    old, new = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    installation = make_installation(access_token="access-before-rotation", refresh_token="refresh-before-rotation")
    account = IdgtlAccount.objects.create(name="rotated", messages_key="messages-key-before-rotation")
    index_before = raw_row("providers_installation", installation.pk)["handler_secret_index"]

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert Installation.objects.get(pk=installation.pk).access_token == "access-before-rotation"  # old values read
    out = io.StringIO()
    call_command("reencrypt_secrets", stdout=out)

    assert "providers.Installation.access_token: 1 re-encrypted" in out.getvalue()
    row = raw_row("providers_installation", installation.pk)
    for name in INSTALLATION_SECRETS:
        assert Fernet(new).decrypt(row[name].encode()).decode() == getattr(installation, name), name
        with pytest.raises(InvalidToken):
            Fernet(old).decrypt(row[name].encode())
    assert row["handler_secret_index"] == index_before  # the keyed hashes do not depend on the encryption keys

    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key removed
    fresh = Installation.objects.by_handler_secret(installation.handler_secret).get()
    assert (fresh.access_token, fresh.refresh_token) == ("access-before-rotation", "refresh-before-rotation")
    assert BitrixApplication.objects.get(pk=application.pk).client_secret == application.client_secret
    assert IdgtlAccount.objects.get(pk=account.pk).messages_key == "messages-key-before-rotation"
    call_command("reencrypt_secrets", stdout=io.StringIO())  # again: harmless


def test_rotation_refuses_to_let_a_key_go_while_a_value_needs_it(settings, make_installation):
    installation = make_installation(access_token="access-of-a-lost-key")
    foreign = Fernet(Fernet.generate_key()).encrypt(b"encrypted-with-a-key-not-configured").decode()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE providers_installation SET refresh_token = %s WHERE id = %s", [foreign, installation.pk])

    out = io.StringIO()
    with pytest.raises(CommandError, match="providers.Installation.refresh_token"):
        call_command("reencrypt_secrets", stdout=out)
    assert (
        "providers.Installation.refresh_token: 0 re-encrypted, 0 changed meanwhile (already with the newest key), "
        "1 undecryptable" in out.getvalue()
    )
    assert raw_row("providers_installation", installation.pk)["refresh_token"] == foreign  # left as it was
    with pytest.raises(SecretUndecryptable, match="reencrypt_secrets"):
        Installation.objects.get(pk=installation.pk)


# --- The migration that converts plaintext rows -------------------------------------------------------------

BEFORE = [("providers", "0009_installation_quotas"), ("idgtl", "0003_idgtlaccount_balance")]
AFTER = [("providers", "0010_secrets_encrypted"), ("idgtl", "0004_account_keys_encrypted")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_plaintext_rows_and_going_back_decrypts_them(settings):
    key = Fernet(settings.FIELD_ENCRYPTION_KEYS[0])
    try:
        old_apps = migrate(BEFORE)
        application = old_apps.get_model("providers", "BitrixApplication").objects.create(
            name="app", client_id="local.migr.secrets", client_secret="client-secret-plain"
        )
        old_apps.get_model("idgtl", "IdgtlAccount").objects.create(
            name="migrated", sender_names_key="sender-names-key-plain", messages_key=""
        )
        OldInstallation = old_apps.get_model("providers", "Installation")
        for n in range(2):
            OldInstallation.objects.create(
                application=application,
                member_id=f"m{n}",
                domain=f"p{n}.test",
                client_endpoint=f"https://p{n}.test/rest/",
                access_token=f"access-plain-{n}",
                refresh_token=f"refresh-plain-{n}",
                application_token=f"app-token-{n}",
                handler_secret=f"handler-plain-{n}",
                callback_secret=f"callback-plain-{n}",
            )

        new_apps = migrate(AFTER)
        rows = {
            row["member_id"]: row
            for row in (
                raw_row("providers_installation", pk) for pk in OldInstallation.objects.values_list("pk", flat=True)
            )
        }
        account_row = raw_row(
            "idgtl_idgtlaccount", new_apps.get_model("idgtl", "IdgtlAccount").objects.get(name="migrated").pk
        )
        application_row = raw_row("providers_bitrixapplication", application.pk)
        Installation = new_apps.get_model("providers", "Installation")
        found = Installation.objects.get(handler_secret_index=url_secret_index("handler-plain-1"))
        found_by_callback = Installation.objects.get(callback_secret_index=url_secret_index("callback-plain-0"))

        old_apps = migrate(BEFORE)
        back = {i.member_id: i for i in old_apps.get_model("providers", "Installation").objects.all()}
        back_account = old_apps.get_model("idgtl", "IdgtlAccount").objects.get(name="migrated")
        back_application = old_apps.get_model("providers", "BitrixApplication").objects.get(pk=application.pk)
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    for n in range(2):
        row = rows[f"m{n}"]
        assert "application_token" not in row
        for column, plaintext in (
            ("access_token", f"access-plain-{n}"),
            ("refresh_token", f"refresh-plain-{n}"),
            ("handler_secret", f"handler-plain-{n}"),
            ("callback_secret", f"callback-plain-{n}"),
        ):
            assert key.decrypt(row[column].encode()).decode() == plaintext, column
        assert row["application_token_hash"] == hmac_hex(
            settings.SECRET_INDEX_KEY, "application-token", f"app-token-{n}"
        )
        assert row["handler_secret_index"] == url_secret_index(f"handler-plain-{n}")
    assert key.decrypt(application_row["client_secret"].encode()) == b"client-secret-plain"
    assert key.decrypt(account_row["sender_names_key"].encode()) == b"sender-names-key-plain"
    assert account_row["messages_key"] == ""
    assert (found.member_id, found.access_token) == ("m1", "access-plain-1")
    assert found_by_callback.member_id == "m0"

    # Reversed: every encrypted value is plaintext again; the application tokens (only hashed) come back empty.
    assert [
        (back[f"m{n}"].access_token, back[f"m{n}"].handler_secret, back[f"m{n}"].application_token) for n in range(2)
    ] == [("access-plain-0", "handler-plain-0", ""), ("access-plain-1", "handler-plain-1", "")]
    assert back_account.sender_names_key == "sender-names-key-plain"
    assert back_application.client_secret == "client-secret-plain"
