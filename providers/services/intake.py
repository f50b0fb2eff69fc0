"""Intake: a HANDLER call from Bitrix24 becomes one stored Message (exactly once), then a send."""

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from common.encryption import keyed_hash
from common.logging import log_context
from common.pg import kept_cursor
from providers.handler_form import HandlerForm
from providers.models import (
    APPLICATION_TOKEN_PURPOSE,
    Installation,
    InstallationState,
    Message,
    MessageState,
    MessageStatusChange,
    Provider,
    ProviderRegistration,
    RegistrationState,
    url_secret_index,
)
from providers.services import sending
from providers.services.installations import HANDLER_SECRET_PATTERN
from providers.services.timeline import ChangeSource
from providers.sms_parts import sms_parts


class HandlerForbidden(Exception):
    """Wrong secret or application token, or an installation that may not send."""


class ProviderNotRegistered(Exception):
    """The provider code is unknown, or not registered on this installation."""


def handler_secret_check(secret: str) -> None:
    """HandlerForbidden unless ``secret`` has the shape of a handler secret (secrets.token_urlsafe):
    anything else (a NUL, a space, non-ASCII, too long) is refused before any query, as a NUL
    reaching PostgreSQL would be a 500."""
    if not isinstance(secret, str) or not HANDLER_SECRET_PATTERN.fullmatch(secret):
        raise HandlerForbidden(_("Unknown handler."))


def installation_by_handler_secret(*, secret: str) -> Installation:
    """The installation whose HANDLER URL carries ``secret``; HandlerForbidden otherwise."""
    handler_secret_check(secret)
    installation = Installation.objects.by_handler_secret(secret).first()
    # The blind index finds the row; the decision is a constant-time compare of the whole keyed hash.
    if installation is None or not hmac.compare_digest(installation.handler_secret_index, url_secret_index(secret)):
        raise HandlerForbidden(_("Unknown handler."))
    return installation


def installation_by_callback_secret(*, secret: str) -> Installation:
    """The installation whose i-dgtl callback URL carries ``secret``; HandlerForbidden otherwise.

    Legacy: callback URLs given to i-dgtl before callback_secret existed carry the HANDLER secret,
    and i-dgtl keeps calling them for the messages sent then. They are still accepted HERE (never
    the other way round: the HANDLER refuses a callback secret). This opens nothing new: whoever
    holds a HANDLER secret can already send SMS, and a callback only updates the statuses of that
    installation's own messages.
    """
    handler_secret_check(secret)
    index = url_secret_index(secret)  # both URL secrets are hashed for one purpose: one hash matches either
    if connection.vendor == "postgresql":
        candidates = _callback_candidates_sql(index)
    else:
        candidates = _callback_candidates_orm(secret)
    # The blind indexes find the row; the decision is a constant-time compare of the whole keyed hash,
    # the callback secret first (two rows only if one's callback secret were another's handler secret).
    for field in ("callback_secret_index", "handler_secret_index"):
        for installation in candidates:
            if hmac.compare_digest(getattr(installation, field), index):
                return installation
    raise HandlerForbidden(_("Unknown handler."))


def _callback_candidates_orm(secret: str) -> list[Installation]:
    """The installations (at most two) whose callback or HANDLER secret is ``secret``, through the ORM."""
    found = Installation.objects.by_callback_secret(secret) | Installation.objects.by_handler_secret(secret)
    return list(found[:2])


@functools.cache
def _callback_lookup() -> tuple[str, tuple[str, ...], tuple[tuple, ...]]:
    """(SQL, attnames, converters per column) of :func:`_callback_candidates_sql`: every concrete field of
    Installation, in model order (Installation.from_db), with the converters the ORM applies to each (the
    encrypted fields decrypt, as they do when the ORM loads the row)."""
    quote = connection.ops.quote_name
    meta = Installation._meta
    table = quote(meta.db_table)
    fields = meta.concrete_fields
    sql = (
        f"SELECT {', '.join(f'{table}.{quote(f.column)}' for f in fields)} FROM {table} "
        f"WHERE {table}.{quote(meta.get_field('callback_secret_index').column)} = %s "
        f"OR {table}.{quote(meta.get_field('handler_secret_index').column)} = %s LIMIT 2"
    )
    converters = []
    for f in fields:
        column = f.get_col(meta.db_table)
        converters.append(
            tuple(
                (converter, column)
                for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            )
        )
    return sql, tuple(f.attname for f in fields), tuple(converters)


