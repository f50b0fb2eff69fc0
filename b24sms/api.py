"""Shared REST API pieces: the JSON error shape for every error, including unexpected ones."""
import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    """Errors as JSON that name the field.

    DRF's own errors keep their shape (``{"field": ["message"]}`` or ``{"detail": "..."}``).
    A Django ``ValidationError`` raised by a service becomes a 400 with the same shape, so rules
    enforced in the service layer reach API consumers exactly like serializer errors.
    """
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            detail = {field: [str(m) for e in errors for m in e.messages] for field, errors in exc.error_dict.items()}
        else:
            detail = {"non_field_errors": [str(m) for m in exc.messages]}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, RequestDataTooBig):  # the body beyond DATA_UPLOAD_MAX_MEMORY_SIZE
        response = Response({"detail": str(exc)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        return response
    elif isinstance(exc, SuspiciousOperation):  # too many fields or files in a multipart body, ...
        exc = exceptions.ParseError(str(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(_("Not found."))
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    logger.exception("Unhandled API error", extra={"view": context.get("view").__class__.__name__})
    return Response({"detail": _("Internal error. It has been logged.")}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
