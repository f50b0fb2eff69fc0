"""Secrets at rest: encrypted model fields, and keyed hashes for secrets that are only compared or looked up.

- :class:`EncryptedCharField` stores its value as a Fernet token (AES-128-CBC + HMAC-SHA256, from
  ``cryptography``) made with the newest of ``FIELD_ENCRYPTION_KEYS``; any of them decrypts
  (``MultiFernet``), so a key is rotated by putting a new one first, running
  ``manage.py reencrypt_secrets`` (:func:`reencrypt_column`), then dropping the old one.
- :func:`keyed_hash` is HMAC-SHA256 with ``SECRET_INDEX_KEY``, a key of its own: rotating the
  encryption keys never changes a hash. A value that is only compared (Bitrix24's application token)
  is stored as its hash alone; a secret b24sms must send again (the HANDLER and callback URL secrets)
  is stored encrypted AND as its hash in a unique column (:class:`KeyedHashField`, a "blind index"),
  which finds the row with one indexed equality and no decryption.

An empty value stays empty (not encrypted, hash ""): "no key saved" stays visible and queryable.
An encrypted column can only be compared with "" (and NULL): equality with a value would never match
(each encryption is different), so such a lookup is a FieldError rather than an empty answer.
"""

import functools
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import models
from django.db.models.lookups import Exact, IsNull

KEYS_SETTING = "FIELD_ENCRYPTION_KEYS"
INDEX_KEY_SETTING = "SECRET_INDEX_KEY"
INDEX_KEY_MIN_LENGTH = 32


class SecretUndecryptable(ImproperlyConfigured):
    """A stored value does not decrypt with any of FIELD_ENCRYPTION_KEYS (its key was removed, or it was altered)."""


def encryption_keys() -> tuple[str, ...]:
    """FIELD_ENCRYPTION_KEYS as a tuple, newest first (a list, or one comma-separated string)."""
    keys = getattr(settings, KEYS_SETTING, None) or ()
    if isinstance(keys, str):
        keys = keys.split(",")
    return tuple(key.strip() for key in keys if key and key.strip())


def keys_problem(keys=None) -> str:
    """Why FIELD_ENCRYPTION_KEYS cannot be used ("" when it can): for the system check."""
    keys = encryption_keys() if keys is None else keys
    if not keys:
        return f"{KEYS_SETTING} is not set"
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return (
                f"{KEYS_SETTING} key number {position} is not a Fernet key "
                "(32 bytes, URL-safe base64: 44 characters ending in '=')"
            )
    return ""


def index_key_problem(key=None) -> str:
    """Why SECRET_INDEX_KEY cannot be used ("" when it can)."""
    key = getattr(settings, INDEX_KEY_SETTING, "") if key is None else key
    if not key:
        return f"{INDEX_KEY_SETTING} is not set"
    if len(key) < INDEX_KEY_MIN_LENGTH:
        return f"{INDEX_KEY_SETTING} is shorter than {INDEX_KEY_MIN_LENGTH} characters"
    return ""


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    problem = keys_problem(keys)
    if problem:
        raise ImproperlyConfigured(f'{problem}: secrets cannot be encrypted or read (README "Secrets at rest").')
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    """The MultiFernet of the configured keys (built once per key list; follows a settings change)."""
    return _fernet(encryption_keys())


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode("ascii")


def decrypt(token: str) -> str:
    return _decrypt(encryption_keys(), token)


# Rows loaded together carry the same tokens (messages with select_related("installation"): one installation's
# secrets per message): a token decrypted once is not decrypted again. Failures are not cached.
@functools.lru_cache(maxsize=4096)
def _decrypt(keys: tuple[str, ...], token: str) -> str:
    try:
        return _fernet(keys).decrypt(token.encode("ascii", "replace")).decode()
    except InvalidToken:
        raise SecretUndecryptable(
            f"A stored secret does not decrypt with any of {KEYS_SETTING}: the key it was encrypted with was "
            "removed (run `manage.py reencrypt_secrets` before removing a key), or the value was altered."
        ) from None