def _callback_candidates_sql(index: str) -> list[Installation]:
    """:func:`_callback_candidates_orm` for the URL secret's keyed hash ``index``, as one SQL text built once
    and prepared on the kept cursor (common/pg.py): the ORM builds and compiles its query again for every
    callback (about 0.5 ms of client CPU more)."""
    sql, names, converters = _callback_lookup()
    cursor = kept_cursor()
    with connection.wrap_database_errors:
        cursor.execute(sql, [index, index], prepare=True)
        rows = cursor.fetchall()
    found = []
    for row in rows:
        values = list(row)
        for position, column_converters in enumerate(converters):
            for converter, column in column_converters:
                values[position] = converter(values[position], column, connection)
        found.append(Installation.from_db(connection.alias, names, values))
    return found


# --- who may post to the HANDLER: one rule, read by the one-statement SQL and by Python --------------
@dataclass(frozen=True)
class AccessCondition:
    """One condition of the HANDLER's access rule, stated once for both paths: ``sql`` over the
    installation ``i`` and the call's named parameters (:func:`_access_params`) for the one statement,
    ``holds`` over the Installation and the same parameters for the general path, and the refusal."""

    sql: str
    holds: Callable[[Installation, dict], bool]
    refusal: str


def _compare(stored: str, given: str) -> bool:
    return hmac.compare_digest(stored.encode(), given.encode())


# docs/contracts/bitrix24.md §3 "Authenticity": the HANDLER URL's secret, then, when the call carries
# ``auth``, its application token and portal; and the application must be installed.
HANDLER_ACCESS_RULE = (
    AccessCondition(
        sql="i.handler_secret_index = %(secret_index)s::text",
        holds=lambda i, p: _compare(i.handler_secret_index, p["secret_index"]),
        refusal=_("Unknown handler."),
    ),
    AccessCondition(
        sql="(%(no_auth)s::boolean OR (i.application_token_hash <> '' "
        "AND i.application_token_hash = %(application_token_hash)s::text))",
        holds=lambda i, p: (
            p["no_auth"]
            or (i.application_token_hash != "" and _compare(i.application_token_hash, p["application_token_hash"]))
        ),
        refusal=_("Wrong application token."),
    ),
    AccessCondition(
        sql="(%(member_id)s::text = '' OR i.member_id = %(member_id)s::text)",
        holds=lambda i, p: p["member_id"] == "" or i.member_id == p["member_id"],
        refusal=_("The call comes from another portal."),
    ),
    AccessCondition(
        sql=f"i.state = '{InstallationState.ACTIVE.value}'",
        holds=lambda i, p: i.state == InstallationState.ACTIVE,
        refusal=_("The application is not installed on this portal."),
    ),
)


def _access_params(*, secret: str, form: HandlerForm) -> dict:
    """The call's side of the rule: the secret and application token as their keyed hashes (HMAC-SHA256,
    a few µs each; nothing is decrypted on the HANDLER's path) and the portal of ``auth``."""
    auth = form.auth
    return {
        "secret_index": url_secret_index(secret),
        "no_auth": auth is None,
        "application_token_hash": (
            keyed_hash(auth.application_token, purpose=APPLICATION_TOKEN_PURPOSE) if auth else ""
        ),
        "member_id": auth.member_id if auth else "",
    }


def _check_call(installation: Installation, *, secret: str, form: HandlerForm) -> None:
    """HandlerForbidden with the first condition of HANDLER_ACCESS_RULE that ``installation`` fails."""
    params = _access_params(secret=secret, form=form)
    for condition in HANDLER_ACCESS_RULE:
        if not condition.holds(installation, params):
            raise HandlerForbidden(condition.refusal)


# What the HANDLER needs of the registration, its installation and provider (one query, no ORM
# compilation per call: the handler's throughput is measured, bench/handler_intake.py).
def _in_model_order(model, names) -> tuple[str, ...]:
    """Model.from_db takes values in the order of the model's concrete fields."""
    return tuple(f.attname for f in model._meta.concrete_fields if f.attname in names)


