"""Parsing of what Bitrix24 POSTs to our HANDLER (docs/contracts/bitrix24.md §3).

The body is ``application/x-www-form-urlencoded`` with PHP-style nested keys
(``bindings[0][OWNER_ID]``, ``document_id[2]``, ``auth[application_token]``; brackets may arrive as
``%5B``/``%5D``). :mod:`providers.php_form` turns it into nested data; this module checks it and
returns a :class:`HandlerForm`. Anything wrong raises :class:`HandlerFormError` naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from providers.php_form import PhpFormError, php_form_decode
from providers.sms_parts import GSM7, UCS2, sms_max_units, sms_parts

# Every value stored on Message fits its column (tests/providers_messages/test_hostile_input.py checks these
# against the model): PostgreSQL would refuse a longer one (or, in the HANDLER's one statement, cut it).
MESSAGE_ID_MAX_LENGTH = 128  # [S] docs/contracts/bitrix24.md §2.5
MESSAGE_TO_MAX_LENGTH = 64  # Message.message_to; Bitrix24 itself allows 50 (docs/contracts/bitrix24.md §2.6)
CODE_MAX_LENGTH = 128
TYPE_MAX_LENGTH = 30  # sender.add TYPE (docs/contracts/bitrix24.md §2.6)
MODULE_ID_MAX_LENGTH = 32  # Message.module_id
WORKFLOW_ID_MAX_LENGTH = 64  # Message.workflow_id
AUTH_USER_ID_MAX_LENGTH = 32  # Message.author_user_id
# module_id names the Bitrix24 module that sent the SMS: "crm", "bizproc" [D], a partner module "vendor.name".
MODULE_ID_PATTERN = re.compile(rf"[a-z][a-z0-9_.]{{0,{MODULE_ID_MAX_LENGTH - 1}}}")
TS_PATTERN = re.compile(r"[0-9]{1,12}")  # unix seconds
# The JSON columns (bindings, document_id, document_type) have no width: these keep them small.
BINDINGS_MAX = 50  # CRM links of one SMS: its card and the contacts or company of it
BINDING_KEYS_MAX = 8  # OWNER_TYPE_ID, OWNER_ID
DOCUMENT_ID_MAX_ITEMS = 3  # [module, document class, id], e.g. ["crm", "CCrmDocumentLead", "LEAD_98"]
JSON_STRING_MAX_LENGTH = 128  # any key or value inside them
FORM_FIELDS_MAX = 300  # about 30 in a call with auth; each binding adds two
# The body is a form (PHP http_build_query), in UTF-8: the only content type Bitrix24 POSTs to a HANDLER.
CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded"})
CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})
# Beyond the text (sent twice: message_body and properties[message_text]) a call is under 4 KiB.
BODY_ALLOWANCE_BYTES = 32 * 1024

# No text field takes these (a NUL cannot even be stored in PostgreSQL text or jsonb); a message
# body may still hold tabs and line breaks, an identifier no control character at all.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_IN_LINE = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_BODY = re.compile(r"[\x00-\x1f\x7f]|%(?:[01][0-9a-fA-F]|7[fF])")
_CONTROL_IN_BODY_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|%(?:0[0-8bBcCeEfF]|1[0-9a-fA-F]|7[fF])")
# _CONTROL_IN_BODY in two cheaper halves (:func:`_body_has_control`): the characters as bytes, the escapes.
_CONTROL_BYTES = bytes(range(0x20)) + b"\x7f"
_CONTROL_ESCAPE_IN_BODY = re.compile(r"%(?:[01][0-9a-fA-F]|7[fF])")
_SINGLE_LINE_FIELDS = ("code", "message_id", "message_to", "module_id", "type", "workflow_id", "ts")
_USUAL_MODULE_IDS = frozenset({"crm", "bizproc"})  # match MODULE_ID_PATTERN: no regex for them


class HandlerFormError(ValueError):
    """The body is not a HANDLER call we understand."""

    def __init__(self, message, field: str = ""):
        super().__init__(str(message))
        self.message = message
        self.field = field


class HandlerTextTooLong(HandlerFormError):
    """message_body is more SMS parts than MESSAGES_MAX_PARTS."""


class HandlerBodyTooLarge(HandlerFormError):
    """The body is larger than :func:`handler_body_max_bytes` (413)."""


class HandlerMediaTypeUnsupported(HandlerFormError):
    """The body is not a form in UTF-8 (415)."""


def handler_body_max_bytes() -> int:
    """The largest HANDLER body taken: the longest text MESSAGES_MAX_PARTS allow, twice, percent-encoded at
    its worst (6 bytes per GSM-7 character such as "é", 9 per UCS-2 unit such as "€"), and BODY_ALLOWANCE_BYTES
    for the rest: 51,128 bytes with 10 parts."""
    limit = settings.MESSAGES_MAX_PARTS
    text = max(6 * sms_max_units(GSM7, limit), 9 * sms_max_units(UCS2, limit))
    return 2 * text + BODY_ALLOWANCE_BYTES


def handler_content_type_check(content_type: str, params: dict) -> None:
    """HandlerMediaTypeUnsupported unless the (parsed, lower-cased) Content-Type is what Bitrix24 sends."""
    if content_type not in CONTENT_TYPES:
        raise HandlerMediaTypeUnsupported(
            _("The body must be application/x-www-form-urlencoded, as Bitrix24 sends it, not %(type)s.")
            % {"type": content_type or _("a body without Content-Type")}
        )
    charset = params.get("charset")
    if charset is not None and charset.lower() not in CHARSETS:
        raise HandlerMediaTypeUnsupported(_("The body must be in UTF-8, not %(charset)s.") % {"charset": charset})


def line_control_character(value: str) -> bool:
    """Whether ``value`` holds a control character (a line break or tab too): refused in an identifier or
    a phone number."""
    return _CONTROL_IN_LINE.search(value) is not None


@dataclass(frozen=True)
class HandlerAuth:
    """``auth[...]``: tokens of the message author (absent for messages without an author)."""

    application_token: str = ""
    member_id: str = ""
    domain: str = ""
    user_id: str = ""
    client_endpoint: str = ""
    access_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class HandlerForm:
    module_id: str  # "crm" or "bizproc"
    code: str
    message_id: str
    message_to: str
    message_body: str
    type: str = "SMS"
    ts: datetime | None = None
    bindings: list = field(default_factory=list)  # crm: [{"OWNER_TYPE_ID": "3", "OWNER_ID": "123"}, ...]
    workflow_id: str = ""  # bizproc
    document_id: list = field(default_factory=list)  # bizproc: ["crm", "CCrmDocumentLead", "LEAD_98"]
    document_type: list = field(default_factory=list)
    auth: HandlerAuth | None = None
    encoding: str = ""  # of message_body (providers/sms_parts.py), counted once here
    parts: int = 0


def _control_check(value, name: str) -> None:
    """HandlerFormError naming ``name`` if a key or string anywhere in ``value`` holds a control character."""
    if isinstance(value, str):
        if _CONTROL_IN_TEXT.search(value):
            raise HandlerFormError(_("The field %(field)s contains a control character.") % {"field": name}, name)
    elif isinstance(value, dict):
        for key, item in value.items():
            _control_check(str(key), name)
            _control_check(item, name)
    elif isinstance(value, list):
        for item in value:
            _control_check(item, name)


def _scalar(data: dict, name: str, *, required: bool = False, max_length: int | None = None) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise HandlerFormError(_("The field %(field)s is missing.") % {"field": name}, name)
        return ""
    if not isinstance(value, str):
        raise HandlerFormError(_("The field %(field)s must be a single value.") % {"field": name}, name)
    if max_length is not None and len(value) > max_length:
        raise HandlerFormError(
            _("The field %(field)s is longer than %(max)d characters.") % {"field": name, "max": max_length}, name
        )
    return value


def _as_list(value, name: str) -> list:
    """PHP arrays arrive as lists, or as dicts when their indexes are not contiguous."""
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        try:
            return [value[key] for key in sorted(value, key=int)]
        except ValueError:
            pass
    raise HandlerFormError(_("The field %(field)s must be a list.") % {"field": name}, name)


def _too_many(name: str, limit: int) -> HandlerFormError:
    return HandlerFormError(_("The field %(field)s has more than %(max)d items.") % {"field": name, "max": limit}, name)


def _short(text: str, name: str) -> str:
    if len(text) > JSON_STRING_MAX_LENGTH:
        raise HandlerFormError(
            _("The field %(field)s holds a value longer than %(max)d characters.")
            % {"field": name, "max": JSON_STRING_MAX_LENGTH},
            name,
        )
    return text


def _string_list(value, name: str) -> list[str]:
    items = _as_list(value, name)
    if not all(isinstance(item, str) for item in items):
        raise HandlerFormError(_("The field %(field)s must be a list of strings.") % {"field": name}, name)
    if len(items) > DOCUMENT_ID_MAX_ITEMS:
        raise _too_many(name, DOCUMENT_ID_MAX_ITEMS)
    for item in items:
        if len(item) > JSON_STRING_MAX_LENGTH:
            _short(item, name)
    return items


def _bindings(value) -> list[dict]:
    items = _as_list(value, "bindings")
    if len(items) > BINDINGS_MAX:
        raise _too_many("bindings", BINDINGS_MAX)
    bindings = []
    for item in items:
        if (
            not isinstance(item, dict)
            or len(item) > BINDING_KEYS_MAX
            or not all(isinstance(v, str) for v in item.values())
        ):
            raise HandlerFormError(_("Each of bindings must be a set of OWNER_TYPE_ID and OWNER_ID."), "bindings")
        for key, text in item.items():
            if len(key) > JSON_STRING_MAX_LENGTH or len(text) > JSON_STRING_MAX_LENGTH:
                _short(key, "bindings")
                _short(text, "bindings")
        bindings.append(dict(item))
    return bindings


def _module_id(data: dict, workflow_id: str) -> str:
    module_id = _scalar(data, "module_id", max_length=MODULE_ID_MAX_LENGTH)
    if not module_id:
        return "bizproc" if workflow_id else "crm"
    if module_id not in _USUAL_MODULE_IDS and not MODULE_ID_PATTERN.fullmatch(module_id):
        raise HandlerFormError(
            _("The field module_id must be the name of a Bitrix24 module, such as crm or bizproc."), "module_id"
        )
    return module_id


def _auth(value) -> HandlerAuth | None:
    if value in (None, ""):
        return None
    if not isinstance(value, dict):
        raise HandlerFormError(_("The field auth must be a set of values."), "auth")

    def text(key):
        item = value.get(key, "")
        if not isinstance(item, str):
            raise HandlerFormError(
                _("The field %(field)s must be a single value.") % {"field": f"auth[{key}]"}, f"auth[{key}]"
            )
        return item

    user_id = text("user_id")
    if len(user_id) > AUTH_USER_ID_MAX_LENGTH:
        raise HandlerFormError(
            _("The field %(field)s is longer than %(max)d characters.")
            % {"field": "auth[user_id]", "max": AUTH_USER_ID_MAX_LENGTH},
            "auth[user_id]",
        )
    return HandlerAuth(
        application_token=text("application_token"),
        member_id=text("member_id"),
        domain=text("domain"),
        user_id=user_id,
        client_endpoint=text("client_endpoint"),
        access_token=text("access_token"),
    )


def _timestamp(value: str) -> datetime | None:
    if not value:
        return None
    try:
        # TS_PATTERN without the regex: 1 to 12 ASCII digits (str.isdigit alone also takes other digits)
        if not (len(value) <= 12 and value.isascii() and value.isdigit()):
            raise ValueError(value)
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise HandlerFormError(_("The field ts must be a unix time."), "ts") from None


def _body_has_control(body: str, raw: bytes | None = None) -> bool:
    """Whether ``_CONTROL_IN_BODY.search(body)`` finds something, for a seventh of its CPU: a control character
    is a byte of its own in UTF-8 (``raw``, the body's bytes, or ``body`` encoded), found by deleting such
    bytes; an escape of one by a search that only starts at a "%"."""
    if raw is None:
        raw = body.encode("utf-8", "surrogatepass")
    return len(raw.translate(None, _CONTROL_BYTES)) != len(raw) or _CONTROL_ESCAPE_IN_BODY.search(body) is not None


def handler_form_parse(body: bytes | str) -> HandlerForm:
    """Parse a HANDLER body into a :class:`HandlerForm`; raise :class:`HandlerFormError` if it is not one."""
    raw = None
    if isinstance(body, bytes):
        raw = body
        try:
            body = body.decode("ascii")
        except UnicodeDecodeError:
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:
                raise HandlerFormError(_("The body is not valid UTF-8.")) from None
    if not body.strip():
        raise HandlerFormError(_("The body is empty."))
    try:
        data = php_form_decode(body, depth=3, max_fields=FORM_FIELDS_MAX, max_list_index=200)
    except PhpFormError as exc:
        if exc.field:  # given both as a value and as a set of values
            raise HandlerFormError(
                _("The field %(field)s must be a single value.") % {"field": exc.field}, exc.field
            ) from exc
        if exc.not_utf8:
            raise HandlerFormError(_("The body is not valid UTF-8.")) from exc
        if exc.too_many:
            raise HandlerFormError(_("The body has more than %(max)d fields.") % {"max": FORM_FIELDS_MAX}) from exc
        raise HandlerFormError(_("The body is not a form.")) from exc
    # A control character can only be in a key or value as itself or as its %XX escape (UTF-8 uses no
    # byte below 0x80 in a multi-byte character): one look at the raw body; only a body that has
    # some is searched field by field, to name the field.
    if _body_has_control(body, raw):
        any_control = _CONTROL_IN_BODY_TEXT.search(body) is not None  # beyond tabs and line breaks
        for key, value in data.items():
            if any_control:
                if _CONTROL_IN_TEXT.search(str(key)):
                    raise HandlerFormError(_("A field name contains a control character."))
                _control_check(value, str(key))
            if key in _SINGLE_LINE_FIELDS and isinstance(value, str) and _CONTROL_IN_LINE.search(value):
                raise HandlerFormError(_("The field %(field)s contains a control character.") % {"field": key}, key)

    properties = data.get("properties") if isinstance(data.get("properties"), dict) else {}
    message_to = _scalar(data, "message_to", max_length=MESSAGE_TO_MAX_LENGTH) or _scalar(
        properties, "phone_number", max_length=MESSAGE_TO_MAX_LENGTH
    )
    message_body = _scalar(data, "message_body") or _scalar(properties, "message_text")
    if not message_to:
        raise HandlerFormError(_("The field %(field)s is missing.") % {"field": "message_to"}, "message_to")
    if not message_body:
        raise HandlerFormError(_("The field %(field)s is missing.") % {"field": "message_body"}, "message_body")

    counted = _sms_parts_check(message_body)
    workflow_id = _scalar(data, "workflow_id", max_length=WORKFLOW_ID_MAX_LENGTH)
    return HandlerForm(
        module_id=_module_id(data, workflow_id),
        code=_scalar(data, "code", required=True, max_length=CODE_MAX_LENGTH),
        message_id=_scalar(data, "message_id", required=True, max_length=MESSAGE_ID_MAX_LENGTH),
        message_to=message_to,
        message_body=message_body,
        type=_scalar(data, "type", max_length=TYPE_MAX_LENGTH) or "SMS",
        ts=_timestamp(_scalar(data, "ts")),
        bindings=_bindings(data.get("bindings")),
        workflow_id=workflow_id,
        document_id=_string_list(data.get("document_id"), "document_id"),
        document_type=_string_list(data.get("document_type"), "document_type"),
        auth=_auth(data.get("auth")),
        encoding=counted.encoding,
        parts=counted.parts,
    )


def _sms_parts_check(text: str):
    """The encoding and parts of ``text``; HandlerFormError when it is more parts than MESSAGES_MAX_PARTS
    (10: 1530 GSM-7 characters or 670 UCS-2, docs/contracts/idgtl.md §3.1), so nothing is stored."""
    counted = sms_parts(text)
    limit = settings.MESSAGES_MAX_PARTS
    if counted.parts > limit:
        raise HandlerTextTooLong(
            _(
                "The text is too long: %(parts)d SMS parts (%(units)d characters in %(encoding)s). "
                "At most %(max)d parts are sent: %(gsm)d characters of the GSM alphabet (Latin letters, "
                "digits, common signs), or %(ucs)d when the text has Cyrillic, emoji or other characters outside it."
            )
            % {
                "parts": counted.parts,
                "units": counted.units,
                "encoding": counted.encoding_label,
                "max": limit,
                "gsm": sms_max_units(GSM7, limit),
                "ucs": sms_max_units(UCS2, limit),
            },
            "message_body",
        )
    return counted
