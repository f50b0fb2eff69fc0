"""Bitrix24 application lifecycle endpoints: install (ONAPPINSTALL or install page), uninstall, and
application events (ONAPPUPDATE) at ``/b24/event/<secret>/``.

Thin: parse the PHP-style form, call one service, shape the answer. Bad input is a 400 JSON
naming the field, a refused token a 403, and nothing is stored in either case.
"""

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django_ratelimit.core import is_ratelimited

from bitrix24.client import call_deadline
from common.taskqueue import enqueue
from providers.models import BitrixApplication, Installation
from providers.php_form import php_form_decode
from providers.services import installations as services

logger = logging.getLogger(__name__)


class MalformedBody(Exception):
    pass


def parse_php_form(request) -> dict:
    """The request body (``a[b][c]=...`` keys, brackets possibly %-encoded) as nested dicts and lists."""
    content_type = request.content_type or ""
    try:
        if content_type.startswith("multipart/"):
            pairs = [(k, v) for k, values in request.POST.lists() for v in values]
            raw = urlencode(pairs)
        else:
            raw = request.body.decode("utf-8")
        parsed = php_form_decode(raw, depth=5, max_fields=1000, max_list_index=100) if raw else {}
    except Exception as exc:  # any undecodable body is the sender's fault
        raise MalformedBody(str(exc)) from exc
    if not isinstance(parsed, dict):
        raise MalformedBody("not a form")
    return parsed


def _error(status: int, detail) -> JsonResponse:
    body = detail if isinstance(detail, dict) else {"detail": str(detail)}
    return JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": False})


def _validation_error(exc: ValidationError) -> JsonResponse:
    if hasattr(exc, "error_dict"):
        return _error(
            400, {field: [str(m) for e in errors for m in e.messages] for field, errors in exc.error_dict.items()}
        )
    return _error(400, {"non_field_errors": [str(m) for m in exc.messages]})


def install_rate_exceeded(request) -> bool:
    """More than B24_INSTALL_RATE install requests from this client address (shared cache)."""
    return is_ratelimited(request, group="b24-install", key="ip", rate=settings.B24_INSTALL_RATE, increment=True)


def _wants_html(request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


@csrf_exempt
@xframe_options_exempt  # the install page is shown inside the Bitrix24 iframe
def install(request, application_id: int | None = None):
    if request.method != "POST":
        return _error(405, _("Use POST."))
    if install_rate_exceeded(request):
        logger.warning("install refused: too many install requests from one address")
        return _error(429, _("Too many install requests; try again in a minute."))
    if application_id is None:
        application = services.application_get_default()
        if application is None:
            return _error(404, _("No default Bitrix24 application is configured (B24_CLIENT_ID)."))
    else:
        application = BitrixApplication.objects.filter(pk=application_id).first()
        if application is None:
            return _error(404, _("Unknown application."))
    try:
        payload = services.install_payload_parse(query=request.GET.dict(), form=parse_php_form(request))
    except MalformedBody:
        return _error(400, _("Malformed form body."))
    except ValidationError as exc:
        return _validation_error(exc)
    try:
        with call_deadline(settings.B24_INSTALL_TIME_BUDGET):
            installation, result = services.installation_install(application=application, payload=payload)
            bound = "bound"
            if result != "unchanged":
                bound = services.installation_bind_events_recorded(installation=installation, final_attempt=False)
    except services.InstallVerificationFailed as exc:
        logger.warning("install refused: tokens not confirmed by the OAuth server", extra={"domain": payload.domain})
        return _error(403, _("The tokens could not be confirmed with Bitrix24: %(reason)s") % {"reason": exc})
    except services.InstallPortalUnreachable:
        return _error(503, _("Bitrix24 could not be reached to confirm the tokens; try again."))
    except services.InstallNotConfigured as exc:
        logger.error("install refused: %s", exc, extra={"domain": payload.domain})
        return _error(503, _("b24sms cannot confirm installs yet: %(reason)s") % {"reason": exc})

    if bound == "retry":
        try:
            enqueue(services.BIND_EVENTS_TASK, installation.pk, countdown=10)
        except Exception:  # the installation is stored: a broker outage must not turn it into a 500
            # (beat binds the events it lacks later: B24_EVENTS_BIND_RETRY_AFTER)
            logger.exception("could not queue the event re-bind", extra={"domain": installation.domain})

    if payload.source == "page" and _wants_html(request):
        return render(request, "providers/install_finished.html", {"domain": installation.domain})
    return JsonResponse(
        {
            "result": result,
            "installation": installation.pk,
            "domain": installation.domain,
            "uninstall_handler_bound": services.EVENT_UNINSTALL in installation.bound_event_names,
            "update_handler_bound": services.EVENT_UPDATE in installation.bound_event_names,
        }
    )


@csrf_exempt
def uninstall(request, secret: str):
    if request.method != "POST":
        return _error(405, _("Use POST."))
    try:
        installation = services.installation_uninstall(secret=secret, form=parse_php_form(request))
    except MalformedBody:
        return _error(400, _("Malformed form body."))
    except ValidationError as exc:
        return _validation_error(exc)
    except (Installation.DoesNotExist, services.UninstallRefused):
        return _error(403, _("Forbidden."))
    return JsonResponse({"result": "removed", "domain": installation.domain})


@csrf_exempt
def app_event(request, secret: str):
    """Application events bound with event.bind: ONAPPUPDATE (providers registered again), ONAPPUNINSTALL."""
    if request.method != "POST":
        return _error(405, _("Use POST."))
    try:
        installation, result = services.installation_event(secret=secret, form=parse_php_form(request))
    except MalformedBody:
        return _error(400, _("Malformed form body."))
    except ValidationError as exc:
        return _validation_error(exc)
    except (Installation.DoesNotExist, services.UninstallRefused):
        return _error(403, _("Forbidden."))
    return JsonResponse({"result": result, "domain": installation.domain})


urlpatterns = [
    path("b24/install/", install, name="b24-install-default"),
    path("b24/install/<int:application_id>/", install, name="b24-install"),
    path("b24/uninstall/<str:secret>/", uninstall, name="b24-uninstall"),
    path("b24/event/<str:secret>/", app_event, name="b24-event"),
]