LOOKUP_FIELDS = {
    ProviderRegistration: _in_model_order(ProviderRegistration, {"id", "state", "provider_id", "installation_id"}),
    Installation: _in_model_order(
        Installation, {"id", "handler_secret_index", "application_token_hash", "member_id", "state", "domain"}
    ),
    Provider: _in_model_order(Provider, {"id", "code", "sender_name"}),
}


@functools.cache
def _lookup_sql() -> str:
    quote = connection.ops.quote_name
    tables = {model: quote(model._meta.db_table) for model in LOOKUP_FIELDS}
    columns = ", ".join(
        f"{tables[model]}.{quote(model._meta.get_field(name).column)}"
        for model, names in LOOKUP_FIELDS.items()
        for name in names
    )
    registration, installation, provider = tables[ProviderRegistration], tables[Installation], tables[Provider]
    return (
        f"SELECT {columns} FROM {registration} "
        f"JOIN {installation} ON {installation}.{quote('id')} = {registration}.{quote('installation_id')} "
        f"JOIN {provider} ON {provider}.{quote('id')} = {registration}.{quote('provider_id')} "
        f"WHERE {installation}.{quote('handler_secret_index')} = %s AND {provider}.{quote('code')} = %s "
        f"AND {registration}.{quote('state')} <> %s"
    )


def _registration_lookup(*, secret: str, code: str) -> ProviderRegistration | None:
    """The registration of ``code`` on the installation with ``secret`` (at most one row: unique
    secret, unique code, one registration per provider and installation), or None."""
    with connection.cursor() as cursor:
        cursor.execute(_lookup_sql(), [url_secret_index(secret), code, RegistrationState.REMOVED])
        row = cursor.fetchone()
    if row is None:
        return None
    loaded, start = {}, 0
    for model, names in LOOKUP_FIELDS.items():
        loaded[model] = model.from_db(connection.alias, list(names), row[start : start + len(names)])
        start += len(names)
    registration = loaded[ProviderRegistration]
    registration.installation, registration.provider = loaded[Installation], loaded[Provider]
    return registration


def handler_authenticate(*, secret: str, form: HandlerForm) -> ProviderRegistration:
    """The registration of ``form.code`` on the installation whose HANDLER carries ``secret``.

    One query on the usual path. HandlerForbidden (403) for a wrong secret or token or an inactive
    installation; ProviderNotRegistered (404) for a code not registered there.
    """
    handler_secret_check(secret)
    registration = _registration_lookup(secret=secret, code=form.code)
    if registration is not None:
        _check_call(registration.installation, secret=secret, form=form)
        return registration
    installation = installation_by_handler_secret(secret=secret)
    _check_call(installation, secret=secret, form=form)
    raise ProviderNotRegistered(_("Unknown provider code %(code)s.") % {"code": form.code})


def message_receive(
    *, form: HandlerForm, installation: Installation | None = None, registration: ProviderRegistration | None = None
) -> tuple[Message, bool]:
    """Store the message once per (installation, message_id); ``created`` is False for a repeat.

    Give the ``registration`` found by :func:`handler_authenticate`, or the ``installation`` (the
    provider is then looked up: ProviderNotRegistered if ``form.code`` is not registered there).
    No pre-check: the unique constraint decides, also between two identical POSTs racing each other;
    the loser finds the winner's row. The send is enqueued after commit.
    """
    if registration is None:
        registration = (
            ProviderRegistration.objects.select_related("installation", "provider")
            .filter(installation=installation, provider__code=form.code)
            .exclude(state=RegistrationState.REMOVED)
            .first()
        )
        if registration is None:
            raise ProviderNotRegistered(_("Unknown provider code %(code)s.") % {"code": form.code})
    installation, provider = registration.installation, registration.provider
    message = Message(
        installation=installation,
        provider=provider,
        message_id=form.message_id,
        module_id=form.module_id,
        bindings=form.bindings,
        workflow_id=form.workflow_id,
        document_id=form.document_id,
        document_type=form.document_type,
        author_user_id=form.auth.user_id if form.auth else "",
        message_to=form.message_to,
        text=form.message_body,
        sender_name=provider.sender_name,
        bitrix_sent_at=form.ts,
        state=MessageState.RECEIVED,
        encoding=form.encoding,
        parts=form.parts,
    )
    if not message.parts:
        message.sms_parts_set()
    if connection.vendor == "postgresql":
        created = _insert_once_postgresql(message)
    else:
        created = _insert_once(message)
    if not created:
        return Message.objects.get(installation=installation, message_id=form.message_id), False
    # robust: a broker hiccup must not turn a stored message into a 500 (the beat sweep sends it)
    transaction.on_commit(_schedule_send, robust=True)
    return message, True