def decrypts(token: str) -> bool:
    """True if ``token`` is a value encrypted with one of the configured keys."""
    try:
        fernet().decrypt(token.encode("ascii", "replace"))
    except InvalidToken:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _index_key(key: str) -> bytes:
    problem = index_key_problem(key)
    if problem:
        raise ImproperlyConfigured(f'{problem}: secrets cannot be looked up or compared (README "Secrets at rest").')
    return key.encode()


# The HMAC keyed and fed ``purpose + NUL`` once per (key, purpose): a hash copies it and adds the value (half
# the CPU of a one-shot hmac.digest, which sets the key up again). Keyed by the key's text: a changed
# SECRET_INDEX_KEY takes effect. The cached object is only ever copied, never updated.
@functools.lru_cache(maxsize=32)
def _keyed_hmac(key: str, purpose: str) -> hmac.HMAC:
    return hmac.new(_index_key(key), purpose.encode() + b"\0", hashlib.sha256)


def keyed_hash(value: str, *, purpose: str) -> str:
    """HMAC-SHA256 of ``value`` with SECRET_INDEX_KEY, as 64 hex digits ("" for ""). ``purpose`` separates
    the kinds of value: the same text hashed for two purposes gives two unrelated hashes.

    The message is the purpose, a NUL byte and the value, in UTF-8 (stored hashes were made so: the same
    result as a one-shot ``hmac.digest`` of them, tests/common/test_encryption.py)."""
    if not value:
        return ""
    mac = _keyed_hmac(getattr(settings, INDEX_KEY_SETTING, ""), purpose).copy()
    mac.update(value.encode())
    return mac.hexdigest()


def keyed_hash_matches(stored: str, value: str, *, purpose: str) -> bool:
    """Whether ``value`` hashes to ``stored`` (constant-time compare); never for an empty one."""
    return bool(stored) and bool(value) and hmac.compare_digest(stored, keyed_hash(value, purpose=purpose))


class _EmptyOnlyExact(Exact):
    def get_prep_lookup(self):
        if self.rhs not in ("", None):
            raise FieldError(
                "An encrypted field can only be compared with '' (each encryption differs): "
                "look a secret up by its keyed hash instead."
            )
        return super().get_prep_lookup()


class EncryptedCharField(models.CharField):
    """A CharField stored encrypted (a text column: a token is about 1.4 x the text + 100 characters).

    ``max_length`` bounds the text as entered (forms, full_clean), not the column.
    """

    description = "Text stored encrypted (Fernet)"

    def get_internal_type(self):
        return "TextField"

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)

    def get_lookup(self, lookup_name):
        return {"exact": _EmptyOnlyExact, "isnull": IsNull}.get(lookup_name)

    def get_transform(self, name):
        return None


class KeyedHashField(models.CharField):
    """The keyed hash of another field of the model (``source``), recomputed on every save: a unique
    column finds the secret's row without holding the secret (a blind index).

    Saved with ``update_fields``, it is only recomputed when named there (models that change a source
    later add it: see providers.models.Installation.save).
    """

    description = "Keyed hash (HMAC-SHA256) of another field"

    def __init__(self, *args, source: str, purpose: str, **kwargs):
        self.source, self.purpose = source, purpose
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.update(source=self.source, purpose=self.purpose)
        if kwargs.get("max_length") == 64:
            del kwargs["max_length"]
        if kwargs.get("editable") is False:
            del kwargs["editable"]
        return name, path, args, kwargs

    def pre_save(self, model_instance, add):
        value = keyed_hash(getattr(model_instance, self.source) or "", purpose=self.purpose)
        setattr(model_instance, self.attname, value)
        return value


