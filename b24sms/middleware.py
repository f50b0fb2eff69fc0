"""Request guards shared by every view."""

import json

from django.http import HttpResponse
from django.utils.translation import gettext as _


class RejectNulInQueryMiddleware:
    """A NUL character in the query string is refused with 400 before any view runs.

    PostgreSQL cannot store or compare text containing NUL: a filter or search term with one
    (``?state__exact=%00``) would otherwise reach the database and fail as a 500 in any admin
    changelist or API list.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if any("\x00" in key or "\x00" in value for key, values in request.GET.lists() for value in values):
            body = json.dumps({"detail": _("A query parameter contains a NUL character.")})
            return HttpResponse(body, status=400, content_type="application/json")
        return self.get_response(request)
