"""The project's URLs plus /bench/trivial/: the baseline a HANDLER call is compared with."""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from b24sms.urls import urlpatterns as project_urlpatterns


@csrf_exempt
def trivial(request):
    _ = request.body  # read the same form body the handler reads
    return JsonResponse({"result": "ok"})


urlpatterns = [path("bench/trivial/", trivial)] + project_urlpatterns