def _insert_once(message: Message) -> bool:
    """The message and its first timeline entry, unless the unique constraint says it is a repeat."""
    try:
        with transaction.atomic():
            message.save(force_insert=True)
            MessageStatusChange.objects.create(
                message=message, previous_state="", state=MessageState.RECEIVED, source=ChangeSource.HANDLER
            )
    except IntegrityError:
        if not Message.objects.filter(installation=message.installation, message_id=message.message_id).exists():
            raise
        return False
    return True


def _insert_once_postgresql(message: Message) -> bool:
    """Same as :func:`_insert_once` in ONE statement (one round trip, one commit, no exception on a
    repeat): INSERT ... ON CONFLICT DO NOTHING on the unique constraint, and the timeline entry for
    the row it returns. The HANDLER's throughput is mostly this."""
    fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(message, True), connection) for f in fields]
    change = MessageStatusChange._meta
    quote = connection.ops.quote_name
    sql = (
        f"WITH new_message AS ("
        f"INSERT INTO {quote(Message._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({quote('installation_id')}, {quote('message_id')}) DO NOTHING RETURNING {quote('id')}"
        f"), new_change AS ("
        f"INSERT INTO {quote(change.db_table)} ({', '.join(quote(change.get_field(n).column) for n in CHANGE_FIELDS)}) "
        f"SELECT id, %s, %s, %s, %s, %s, %s FROM new_message"
        f") SELECT id FROM new_message"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, "", MessageState.RECEIVED, "", ChangeSource.HANDLER, "", timezone.now()])
        row = cursor.fetchone()
    if row is None:
        return False
    message.pk = row[0]
    message._state.adding = False
    return True


CHANGE_FIELDS = ("message", "previous_state", "state", "idgtl_status", "source", "detail", "created_at")


# --- the HANDLER call: one statement on the usual path (PostgreSQL) ------------------------------------
def handler_call_accept(*, secret: str, form: HandlerForm) -> bool:
    """Authenticate a HANDLER call and store its message once; True if stored now, False for a repeat.

    HandlerForbidden (403) and ProviderNotRegistered (404) as :func:`handler_authenticate`. On
    PostgreSQL the usual call (a new message, a valid call) is ONE prepared statement that checks the
    call and stores the message and its timeline entry (:func:`_accept_in_one_statement`); anything
    else (a repeat, a refused call, a connection the database dropped) goes the full way:
    :func:`handler_authenticate`, then :func:`message_receive`.
    """
    handler_secret_check(secret)
    outcome_unknown = False
    if connection.vendor == "postgresql":
        try:
            if _accept_in_one_statement(secret=secret, form=form):
                transaction.on_commit(_schedule_send, robust=True)
                return True
        except (OperationalError, InterfaceError):
            if connection.in_atomic_block:
                raise
            # The pooled connection was dropped (database restart, idle timeout). The statement may or
            # may not have been committed: reconnect and take the full way, which finds out.
            connection.close()
            outcome_unknown = True
    registration = handler_authenticate(secret=secret, form=form)
    with log_context(message_id=form.message_id, installation=registration.installation.domain, provider=form.code):
        message, created = message_receive(registration=registration, form=form)
    if outcome_unknown and not created and message.state == MessageState.RECEIVED:
        transaction.on_commit(_schedule_send, robust=True)  # the lost attempt may have stored it unscheduled
    return created


