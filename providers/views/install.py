"""Bitrix24 application lifecycle endpoints: install (ONAPPINSTALL or install page), uninstall, and
application events (ONAPPUPDATE) at ``/b24/event/<secret>/``.

Thin: parse the PHP-style form, call one service, shape the answer. Bad input is a 400 JSON
naming the field, a refused token a 403, and nothing is stored in either case.
"""

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django_ratelimit.core import is_ratelimited

from common.errors import error_response, validation_error_response
from providers.models import BitrixApplication, Installation
from providers.php_form import PhpFormError, php_form_from_request
from providers.services import installations as services

logger = logging.getLogger(__name__)


def install_rate_exceeded(request) -> bool:
    """More than B24_INSTALL_RATE install requests from this client address (shared cache)."""
    return is_ratelimited(request, group="b24-install", key="ip", rate=settings.B24_INSTALL_RATE, increment=True)


def _wants_html(request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


@csrf_exempt
@xframe_options_exempt  # the install page is shown inside the Bitrix24 iframe
def install(request, application_id: int | None = None):
    if request.method != "POST":
        return error_response(405, _("Use POST."))
    if install_rate_exceeded(request):
        logger.warning("install refused: too many install requests from one address")
        return error_response(429, _("Too many install requests; try again in a minute."))
    if application_id is None:
        application = services.application_get_default()
        if application is None:
            return error_response(404, _("No default Bitrix24 application is configured (B24_CLIENT_ID)."))
    else:
        application = BitrixApplication.objects.filter(pk=application_id).first()
        if application is None:
            return error_response(404, _("Unknown application."))
    try:
        payload = services.install_payload_parse(query=request.GET.dict(), form=php_form_from_request(request))
    except PhpFormError:
        return error_response(400, _("Malformed form body."))
    except ValidationError as exc:
        return validation_error_response(exc)
    try:
        installation, result = services.installation_install_and_bind(
            application=application, payload=payload, time_budget=settings.B24_INSTALL_TIME_BUDGET
        )
    except services.InstallVerificationFailed as exc:
        logger.warning("install refused: tokens not confirmed by the OAuth server", extra={"domain": payload.domain})
        return error_response(403, _("The tokens could not be confirmed with Bitrix24: %(reason)s") % {"reason": exc})
    except services.InstallPortalUnreachable:
        return error_response(503, _("Bitrix24 could not be reached to confirm the tokens; try again."))
    except services.InstallNotConfigured as exc:
        logger.error("install refused: %s", exc, extra={"domain": payload.domain})
        return error_response(503, _("b24sms cannot confirm installs yet: %(reason)s") % {"reason": exc})

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
        return error_response(405, _("Use POST."))
    try:
        installation = services.installation_uninstall(secret=secret, form=php_form_from_request(request))
    except PhpFormError:
        return error_response(400, _("Malformed form body."))
    except ValidationError as exc:
        return validation_error_response(exc)
    except (Installation.DoesNotExist, services.UninstallRefused):
        return error_response(403, _("Forbidden."))
    return JsonResponse({"result": "removed", "domain": installation.domain})


@csrf_exempt
def app_event(request, secret: str):
    """Application events bound with event.bind: ONAPPUPDATE (providers registered again), ONAPPUNINSTALL."""
    if request.method != "POST":
        return error_response(405, _("Use POST."))
    try:
        installation, result = services.installation_event(secret=secret, form=php_form_from_request(request))
    except PhpFormError:
        return error_response(400, _("Malformed form body."))
    except ValidationError as exc:
        return validation_error_response(exc)
    except (Installation.DoesNotExist, services.UninstallRefused):
        return error_response(403, _("Forbidden."))
    return JsonResponse({"result": result, "domain": installation.domain})


urlpatterns = [
    path("b24/install/", install, name="b24-install-default"),
    path("b24/install/<int:application_id>/", install, name="b24-install"),
    path("b24/uninstall/<str:secret>/", uninstall, name="b24-uninstall"),
    path("b24/event/<str:secret>/", app_event, name="b24-event"),
]
