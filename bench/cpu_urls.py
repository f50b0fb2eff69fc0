"""bench.intake_urls plus /bench/trivial-form/: the per-request baseline of bench/cpu_per_sms.py.

The view reads and parses the same Bitrix24 form body the HANDLER parses (the project's parser) and
answers a small JSON, through the same gunicorn, Django and middleware; it touches neither the
database nor Redis.
"""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bench.intake_urls import urlpatterns as intake_urlpatterns
from providers.handler_form import handler_form_parse


@csrf_exempt
@require_POST
def trivial_form(request, secret: str = ""):
    form = handler_form_parse(request.body)
    return JsonResponse({"result": "ok", "message_id": form.message_id})


urlpatterns = [path("bench/trivial-form/", trivial_form)] + intake_urlpatterns