def _accept_in_one_statement(*, secret: str, form: HandlerForm) -> bool:
    """One prepared statement: find the registration of ``form.code`` on the active installation
    with ``secret`` (and the application token and portal of ``auth`` when present), insert the
    message unless (installation, message_id) exists, and its first timeline entry. True if stored.

    It uses the request's connection as it is (no separate liveness query first: a dropped
    connection raises, and the caller reconnects and takes the full way).
    """
    auth = form.auth
    sql, json_fields = _one_statement_sql()
    params = {
        **_access_params(secret=secret, form=form),
        "code": form.code,
        "message_id": form.message_id,
        "module_id": form.module_id,
        "workflow_id": form.workflow_id,
        "author_user_id": auth.user_id if auth else "",
        "message_to": form.message_to,
        "text": form.message_body,
        "bitrix_sent_at": form.ts,
        "now": timezone.now(),
        "encoding": form.encoding,
        "parts": form.parts,  # counted by the form parser, before the statement
    }
    if not form.parts:  # a form not made by handler_form_parse
        counted = sms_parts(form.message_body)
        params.update(encoding=counted.encoding, parts=counted.parts)
    for name, field in json_fields.items():
        params[name] = connection.ops.adapt_json_value(getattr(form, name), field.encoder)
    cursor = kept_cursor()  # (a new cursor would build its parameter adapters anew: a tenth of the call)
    with connection.wrap_database_errors:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone() is not None


# Message columns the statement fills from the call (as named parameters, JSON ones adapted), from the
# registration it finds, and with fixed values; every other column takes its model default.
_FROM_CALL = (
    "message_id",
    "module_id",
    "workflow_id",
    "author_user_id",
    "message_to",
    "text",
    "bitrix_sent_at",
    "encoding",
    "parts",
)
_JSON_FROM_CALL = ("bindings", "document_id", "document_type")
_FROM_REGISTRATION = ("installation_id", "provider_id", "sender_name")


def _literal(value) -> str:
    """SQL for a model default: our own constants only (text, numbers, NULL)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''").replace("%", "%%") + "'"  # (% starts a placeholder)
    raise TypeError(f"no SQL literal for {value!r}")


@functools.cache
def _one_statement_sql() -> tuple[str, dict]:
    """(SQL with named parameters, the JSON fields given as parameters by name)."""
    quote = connection.ops.quote_name
    registration, installation, provider = (
        quote(m._meta.db_table) for m in (ProviderRegistration, Installation, Provider)
    )
    fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
    fixed = {"state": MessageState.RECEIVED.value, "created_at": "%(now)s", "updated_at": "%(now)s"}

    def value(field) -> str:
        cast = field.cast_db_type(connection)
        if field.attname in _FROM_REGISTRATION:
            return f"target.{field.attname}"
        if field.attname in _FROM_CALL or field.attname in _JSON_FROM_CALL:
            return f"%({field.attname})s::{cast}"
        if field.attname in fixed:
            given = fixed[field.attname]
            return f"{given}::{cast}" if given.startswith("%(") else f"{_literal(given)}::{cast}"
        return f"{_literal(field.get_default())}::{cast}"

    change = MessageStatusChange._meta
    change_values = {
        "message": "id",
        "previous_state": "''",
        "state": _literal(MessageState.RECEIVED.value),
        "idgtl_status": "''",
        "source": _literal(ChangeSource.HANDLER),
        "detail": "''",
        "created_at": "%(now)s::timestamptz",
    }
    sql = (
        f"WITH target AS ("
        f"SELECT i.{quote('id')} AS installation_id, p.{quote('id')} AS provider_id, "
        f"p.{quote('sender_name')} AS sender_name "
        f"FROM {registration} r JOIN {installation} i ON i.{quote('id')} = r.{quote('installation_id')} "
        f"JOIN {provider} p ON p.{quote('id')} = r.{quote('provider_id')} "
        f"WHERE p.{quote('code')} = %(code)s::text "
        f"AND r.{quote('state')} <> {_literal(RegistrationState.REMOVED.value)} "
        f"AND {' AND '.join(condition.sql for condition in HANDLER_ACCESS_RULE)}"
        f"), new_message AS ("
        f"INSERT INTO {quote(Message._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"SELECT {', '.join(value(f) for f in fields)} FROM target "
        f"ON CONFLICT ({quote('installation_id')}, {quote('message_id')}) DO NOTHING RETURNING {quote('id')}"
        f"), new_change AS ("
        f"INSERT INTO {quote(change.db_table)} ({', '.join(quote(change.get_field(n).column) for n in CHANGE_FIELDS)}) "
        f"SELECT {', '.join(change_values[n] for n in CHANGE_FIELDS)} FROM new_message"
        f") SELECT id FROM new_message"
    )
    return sql, {name: Message._meta.get_field(name) for name in _JSON_FROM_CALL}


def _schedule_send():
    sending.sending_schedule()  # looked up at call time: tests replace it