def reencrypt_column(connection, *, table: str, column: str, pk: str = "id", batch_size: int = 500) -> dict[str, int]:
    """Encrypt every value of one column again with the newest key, in place, straight on the rows.

    Each row is written with ``UPDATE ... WHERE pk = %s AND column = <the token read>``: a value
    written concurrently (a token refresh) is never overwritten with the older one read here. The
    text is never decrypted outside MultiFernet.rotate. Returns counts: rotated, skipped (changed
    meanwhile), undecryptable (ids are not returned, nor values logged).
    """
    quote = connection.ops.quote_name
    table_sql, column_sql, pk_sql = quote(table), quote(column), quote(pk)
    multi = fernet()
    counts = {"rotated": 0, "skipped": 0, "undecryptable": 0}
    last = None
    while True:
        with connection.cursor() as cursor:
            where = f"{column_sql} <> ''" + (f" AND {pk_sql} > %s" if last is not None else "")
            cursor.execute(
                f"SELECT {pk_sql}, {column_sql} FROM {table_sql} WHERE {where} ORDER BY {pk_sql} "
                f"LIMIT {int(batch_size)}",
                [last] if last is not None else [],
            )
            rows = cursor.fetchall()
            for row_pk, token in rows:
                try:
                    rotated = multi.rotate(token.encode("ascii", "replace")).decode("ascii")
                except InvalidToken:
                    counts["undecryptable"] += 1
                    continue
                cursor.execute(
                    f"UPDATE {table_sql} SET {column_sql} = %s WHERE {pk_sql} = %s AND {column_sql} = %s",
                    [rotated, row_pk, token],
                )
                counts["rotated" if cursor.rowcount == 1 else "skipped"] += 1
        if len(rows) < batch_size:
            return counts
        last = rows[-1][0]


def encrypted_columns() -> list[tuple[type[models.Model], models.Field]]:
    """(model, field) of every EncryptedCharField of the installed models."""
    from django.apps import apps

    return [
        (model, field)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedCharField)
    ]


# --- Data migrations (plaintext columns <-> encrypted ones) -----------------------------------------------


def encrypt_plaintext_column(connection, *, table: str, column: str, pk: str = "id") -> int:
    """Encrypt the plaintext values of one column in place (values that already decrypt are left). Returns
    the number encrypted. For migrations: raw SQL, independent of the model's state."""
    return _convert_column(
        connection, table=table, column=column, pk=pk, convert=lambda value: None if decrypts(value) else encrypt(value)
    )


def decrypt_column(connection, *, table: str, column: str, pk: str = "id") -> int:
    """The reverse: decrypt the values of one column in place (plaintext ones are left)."""
    return _convert_column(
        connection, table=table, column=column, pk=pk, convert=lambda value: decrypt(value) if decrypts(value) else None
    )


def hash_column(
    connection, *, table: str, source: str, target: str, purpose: str, pk: str = "id", encrypted: bool = False
) -> int:
    """Write the keyed hash of ``source`` (decrypted first when ``encrypted``) into ``target``, for every row."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote(pk)}, {quote(source)} FROM {quote(table)}")
        rows = cursor.fetchall()
        for row_pk, value in rows:
            value = value or ""
            if encrypted and value:
                value = decrypt(value)
            cursor.execute(
                f"UPDATE {quote(table)} SET {quote(target)} = %s WHERE {quote(pk)} = %s",
                [keyed_hash(value, purpose=purpose), row_pk],
            )
    return len(rows)


def deferred_checks_run(schema_editor) -> None:
    """After rows were rewritten in a migration that alters the same tables next: PostgreSQL refuses an ALTER
    TABLE while the (deferred) foreign-key checks of those writes are pending, so run them now."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        schema_editor.execute("SET CONSTRAINTS ALL DEFERRED")


def _convert_column(connection, *, table, column, pk, convert) -> int:
    quote = connection.ops.quote_name
    changed = 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote(pk)}, {quote(column)} FROM {quote(table)} WHERE {quote(column)} <> ''")
        for row_pk, value in cursor.fetchall():
            new = convert(value)
            if new is None:
                continue
            cursor.execute(f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE {quote(pk)} = %s", [new, row_pk])
            changed += 1
    return changed
