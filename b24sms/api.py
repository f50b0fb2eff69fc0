"""Shared REST API pieces: the JSON error shape for every error, including unexpected ones."""

import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.utils.translation import gettext as _
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.errors import validation_error_body

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    """Errors as JSON that name the field: the API's one error body (``Error`` in the schema,
    b24sms/api_schema.py).

    DRF's own errors keep their shape (``{"field": ["message"]}`` or ``{"detail": "..."}``); a list of
    messages that names no field is ``{"non_field_errors": [...]}``.
    A Django ``ValidationError`` raised by a service becomes a 400 with the same shape, so rules
    enforced in the service layer reach API consumers exactly like serializer errors.
    """
    if isinstance(exc, DjangoValidationError):
        detail = validation_error_body(exc)  # the same body as the inbound endpoints' (common/errors.py)
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
        if isinstance(response.data, list):  # ValidationError("…") raised by a view: the same shape as any other
            response.data = {"non_field_errors": response.data}
        return response
    logger.error("Unhandled API error", extra={"view": context.get("view").__class__.__name__})
    return Response({"detail": _("Internal error. It has been logged.")}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def page_not_found(request, exception):
    """Django's 404 (handler404): under /api/ the API's error body, as JSON (``/api/providers/x/`` matches
    no route, so DRF never sees it); elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": _("Not found.")}, status=404)
    return defaults.page_not_found(request, exception)
