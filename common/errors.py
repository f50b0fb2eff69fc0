"""The one JSON error body of every endpoint b24sms serves: the REST API (b24sms/api.py's exception handler,
the ``Error`` component of the OpenAPI document, b24sms/api_schema.py) and the inbound endpoints (HANDLER,
i-dgtl callback, install, uninstall, application events: providers/views/).

- ``{"detail": "message"}`` when the request as a whole is refused (a wrong secret, a body that is not a
  form, too large, ...);
- ``{"<field>": ["message", ...], ...}`` naming each bad field (``non_field_errors`` for a rule over
  several fields).
"""

from django.core.exceptions import ValidationError
from django.http import JsonResponse


def error_body(message, *, field: str = "") -> dict:
    """The body for one message, about ``field`` when given."""
    return {field: [str(message)]} if field else {"detail": str(message)}


def validation_error_body(exc: ValidationError) -> dict:
    """The body for a Django ValidationError raised by a parser or a service (field errors keep their fields)."""
    if hasattr(exc, "error_dict"):
        return {field: [str(m) for e in errors for m in e.messages] for field, errors in exc.error_dict.items()}
    return {"non_field_errors": [str(m) for m in exc.messages]}


def error_response(status: int, message="", *, field: str = "", body: dict | None = None) -> JsonResponse:
    """A JSON error answer: ``body`` as given, or :func:`error_body` of ``message`` and ``field``."""
    return JsonResponse(
        body if body is not None else error_body(message, field=field),
        status=status,
        json_dumps_params={"ensure_ascii": False},
    )


def validation_error_response(exc: ValidationError, *, status: int = 400) -> JsonResponse:
    return error_response(status, body=validation_error_body(exc))


def error_text(body) -> str:
    """One line for a person from an error body of this shape (or "" when it is not one)."""
    if not isinstance(body, dict):
        return ""
    if "detail" in body:
        return str(body["detail"])
    parts = []
    for field, messages in body.items():
        if isinstance(messages, list) and messages:
            text = "; ".join(str(m) for m in messages)
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
    return " ".join(parts)
