"""Log lines with context (message id, installation, provider) and without secrets.

Services and tasks bind what a stretch of work concerns::

    with log_context(message_id=message.pk, installation=installation.domain, provider=provider.code):
        logger.info("sending")          # every line inside carries the three fields

`ContextFilter` (on the console handler, see settings.LOGGING) copies the bound fields onto each
record, so the JSON formatter writes them as keys. The formatters here redact the *finished* line
(message, extras and tracebacks alike): Authorization headers, anything named like a token, key,
secret or password (Bitrix24's AUTH_ID / REFRESH_ID too), the password in a URL
(``postgres://user:[REDACTED]@host``), the secrets in our HANDLER/callback URLs, and the configured
keys themselves.
"""

import contextlib
import contextvars
import inspect
import logging
import re
from datetime import UTC, datetime
from logging.config import dictConfig

from celery.signals import task_postrun, task_prerun
from django.conf import settings
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

REDACTED = "[REDACTED]"


def mask_secret(value: str) -> str:
    """What an operator may see of a key or token once it is saved: its last four characters."""
    if not value:
        return ""
    if len(value) <= 8:
        return "••••"
    return "••••" + value[-4:]


_context: contextvars.ContextVar[dict] = contextvars.ContextVar("b24sms_log_context", default={})  # noqa: B039 (never mutated: log_context sets a new dict)


@contextlib.contextmanager
def log_context(**fields):
    """Bind fields (None values are ignored) to every log line written inside the block."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield merged
    finally:
        _context.reset(token)


def current_log_context() -> dict:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Adds the bound context to the record; explicit ``extra=`` values win."""

    def filter(self, record):
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# --- Redaction ----------------------------------------------------------------------------------
_SECRET_NAME = (
    r"(?:[A-Za-z0-9_\-\[\]\.]*(?:token|secret|passw(?:or)?d|api[_-]?key|_key|apikey|authorization|sessionid"
    r"|csrftoken|auth_id|refresh_id)[A-Za-z0-9_\-\]]*|auth|key)"
)
_Q = r"(?:\\*[\"'])?"  # an optional quote, possibly backslash-escaped (JSON inside JSON)
_VALUE = r"[^\s\"',;&}\)\\]+"
_PATTERNS = [
    # The password in a URL's userinfo: postgres://user:pw@host, redis://:pw@host, amqp://u:pw@host//
    (
        re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s/@:\"']*:)(?!\[REDACTED\]@)[^\s/\"']+@"),  # up to the last @
        lambda m: f"{m.group(1)}{REDACTED}@",
    ),
    # Authorization: Basic xxx / Bearer xxx / Token xxx (header lines, dict reprs, JSON)
    (
        re.compile(r"(?i)(authorization" + _Q + r"\s*[:=]\s*" + _Q + r")(?:(basic|bearer|token)\s+)?" + _VALUE),
        lambda m: f"{m.group(1)}{(m.group(2) + ' ') if m.group(2) else ''}{REDACTED}",
    ),
    (re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=_\-\.]{8,}"), lambda m: f"{m.group(1)} {REDACTED}"),
    # name=value, name: value, "name": "value", 'name': 'value'  (JSON, dict reprs, query strings, forms)
    (
        re.compile(
            r"(?i)("
            + _Q
            + r"\b"
            + _SECRET_NAME
            + _Q
            + r"\s*[:=]\s*"
            + _Q
            + r")(?!\[REDACTED\])(?!(?:basic|bearer|token) \[REDACTED\])"
            + _VALUE
        ),
        lambda m: f"{m.group(1)}{REDACTED}",
    ),
    # URL-encoded auth[...] form keys: auth%5Baccess_token%5D=...
    (re.compile(r"(?i)(auth%5B[a-z_]+%5D=)[^&\s\"']+"), lambda m: f"{m.group(1)}{REDACTED}"),
    # The per-installation secrets in our public URLs.
    (
        re.compile(r"(/(?:b24/handler|b24/uninstall|b24/event|idgtl/callback)/)[^/\s\"'?]+"),
        lambda m: f"{m.group(1)}{REDACTED}",
    ),
]


def _configured_secrets() -> list[str]:
    try:
        values = [
            getattr(settings, name, "")
            for name in (
                "SECRET_KEY",
                "IDGTL_SENDER_NAMES_TOKEN",
                "IDGTL_MESSAGES_TOKEN",
                "B24_CLIENT_SECRET",
                "METRICS_TOKEN",
            )
        ]
    except Exception:  # settings not configured (a bare script)
        return []
    return sorted({v for v in values if isinstance(v, str) and len(v) >= 6}, key=len, reverse=True)


def redact(text: str) -> str:
    """The text with every secret-looking value replaced by [REDACTED]."""
    if not text:
        return text
    for secret in _configured_secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(_JsonFormatter):
    """python-json-logger's JSON lines (time in UTC, ISO 8601), redacted."""

    def formatTime(self, record, datefmt=None):
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def format(self, record):
        return redact(super().format(record))


class TextFormatter(logging.Formatter):
    """Plain text lines with the bound context appended, redacted."""

    CONTEXT_FIELDS = ("message_id", "installation", "provider")

    def format(self, record):
        line = super().format(record)
        context = " ".join(
            f"{k}={getattr(record, k)}" for k in self.CONTEXT_FIELDS if getattr(record, k, None) is not None
        )
        if context:
            first, sep, rest = line.partition("\n")
            line = f"{first} [{context}]{sep}{rest}"
        return redact(line)


# --- Celery tasks: what a task works on is bound from its arguments ------------------------------
TASK_ARGUMENT_FIELDS = {
    "message_id": "message",
    "message_ids": "messages",
    "installation_id": "installation",
    "registration_id": "registration",
    "provider_id": "provider",
    "application_id": "application",
}
_task_tokens: dict = {}


def bind_task_context(sender=None, task_id=None, task=None, args=None, kwargs=None, **_ignored):
    """task_prerun: every line a task writes names the task and the ids it was given."""
    fields = {"task": getattr(task, "name", None)}
    try:
        bound = inspect.signature(task.run).bind_partial(*(args or ()), **(kwargs or {})).arguments
    except (TypeError, ValueError, AttributeError):
        bound = dict(kwargs or {})
    for argument, field in TASK_ARGUMENT_FIELDS.items():
        if argument in bound:
            fields[field] = bound[argument]
    _task_tokens[task_id] = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind_task_context(sender=None, task_id=None, **_ignored):
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        try:
            _context.reset(token)
        except ValueError:  # set in another context: start clean instead
            _context.set({})


def configure_logging(**kwargs):
    """Celery's setup_logging signal: workers and beat log exactly like Django (settings.LOGGING)."""
    dictConfig(settings.LOGGING)
    task_prerun.connect(bind_task_context, weak=False, dispatch_uid="b24sms-log-context-prerun")
    task_postrun.connect(unbind_task_context, weak=False, dispatch_uid="b24sms-log-context-postrun")
