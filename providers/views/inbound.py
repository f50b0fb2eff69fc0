"""Inbound traffic: the Bitrix24 HANDLER (SMS to send) and i-dgtl delivery callbacks.

Both are thin: parse, authenticate, hand over to one service, answer fast with a small JSON body.
Bad input is a 4xx JSON naming the problem; nothing is stored then.
"""

import ipaddress
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from common.errors import error_response
from common.netaddr import client_ip
from providers.callback_form import CallbackError, callback_body_parse
from providers.handler_form import (
    HandlerBodyTooLarge,
    HandlerFormError,
    HandlerMediaTypeUnsupported,
    HandlerTextTooLong,
    handler_body_max_bytes,
    handler_content_type_check,
    handler_form_parse,
)
from providers.services.delivery import callback_events_receive
from providers.services.intake import (
    HandlerForbidden,
    ProviderNotRegistered,
    handler_call_accept,
    handler_secret_check,
    installation_by_callback_secret,
)

logger = logging.getLogger(__name__)


def _body(request, max_bytes: int | None = None) -> bytes:
    """The body; HandlerBodyTooLarge, before reading it, when its Content-Length is over ``max_bytes`` (or
    over DATA_UPLOAD_MAX_MEMORY_SIZE). Without a Content-Length, Django reads no body at all."""
    if max_bytes is not None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:  # not a number: Django reads no body either
            length = 0
        if length > max_bytes:
            raise HandlerBodyTooLarge(_("The body is larger than %(max)d bytes.") % {"max": max_bytes})
    try:
        return request.body
    except RequestDataTooBig:
        raise HandlerBodyTooLarge(_("The body is too large.")) from None


@csrf_exempt
@require_POST
def bitrix24_handler(request, secret: str):
    """HANDLER of every provider on one installation: Bitrix24 POSTs each SMS here (docs/contracts/bitrix24.md §3)."""
    try:
        handler_secret_check(secret)
    except HandlerForbidden as exc:
        return error_response(403, exc)
    try:
        body = _body(request, handler_body_max_bytes())
        if body:  # (an empty body is a 400, whatever its type)
            handler_content_type_check(request.content_type, request.content_params)
        form = handler_form_parse(body)
    except HandlerMediaTypeUnsupported as exc:
        return error_response(415, exc.message)
    except HandlerBodyTooLarge as exc:
        return error_response(413, exc.message)
    except HandlerTextTooLong as exc:
        # Bitrix24 ignores the answer (the author sees "sent"): the log is where an operator finds it.
        logger.warning("Bitrix24 handler call refused, text too long: %s", exc)
        return error_response(400, exc.message, field=exc.field)
    except HandlerFormError as exc:
        return error_response(400, exc.message, field=exc.field)
    try:
        created = handler_call_accept(secret=secret, form=form)
    except HandlerForbidden as exc:
        logger.warning("Bitrix24 handler call refused: %s", exc)
        return error_response(403, exc)
    except ProviderNotRegistered as exc:
        return error_response(404, exc)
    return JsonResponse({"result": "accepted" if created else "duplicate", "message_id": form.message_id})


def _callback_source_allowed(request) -> bool:
    allowed = settings.IDGTL_CALLBACK_ALLOWED_IPS
    if not allowed:
        return True
    try:
        address = ipaddress.ip_address(client_ip(request) or "")  # REMOTE_ADDR unless TRUSTED_PROXIES forward
    except ValueError:
        return False
    for entry in allowed:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


@csrf_exempt
@require_POST
def idgtl_callback(request, secret: str):
    """i-dgtl delivery callbacks: a JSON array of events (docs/contracts/idgtl.md §3.4).

    2xx only once every event is stored in the inbox, committed; a worker applies them a moment later.
    """
    if not _callback_source_allowed(request):
        logger.warning("i-dgtl callback from a source outside IDGTL_CALLBACK_ALLOWED_IPS refused")
        return error_response(403, _("Source address not allowed."))
    try:
        installation = installation_by_callback_secret(secret=secret)
    except HandlerForbidden as exc:
        return error_response(403, exc)
    try:
        events = callback_body_parse(_body(request))
    except HandlerFormError:  # over DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_response(400, _("The body is not a JSON array of events."))
    except CallbackError as exc:
        return error_response(400, exc.message, field=exc.field)
    stored = callback_events_receive(installation=installation, events=events)  # committed when it returns
    return JsonResponse({"result": "ok", "stored": stored})


urlpatterns = [
    path("b24/handler/<str:secret>/", bitrix24_handler, name="b24-handler"),
    path("idgtl/callback/<str:secret>/", idgtl_callback, name="idgtl-callback"),
]
